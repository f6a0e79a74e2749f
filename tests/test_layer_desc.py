"""Descriptor encoding: every field of the shipped model fits, and one that does not is refused."""

import dataclasses

import pytest

from boards import ICEBREAKER
from compiler.program import CompileError, compile_model
from golden.run import DEFAULT_MODEL
from golden.tflite_io import load_tflite
from hdl.core.layer_desc import desc_layout, encode


@pytest.mark.parametrize("config", [ICEBREAKER, ICEBREAKER.with_(act_bank_bytes=16384)],
                         ids=["icebreaker", "16K-banks"])
def test_shipped_model_descriptors_encode(config):
    """Every field reads back unchanged from the packed descriptor, with the iCEBreaker's
    banks and with banks whose addresses need more bits (the fields grow with them)."""
    program = compile_model(load_tflite(DEFAULT_MODEL), config)
    layout = desc_layout(config)
    for i, d in enumerate(program.layers):
        values = encode(d, config, i == len(program.layers) - 1)
        const = layout.const(values)
        for name, value in values.items():
            got = [const[name][k] for k in range(len(value))] if isinstance(value, list) else const[name]
            assert got == value, f"{d.name}: {name}"


def test_value_too_wide_for_its_field_is_refused():
    program = compile_model(load_tflite(DEFAULT_MODEL), ICEBREAKER)
    bad = dataclasses.replace(program.layers[0], weight_base=70000)
    with pytest.raises(CompileError, match="weight_base = 70000 does not fit its unsigned"):
        encode(bad, ICEBREAKER, False)
