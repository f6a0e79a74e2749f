"""hdl.build: board listing, portable Verilog, one-line errors; the full iCEBreaker build is
opt-in (``--runslow``) because it runs yosys and nextpnr for minutes."""

import json

import numpy as np
import pytest

from boards import BOARDS
from golden.ops import run_model
from golden.run import DEFAULT_MODEL
from golden.tflite_io import load_tflite
from hdl import build, run
from host import wire
from published import published_path


def test_list_boards(capsys):
    assert build.main(["--list-boards"]) == 0
    out = capsys.readouterr().out
    for name in BOARDS:
        assert name in out


@pytest.mark.parametrize("argv, message", [
    (["--board", "nosuch"], "unknown board 'nosuch'"),
    (["--model", "missing.tflite"], "missing.tflite: model file not found"),
    (["--clock-mhz", "5"], "no setting from 12 MHz at or below 5 MHz"),
    (["--verilog", "/nonexistent/dir/x.v"], "--verilog /nonexistent/dir/x.v: directory /nonexistent/dir does not exist"),
    (["--verilog", "/tmp"], "--verilog /tmp: is a directory; give a file name"),
    (["--baud", "0"], "--baud must be a positive number of bits per second, got 0"),
    (["--baud", "-9600"], "--baud must be a positive number of bits per second, got -9600"),
    (["--clock-mhz", "0"], "--clock-mhz 0: the clock must be a positive number of MHz, got 0"),
    (["--clock-mhz", "inf"], "--clock-mhz inf: the clock must be a positive number of MHz, got inf"),
    (["--clock-mhz", "nan"], "the clock must be a positive number of MHz, got nan"),
    (["--clock-mhz", "300"], "--clock-mhz 300: 300 MHz is above the ice40 PLL's 275 MHz limit"),
    (["--board", "ulx3s-85f", "--clock-mhz", "450"], "450 MHz is above the ecp5 PLL's 400 MHz limit"),
    (["--verify-netlist", "-1"], "--verify-netlist takes a number of inputs >= 1, got -1"),
    (["--verify-netlist", "2", "--board", "ulx3s-85f"], "checks an iCE40 bitstream build: ulx3s-85f is ecp5"),
    (["--verify-netlist", "2", "--verilog", "/tmp/x.v"], "checks an iCE40 bitstream build: not with --verilog"),
])
def test_bad_input_is_one_line(argv, message, capsys, tmp_path):
    assert build.main(argv + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("hdl.build: ")
    assert not (tmp_path / "out").exists()


def test_output_directory_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert build.main(["--out", str(tmp_path / "file" / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"hdl.build: --out {tmp_path / 'file' / 'out'}: {tmp_path / 'file'} is not a directory"]


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        build.main(["--bogus"])
    assert e.value.code == 2
    assert capsys.readouterr().err == "python -m hdl.build: error: unrecognized arguments: --bogus\n"


def test_missing_tool_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("YOSYS", "no-such-yosys")
    assert build.main(["--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "hdl.build: no-such-yosys: not found on PATH (yosys for ice40); run `make setup` (pip install -e .)")
    assert not (tmp_path / "out").exists()


def test_bad_model_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    assert build.main(["--model", str(bad), "--verilog", str(tmp_path / "x.v")]) == 2
    assert "bad.tflite" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "x.v").exists()


def test_portable_verilog(tmp_path):
    path = tmp_path / "soc.v"
    assert build.main(["--verilog", str(path)]) == 0
    text = path.read_text()
    assert "module cnn_soc(" in text
    # Portable: no iCE40 primitives, no external memory files.
    for primitive in ("SB_MAC16", "SB_SPRAM256KA", "SB_PLL40", "$readmem"):
        assert primitive not in text
    for port in ("uart_rx", "uart_tx", "flash_sck", "flash_cs", "flash_copi", "flash_cipo", "led_ready"):
        assert port in text


def test_build_says_where_the_maps_go(tmp_path, capsys):
    """KWS's maps outgrow the iCEBreaker's block-RAM banks: the log says they go to SPRAM."""
    path = published_path("kws_ref_model.tflite")
    assert build.main(["--model", str(path), "--verilog", str(tmp_path / "kws.v")]) == 0
    assert ("maps in the SPRAMs beside the weights: 5,172 B per bank, more than the 2,560-byte block-RAM "
            "banks; a weight cache of 125 words") in capsys.readouterr().err


def test_flash_image_layout():
    board = BOARDS["icebreaker"]
    image = build.flash_image(b"\x01\x02\x03", b"\x10\x20\x30\x40", board, 0x12345678)
    off = board.weights_offset
    assert image[:3] == b"\x01\x02\x03" and set(image[3:off]) == {0xFF}
    assert image[off:off + 16] == (wire.WEIGHTS_MAGIC + (4).to_bytes(4, "little") + (0x12345678).to_bytes(4, "little")
                                   + wire.crc32(b"\x10\x20\x30\x40").to_bytes(4, "little"))
    assert image[off + 16:] == b"\x10\x20\x30\x40"


@pytest.mark.synth
def test_icebreaker_build(tmp_path, capsys):
    """The README's main command: fits, meets its clock, writes the images and the report;
    its synthesised netlist passes the gate-level check; ``hdl.run --sim`` runs what it
    wrote.  Then the same check on the netlist with its multipliers made unsigned fails."""
    out = tmp_path / "icebreaker"
    assert build.main(["--board", "icebreaker", "--out", str(out), "--verify-netlist", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    check = report["netlist_check"]
    assert check["inputs"] == 2 and check["bit_exact"]
    assert check["cycles"] == [report["performance"]["cycles_per_inference"]]
    assert report["status"] == "built" and report["timing"]["met"]
    assert report["utilisation"]["ICESTORM_DSP"]["used"] == 8
    assert report["performance"]["bit_exact_vs_golden"]
    assert (out / "flash.bin").stat().st_size > BOARDS["icebreaker"].weights_offset
    assert sum(report["performance"]["cycles_per_layer"].values()) == report["performance"]["cycles_per_inference"]
    assert (out / "cycles_per_layer.png").read_bytes().startswith(b"\x89PNG")
    # The build directory's own design on the virtual board: bit-exact, the report's cycles.
    model = load_tflite(DEFAULT_MODEL)
    x = np.random.default_rng(5).integers(-128, 128, (2, *model.input_shape)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    capsys.readouterr()
    assert run.main(["--sim", str(out), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cycles"] == [report["performance"]["cycles_per_inference"]]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), run_model(model, x))

    work = out / ("work" if report["timing"]["clock_mhz"] == 39.75 else f"work_{report['timing']['clock_mhz']:.3f}MHz")
    netlist = json.loads((work / "top.json").read_text())
    dsps = [c for c in netlist["modules"]["top"]["cells"].values() if c["type"] == "SB_MAC16"]
    assert dsps
    for cell in dsps:
        cell["parameters"]["A_SIGNED"] = cell["parameters"]["B_SIGNED"] = "0"
    (work / "top.json").write_text(json.dumps(netlist))
    b = BOARDS["icebreaker"]
    program, data = build.load_program(DEFAULT_MODEL, b.config)
    clock_hz = report["virtual_board"]["clock_hz"]
    soc = build.make_soc(program, data, clock_hz, wire.DEFAULT_BAUD, b.weights_offset)
    result, problem = build.verify_netlist(work, b, soc, program, clock_hz, build.find_tools("ice40"), 1,
                                           report["performance"]["cycles_per_inference"])
    assert not result["bit_exact"] and "fails the gate-level check" in problem


def test_larger_board_grows_the_array():
    from boards import MAX_LANES, sized_config

    big, ice = BOARDS["ulx3s-85f"].config, BOARDS["icebreaker"].config
    assert big.lanes == MAX_LANES > ice.lanes == 16          # 8 SB_MAC16, two products each
    assert sized_config(28, 56 * 2048).lanes == 16          # an ECP5-25F's 28 multipliers
    assert big.weight_mem_bytes >= 93472                     # the shipped model's weights


class _FakeSoc:
    divisor = 347


def _fake_pnr(fmax_of):
    """``implement`` and ``place`` stand-ins: nextpnr's report with Fmax ``fmax_of(clock,
    seed)``, and the placed file it writes; returns them and the (clock, seed) list tried."""
    tried = []

    def place(workdir, board, tools, seed, clock_mhz):
        tried.append((round(clock_mhz, 3), seed))
        (workdir / "top.asc").write_text(f"placed with seed {seed}")
        return {"fmax": {"clk": {"achieved": fmax_of(clock_mhz, seed), "constraint": clock_mhz}},
                "utilization": {"ICESTORM_LC": {"used": 4000, "available": 5280}}}

    def implement(program, tflite_bytes, board, pll, args, tools, workdir, seed):
        return _FakeSoc(), place(workdir, board, tools, seed, pll.f_out_mhz)
    return implement, place, tried


@pytest.mark.parametrize("argv, fmax, status, tried, final", [
    # No --clock-mhz: after a miss, at once, the next seed and the highest PLL setting 4 %
    # below the Fmax; the faster clock wins when both meet theirs.
    ([], lambda f, s: 37.9 if f > 38 else 38.2, 0, [(39.75, 1), (39.75, 2), (36.0, 1)], (36.0, 1)),
    ([], lambda f, s: 41.0, 0, [(39.75, 1)], (39.75, 1)),
    ([], lambda f, s: {1: 39.0, 2: 40.1, 3: 38.0}[s], 0, [(39.75, 1), (39.75, 2), (36.75, 1)], (39.75, 2)),
    ([], lambda f, s: {1: 39.0, 2: 37.0, 3: 38.0}[s], 0, [(39.75, 1), (39.75, 2), (36.75, 1)], (36.75, 1)),
    ([], lambda f, s: f - 1.0, 1, [(39.75, 1), (39.75, 2), (36.75, 1), (36.75, 3), (33.75, 1)], (33.75, 1)),
    # --seed: that seed only.
    (["--seed", "5"], lambda f, s: 37.9 if f > 38 else 38.2, 0, [(39.75, 5), (36.0, 5)], (36.0, 5)),
    # An explicit clock that misses fails once the seeds are tried.
    (["--clock-mhz", "40"], lambda f, s: 37.9, 1, [(39.75, 1), (39.75, 2), (39.75, 3)], (39.75, 1)),
])
def test_build_picks_the_clock_unless_told(argv, fmax, status, tried, final, tmp_path, monkeypatch, capsys):
    implement, place, runs = _fake_pnr(fmax)
    monkeypatch.setattr(build, "implement", implement)
    monkeypatch.setattr(build, "place", place)
    packed = []
    monkeypatch.setattr(build, "pack", lambda workdir, board, tools: packed.append(
        (workdir / "top.asc").read_text()) or b"bitstream")
    monkeypatch.setattr(build, "write_virtual_board", lambda out, soc, clock_hz: (out / "soc.v").write_text("new")
                        and {"clock_hz": clock_hz})
    out = tmp_path / "out"
    out.mkdir()
    outputs = ("top.bin", "flash.bin", "weights.bin", "soc.v")
    for stale in outputs:         # an earlier build's
        (out / stale).write_bytes(b"old")
    assert build.main(argv + ["--out", str(out), "--no-sim"]) == status
    assert sorted(runs) == sorted(tried)          # a round's two runs go at once
    report = json.loads((out / "report.json").read_text())
    assert [(a["clock_mhz"], a["seed"]) for a in report["timing"]["attempts"]] == tried
    assert (report["timing"]["clock_mhz"], report["timing"]["seed"]) == final
    assert report["timing"]["clock_chosen_by"] == ("--clock-mhz" if "--clock-mhz" in argv else "the build")
    err = capsys.readouterr().err
    assert ("timing missed" in err) == (len(tried) > 1)
    # A failed build leaves no images beside its report: the outputs are a set.
    assert all((out / name).exists() == (status == 0) for name in outputs)
    # The bitstream is packed from the chosen placement, whichever ran last.
    assert packed == ([f"placed with seed {final[1]}"] if status == 0 else [])
    if len(tried) > 1:
        assert "The build chose the clock and seed" in (out / "report.md").read_text()


def test_cycles_per_layer_and_their_plot():
    from compiler.program import compile_model
    from golden.run import DEFAULT_MODEL
    from golden.tflite_io import load_tflite

    perf = build.measure_cycles(compile_model(load_tflite(DEFAULT_MODEL), BOARDS["icebreaker"].config),
                                log=lambda msg: None)
    assert perf["bit_exact_vs_golden"] and perf["engine"] == "verilator"
    layers = perf["cycles_per_layer"]
    assert list(layers) == ["pool1", "pool2", "conv3", "dense1", "dense2"]
    assert sum(layers.values()) == perf["cycles_per_inference"]
    pytest.importorskip("matplotlib", reason="the plot is an optional extra: pip install -e '.[plot]'")
    png = build.layer_plot(perf, "shipped")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
