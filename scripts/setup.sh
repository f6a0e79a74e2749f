#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine: Icarus Verilog for the
# cocotb tests, Verilator for the fast whole-accelerator simulator (sim/verilator.py),
# then the Python package with its test extras. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! command -v iverilog >/dev/null 2>&1 || ! command -v verilator >/dev/null 2>&1; then
    echo "setup: installing Icarus Verilog and Verilator (apt-get)"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq iverilog verilator >/dev/null
fi
echo "setup: installing Python packages"
$PY -m pip install -q -e '.[test]'
