"""The one hardware configuration: its derived widths and its one-line refusals."""

import pytest

from boards import ICEBREAKER
from golden.config import AcceleratorConfig, ConfigError


def test_icebreaker_widths_are_derived_from_its_memories():
    c = ICEBREAKER
    assert (c.act_bank_bytes, c.bank_addr_bits) == (2560, 12)
    assert (c.weight_words, c.weight_addr_bits) == (32768, 15)
    assert (c.param_depth, c.param_addr_bits) == (1024, 10)
    assert (c.desc_depth, c.desc_index_bits) == (256, 8)
    assert c.host_addr_bits == c.bank_addr_bits + 2 and c.banks == 4
    assert c.ptr_bits == c.bank_addr_bits + 2


@pytest.mark.parametrize("size, bits", [(1, 1), (2, 1), (3, 2), (4096, 12), (4097, 13), (16384, 14)])
def test_bank_address_grows_with_the_bank(size, bits):
    assert AcceleratorConfig(act_bank_bytes=size).bank_addr_bits == bits


@pytest.mark.parametrize("changes, needle", [
    ({"rows": 0}, "rows must be a positive int"),
    ({"desc_depth": 0}, "desc_depth must be a positive int"),
    ({"param_depth": 2.5}, "param_depth must be a positive int"),
    ({"requant_digit_bits": 3}, "requant_digit_bits must be 2, 4 or 8"),
    ({"acc_width": 40}, "acc_width must be in [17, 32]"),
    ({"requant_bits": 16}, "requant_bits must be in [17, 32]"),
    ({"target": "ecp5"}, "target must be 'generic' or 'ice40'"),
    ({"target": "ice40", "rows": 3, "cols": 3}, "rows*cols must be even"),
    ({"cols": 8, "weight_mem_bytes": 4}, "weight_mem_bytes must hold one word of cols weights"),
    ({"narrow_acc": 1}, "narrow_acc must be True or False"),
    ({"act_memory": "flash"}, "act_memory must be 'bram', 'spram' or 'auto'"),
    ({"act_memory": "auto", "cols": 8}, "cols must be 4 and weight_mem_bytes 131072"),
    ({"act_memory": "spram", "act_bank_bytes": 65536}, "act_bank_bytes must be at most 32768"),
    ({"weight_cache_words": 0}, "weight_cache_words must be a positive int"),
])
def test_bad_configurations_are_refused_in_one_line(changes, needle):
    with pytest.raises(ConfigError) as e:
        AcceleratorConfig(**changes)
    assert needle in str(e.value) and "\n" not in str(e.value)
