"""The hardware simulation command line: outputs like golden.run, the report, one-line errors."""

import json
import subprocess
import sys

import numpy as np

from golden.generate import random_inputs, random_model
from golden.ops import run_model
from golden.tflite_io import save_tflite


def cli(*args):
    return subprocess.run([sys.executable, "-m", "sim.run", *map(str, args)], capture_output=True, text=True)


def run_random_model(tmp_path, *args):
    """sim.run on a small random model and two inputs: (model, inputs, completed process)."""
    rng = np.random.default_rng(3)
    model = random_model(rng)
    save_tflite(model, tmp_path / "m.tflite")
    x = random_inputs(rng, model, 2)
    np.save(tmp_path / "x.npy", x)
    return model, x, cli("--model", tmp_path / "m.tflite", "--input", tmp_path / "x.npy", "--output",
                         tmp_path / "y.npy", "--report", tmp_path / "r.json", "--check", *args)


def test_outputs_and_report_match_golden(tmp_path):
    model, x, r = run_random_model(tmp_path, "--engine", "amaranth")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), run_model(model, x))
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["cycles_per_inference"] > 0 and report["lanes"] == 16
    assert report["utilisation"] == round(model.macs / (report["cycles_per_inference"] * 16), 4)
    assert report["checked"] == "all outputs equal golden"


def test_bad_model_is_one_line_and_status_2(tmp_path):
    (tmp_path / "junk.tflite").write_bytes(b"\x01" * 64)
    np.save(tmp_path / "x.npy", np.zeros((1, 4), np.int8))
    for args in (["--model", tmp_path / "missing.tflite", "--input", tmp_path / "x.npy"],
                 ["--model", tmp_path / "junk.tflite", "--input", tmp_path / "x.npy"]):
        r = cli(*args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Traceback" not in r.stderr


def test_board_option_simulates_that_boards_configuration(tmp_path):
    """The ULX3S's array is 4 x 16: 64 lanes, loaded through a 128-bit weight port that the
    Verilator harness drives as a wide port."""
    model, x, r = run_random_model(tmp_path, "--board", "ulx3s-85f")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), run_model(model, x))
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["lanes"] == 64 and report["engine"] == "verilator"
    assert "Amaranth simulator instead" not in r.stderr
    r = cli("--model", tmp_path / "m.tflite", "--input", tmp_path / "x.npy", "--board", "nope")
    assert r.returncode == 2 and "unknown board 'nope'" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bad_requests_are_one_line_before_any_work(tmp_path):
    """Counts and output paths are refused up front, in one line, status 2."""
    (tmp_path / "file").write_text("x")
    np.save(tmp_path / "x.npy", np.zeros((1, 28, 28, 1), np.int8))
    np.save(tmp_path / "empty.npy", np.zeros((0, 28, 28, 1), np.int8))
    x = tmp_path / "x.npy"
    cases = [
        (["--input", x, "--count", "0"], "--count applies to --mnist only"),
        (["--mnist", tmp_path, "--count", "0"], "--count must be at least 1, got 0"),
        (["--mnist", tmp_path, "--count", "-1"], "--count must be at least 1, got -1"),
        (["--input", tmp_path / "empty.npy"], "with N >= 1"),
        (["--input", x, "--report", tmp_path / "file" / "r.json"], "is not a directory"),
        (["--input", x, "--output", tmp_path], "is a directory; give a file name"),
        (["--input", x, "--report", tmp_path / "no" / "r.json"], "does not exist"),
        (["--input", x, "--bogus"], "unrecognized arguments: --bogus"),
    ]
    for args, message in cases:
        r = cli(*args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], (args, r.stderr)
