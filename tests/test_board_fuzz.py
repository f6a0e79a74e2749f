"""Ten thousand hostile frames against the board design in Verilator (sim/fuzz.py says what
the cases are and what must hold after each): the device ends every case healthy and never
sends a corrupt reply or a wrong OK."""

import os

import pytest

pytest.importorskip("sim.board")
from sim.fuzz import KINDS, fuzz, fuzz_device  # noqa: E402

CASES = int(os.environ.get("CNN2FPGA_FUZZ_CASES", 10_000))


def test_hostile_frames_leave_the_device_healthy_and_never_silently_wrong(tmp_path):
    model, program, soc, port = fuzz_device(tmp_path / "tiny.tflite")
    with port:
        report = fuzz(port, model, program, soc, CASES)
    assert report["cases"] == CASES and sum(report["kinds"].values()) == CASES
    assert CASES < 1000 or all(report["kinds"][k] > CASES // len(KINDS) // 2 for k in KINDS)
    # Every kind of error reply occurred, and the uploads that failed were recovered.
    assert CASES < 1000 or set(report["replies"]) == {"OK", "BAD_COMMAND", "BAD_LENGTH", "TIMEOUT", "FRAMING",
                                                        "BAD_CRC", "BUSY", "BAD_IMAGE"}
    assert CASES < 1000 or report["reloads_after_failed_uploads"] > 0
