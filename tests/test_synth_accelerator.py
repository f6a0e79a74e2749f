"""The whole accelerator on the iCE40 UP5K (opt-in: yosys + nextpnr, several minutes)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.synth
def test_accelerator_fits_up5k(tmp_path):
    """bench/synth_accelerator.py on the flagship program with the iCEBreaker config: the
    design places and routes on the UP5K within its 5,280 LCs and 30 block RAMs, using all 8
    DSPs (still in dual 8x8 mode) and all 4 SPRAMs (the weight memory); the core leaves at
    least 780 LCs for the SoC around it and closes timing at 40 MHz (seed 1)."""
    figures_json = tmp_path / "figures.json"
    subprocess.run([sys.executable, str(REPO / "bench" / "synth_accelerator.py"), "--seed", "1",
                    "--json", str(figures_json)], cwd=REPO, check=True)
    figures = json.loads(figures_json.read_text())
    run, = figures["runs"]
    assert figures["dsp_mode_8x8"], "yosys rewrote the hand-instantiated SB_MAC16s"
    assert figures["lc"] <= 5280, f"{figures['lc']} LCs, {figures['lc'] - 5280} over the UP5K's 5,280"
    assert figures["bram"] <= 30, f"{figures['bram']} block RAMs, {figures['bram'] - 30} over the UP5K's 30"
    assert figures["dsp"] == 8
    assert figures["spram"] == 4
    assert run["routed"], f"nextpnr failed: {run['error']}"
    assert figures["lc_accelerator"] <= 4500, f"the core takes {figures['lc_accelerator']} LCs"
    assert run["fmax_mhz"] >= 40, f"Fmax {run['fmax_mhz']} MHz"
