"""The one hardware configuration read by the generator, the compiler, the golden model and
the tests, so that array shape, widths and memory sizes cannot drift apart between them.
"""

from dataclasses import dataclass, replace

#: One SB_SPRAM256KA (16K x 16 bits) and the UP5K's four of them.
SPRAM_BANK_BYTES = 32 * 1024
SHARED_SPRAM_BYTES = 4 * SPRAM_BANK_BYTES

#: Largest product magnitude of two int8 values: (-128) * (-128).
MAX_PRODUCT = 128 * 128


class ConfigError(ValueError):
    """An inconsistent hardware configuration; the message names the field and its limit."""


def _index_bits(count):
    """Bits of an index into ``count`` items (at least one, so that no port is empty)."""
    return max(1, (count - 1).bit_length())


@dataclass(frozen=True)
class AcceleratorConfig:
    """Array shape, datapath widths and memory sizes of one accelerator instance.

    The MAC array multiplies raw int8 activations by int8 weights; the input zero point
    is folded into the bias by the compiler (bias - zp * sum(w)), which is why the
    operands stay 8 bits wide and padding is fed as the zero point itself.
    """
    rows: int = 4                 #: activations entering the array per cycle
    cols: int = 4                 #: weights entering the array per cycle
    acc_width: int = 25           #: array accumulator; the bias is added in 32 bits later
    #: The compiled program's configuration narrows ``acc_width`` to the largest sum its
    #: weights can reach (at least 17 bits), and ``requant_bits`` likewise, so a model of small
    #: reductions spends less logic and requantises in fewer cycles.
    narrow_acc: bool = False
    requant_lanes: int = 2        #: one-lane requantisers the drain takes in turn
    requant_digit_bits: int = 4   #: digit width of each (2, 4 or 8: ceil(requant_bits/k) cycles an element)
    #: Signed bits of the requantiser's input ``(acc + bias) << left``: its digits cover
    #: these.  With ``narrow_acc`` the compiled program's configuration narrows it to what
    #: its biases, sums and shifts reach (at least 17 bits), like ``acc_width``.
    requant_bits: int = 32
    weight_mem_bytes: int = 4 * 32 * 1024  #: the four UP5K SPRAMs, read ``cols`` bytes a cycle
    act_bank_bytes: int = 2560            #: per activation bank (four banks, five BRAMs each)
    #: Where the four activation banks live: "bram" (block RAM of ``act_bank_bytes`` each),
    #: "spram" (bank b is SPRAM b, its first ``act_bank_bytes`` at most, shared with the
    #: weights, which a block-RAM cache of ``weight_cache_words`` feeds to the array), or
    #: "auto" (block RAM when the program's maps fit it, else SPRAM; the compiled program's
    #: configuration says which).
    act_memory: str = "bram"
    weight_cache_words: int = 1024        #: "spram": largest channel group's weights (taps)
    param_depth: int = 1024               #: output channels of all layers together (the memory holds the program's)
    desc_depth: int = 256                 #: layer descriptors a program may hold (the ROM holds the program's)
    table_slots: int = 2                  #: 256-entry activation tables the program may hold
    pool_window: int = 4096               #: largest pooling window (elements); the unit is sized for the program's
    target: str = "generic"       #: "ice40" instantiates SB_MAC16 / SB_SPRAM256KA
    #: Weights beyond the SPRAMs stream from the SPI flash during inference: "off", "auto"
    #: (only when they do not fit) or "on" (the compiled program's configuration says which;
    #: the maps then go to SPRAM, where the weight cache is).
    weight_stream: str = "off"
    flash_lines: int = 4                  #: data lines of the flash's fast read (1, 2 or 4)
    stream_buffer_words: int = 512        #: prefetch buffer between the flash and the weight cache
    #: Weight bytes that stay in SPRAM when weights stream; 0: as many as the SPRAMs hold
    #: beside the maps (a smaller figure makes a small model stream, for tests).
    weight_resident_bytes: int = 0

    def __post_init__(self):
        for name in ("rows", "cols", "requant_lanes", "weight_mem_bytes", "act_bank_bytes", "param_depth",
                     "desc_depth", "table_slots", "pool_window", "weight_cache_words", "stream_buffer_words"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"config: {name} must be a positive int, got {value!r}")
        if self.requant_digit_bits not in (2, 4, 8):
            raise ConfigError(f"config: requant_digit_bits must be 2, 4 or 8, got {self.requant_digit_bits!r}")
        if not 17 <= self.requant_bits <= 32:
            raise ConfigError(f"config: requant_bits must be in [17, 32], got {self.requant_bits}")
        if not 17 <= self.acc_width <= 32:
            raise ConfigError(f"config: acc_width must be in [17, 32], got {self.acc_width}")
        if self.target not in ("generic", "ice40"):
            raise ConfigError(f"config: target must be 'generic' or 'ice40', got {self.target!r}")
        if self.target == "ice40" and (self.rows * self.cols) % 2:
            raise ConfigError("config: ice40 packs two 8x8 products per SB_MAC16, so rows*cols must be even")
        if not isinstance(self.narrow_acc, bool):
            raise ConfigError(f"config: narrow_acc must be True or False, got {self.narrow_acc!r}")
        if self.act_memory not in ("bram", "spram", "auto"):
            raise ConfigError(f"config: act_memory must be 'bram', 'spram' or 'auto', got {self.act_memory!r}")
        if self.act_memory != "bram" and (self.cols != 4 or self.weight_mem_bytes != SHARED_SPRAM_BYTES):
            raise ConfigError(f"config: activations in SPRAM share the four 32 KiB SPRAMs with the weights "
                              f"(two SPRAMs a weight word): cols must be 4 and weight_mem_bytes "
                              f"{SHARED_SPRAM_BYTES}, got {self.cols} and {self.weight_mem_bytes}")
        if self.act_memory == "spram" and self.act_bank_bytes > SPRAM_BANK_BYTES:
            raise ConfigError(f"config: with act_memory 'spram' a bank is one SPRAM: act_bank_bytes must be "
                              f"at most {SPRAM_BANK_BYTES}, got {self.act_bank_bytes}")
        if self.weight_stream not in ("off", "auto", "on"):
            raise ConfigError(f"config: weight_stream must be 'off', 'auto' or 'on', got {self.weight_stream!r}")
        if not isinstance(self.weight_resident_bytes, int) or self.weight_resident_bytes < 0:
            raise ConfigError(f"config: weight_resident_bytes must be an int >= 0, got {self.weight_resident_bytes!r}")
        if self.flash_lines not in (1, 2, 4):
            raise ConfigError(f"config: flash_lines must be 1, 2 or 4, got {self.flash_lines!r}")
        if self.weight_stream != "off" and self.param_depth < 256:
            raise ConfigError("config: with streamed weights the parameters go through a 256-entry store "
                              f"addressed like the parameter memory: param_depth must be at least 256, got "
                              f"{self.param_depth}")
        if self.weight_stream != "off" and self.act_memory == "bram":
            raise ConfigError("config: streamed weights reach the array through the weight cache beside maps "
                              f"in SPRAM, so weight_stream {self.weight_stream!r} needs act_memory 'auto' or "
                              "'spram', got 'bram'")
        if self.weight_words < 1:
            raise ConfigError(f"config: weight_mem_bytes must hold one word of cols weights, at least "
                              f"{self.cols}, got {self.weight_mem_bytes}")

    @property
    def weight_words(self):
        """Depth of the weight memory in words of ``cols`` int8 weights."""
        return self.weight_mem_bytes // self.cols

    # Widths: every address, index and descriptor field width the compiler and the hardware
    # use is stated here, the addresses' sized from the memories above, so any size fits.

    @property
    def banks(self):
        """Activation banks: one per (row parity, column parity), so that the four pixels of
        a 2x2 block are read in one cycle."""
        return 4

    @property
    def bank_addr_bits(self):
        """Byte address inside one activation bank."""
        return _index_bits(self.act_bank_bytes)

    @property
    def host_addr_bits(self):
        """The host port's address: the bank number above the byte address."""
        return self.bank_addr_bits + _index_bits(self.banks)

    @property
    def ptr_bits(self):
        """Signed bank pointers of the address trackers: two bits more than a byte address,
        for the sign (padding puts a pointer before its map) and a step beyond the map's end."""
        return self.bank_addr_bits + 2

    @property
    def weight_addr_bits(self):
        """Word address of the weight memory."""
        return _index_bits(self.weight_words)

    @property
    def taps_bits(self):
        """A pass's reduction length: at most one weight word per tap, so at most weight_words."""
        return self.weight_words.bit_length()

    @property
    def param_addr_bits(self):
        """Entry address of the per-channel parameter memory."""
        return _index_bits(self.param_depth)

    @property
    def desc_index_bits(self):
        """Index of the running layer descriptor."""
        return _index_bits(self.desc_depth)

    @property
    def table_slot_bits(self):
        """Activation table slot of a descriptor."""
        return _index_bits(self.table_slots)

    @property
    def dim_bits(self):
        """Descriptor map sides, channel and loop counts (unsigned, below 1024) and the
        trackers' coordinates (signed: padding makes them negative).  Not a memory size: it
        bounds the layer shapes, which the compiler checks field by field."""
        return 10

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

    @property
    def in_spram(self):
        """The four activation banks are the SPRAMs, next to the weights."""
        return self.act_memory == "spram"

    def spram_resolved(self, need=SPRAM_BANK_BYTES):
        """The configuration of a program whose maps went to SPRAM, needing ``need`` bytes of
        each bank: the banks' addresses are as wide as that needs (the power of two that holds
        it), not the SPRAM's 15 bits."""
        size = 1 << max(9, (max(1, need) - 1).bit_length())
        return replace(self, act_memory="spram", act_bank_bytes=min(size, SPRAM_BANK_BYTES))

    @property
    def streams(self):
        """Some layers' weights stream from the flash (a compiled program's configuration)."""
        return self.weight_stream == "on"

    @property
    def stream_cycles_per_word(self):
        """Cycles the flash takes for one weight word: ``8 / flash_lines`` SCK periods a byte,
        an SCK period of two cycles (the reader's SCK is half the clock)."""
        return self.cols * (8 // self.flash_lines) * 2

    def with_(self, **changes):
        return replace(self, **changes)
