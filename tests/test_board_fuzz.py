"""Ten thousand hostile frames against the board design in Verilator (sim/fuzz.py says what
the cases are and what must hold after each): the device ends every case healthy and never
sends a corrupt reply or a wrong OK."""

import os

import numpy as np
import pytest

from compiler.program import compile_model
from golden.generate import random_model
from golden.tflite_io import load_tflite, to_tflite_bytes
from hdl.board.soc import Soc
from host import wire
from sim.fuzz import KINDS, fuzz
from sim.run import sim_config

board = pytest.importorskip("sim.board")

DIVISOR = 4
TIMEOUT_CYCLES = 8 * 10 * DIVISOR           # 8 byte times
CASES = int(os.environ.get("CNN2FPGA_FUZZ_CASES", 10_000))


def fuzz_device(path):
    """The device the fuzz runs against: CONV_2D then DEPTHWISE_CONV_2D, 80 weight bytes and
    30 input bytes, so a case costs few cycles; the fastest UART and a short frame timeout."""
    path.write_bytes(to_tflite_bytes(random_model(np.random.default_rng(54), max_layers=3)))
    model = load_tflite(str(path))
    program = compile_model(model, sim_config())
    soc = Soc(program, model_id=wire.model_id(path.read_bytes()), divisor=DIVISOR, timeout_cycles=TIMEOUT_CYCLES,
              sck_half=1, wake_cycles=8)
    flash = wire.flash_weights_region(program.weight_image, program.program_id)
    # A read waits longer than the device can stay busy (a RELOAD's boot) plus the frame
    # timeout and an error reply, so an empty read means the device is idle and done.
    return model, program, soc, board.VerilatorBoard(soc, flash, read_cycles=soc.boot_cycles + 3 * TIMEOUT_CYCLES)


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
