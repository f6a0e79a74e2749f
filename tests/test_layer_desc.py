"""Descriptor encoding: every field of the shipped model fits, and one that does not is refused."""

import dataclasses

import pytest

from compiler.program import CompileError, compile_model
from golden.config import ICEBREAKER
from golden.run import DEFAULT_MODEL
from golden.tflite_io import load_tflite
from hdl.layer_desc import desc_layout, encode


def test_shipped_model_descriptors_encode():
    program = compile_model(load_tflite(DEFAULT_MODEL), ICEBREAKER)
    layout = desc_layout(ICEBREAKER)
    for i, d in enumerate(program.layers):
        layout.const(encode(d, ICEBREAKER, i == len(program.layers) - 1))


def test_value_too_wide_for_its_field_is_refused():
    program = compile_model(load_tflite(DEFAULT_MODEL), ICEBREAKER)
    bad = dataclasses.replace(program.layers[0], weight_base=70000)
    with pytest.raises(CompileError, match="weight_base = 70000 does not fit its unsigned"):
        encode(bad, ICEBREAKER, False)
