"""The one hardware configuration read by the generator, the compiler, the golden model and
the tests, so that array shape, widths and memory sizes cannot drift apart between them.
"""

from dataclasses import dataclass, replace

#: Largest product magnitude of two int8 values: (-128) * (-128).
MAX_PRODUCT = 128 * 128


class ConfigError(ValueError):
    """An inconsistent hardware configuration; the message names the field and its limit."""


def signed_bits(magnitude):
    """Bits of a two's-complement integer holding every value in [-magnitude, magnitude]."""
    return int(magnitude).bit_length() + 1


@dataclass(frozen=True)
class AcceleratorConfig:
    """Array shape, datapath widths and memory sizes of one accelerator instance.

    The MAC array multiplies raw int8 activations by int8 weights; the input zero point
    is folded into the bias by the compiler (bias - zp * sum(w)), which is why the
    operands stay 8 bits wide and padding is fed as the zero point itself.
    """
    rows: int = 4                 #: activations entering the array per cycle
    cols: int = 4                 #: weights entering the array per cycle
    operand_width: int = 8
    acc_width: int = 25           #: array accumulator; the bias is added in 32 bits later
    requant_lanes: int = 2        #: one-lane requantisers the drain takes in turn
    requant_digit_bits: int = 4   #: digit width of each (2, 4 or 8: 32/k + 1 cycles an element)
    weight_mem_bytes: int = 4 * 32 * 1024  #: the four UP5K SPRAMs, read ``cols`` bytes a cycle
    act_bank_bytes: int = 2560            #: per activation bank (four banks, five BRAMs each)
    param_depth: int = 256                #: output channels of all layers together
    table_slots: int = 2                  #: 256-entry activation tables the program may hold
    pool_window: int = 16                 #: largest pooling window (elements) the pool unit reduces
    target: str = "generic"       #: "ice40" instantiates SB_MAC16 / SB_SPRAM256KA

    def __post_init__(self):
        for name in ("rows", "cols", "requant_lanes", "weight_mem_bytes", "act_bank_bytes", "param_depth",
                     "table_slots", "pool_window"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"config: {name} must be a positive int, got {value!r}")
        if self.requant_digit_bits not in (2, 4, 8):
            raise ConfigError(f"config: requant_digit_bits must be 2, 4 or 8, got {self.requant_digit_bits!r}")
        if self.operand_width != 8:
            raise ConfigError(f"config: operand_width must be 8 (int8 models), got {self.operand_width}")
        if not 17 <= self.acc_width <= 32:
            raise ConfigError(f"config: acc_width must be in [17, 32], got {self.acc_width}")
        if self.target not in ("generic", "ice40"):
            raise ConfigError(f"config: target must be 'generic' or 'ice40', got {self.target!r}")
        if self.target == "ice40" and (self.rows * self.cols) % 2:
            raise ConfigError("config: ice40 packs two 8x8 products per SB_MAC16, so rows*cols must be even")

    @property
    def weight_words(self):
        """Depth of the weight memory in words of ``cols`` int8 weights."""
        return self.weight_mem_bytes // self.cols

    @property
    def lanes(self):
        return self.rows * self.cols

    @property
    def acc_limit(self):
        """Largest |dot product| the array accumulator holds without wrapping."""
        return (1 << (self.acc_width - 1)) - 1

    @property
    def max_reduction(self):
        """Deepest int8 reduction that fits the accumulator whatever the weights (1023 at 25 bits)."""
        return self.acc_limit // MAX_PRODUCT

    def with_(self, **changes):
        return replace(self, **changes)


#: One requantiser of 8-bit digits (0.2 elements a cycle) rather than two of 4-bit digits
#: (0.22): nearly the same rate for about 150 logic cells less, which the UP5K needs for
#: the UART and flash logic next to the core.
ICEBREAKER = AcceleratorConfig(target="ice40", requant_lanes=1, requant_digit_bits=8)
