"""Single-port RAM (the iCE40 UP5K's SB_SPRAM256KA) and the weight store built from it.

yosys does not map a ``lib.memory.Memory`` to SPRAM (Amaranth always emits an initialiser,
and SPRAM has no initial contents), so the iCE40 variant instantiates the primitive by
hand; the generic variant is its behavioural twin, which is what the Amaranth simulator
runs.  tests/test_spram.py checks the instance against yosys' own model
(:func:`hdl.units.dsp.ice40_sim_model`) in lockstep with the twin.
"""

import numpy as np
from amaranth.hdl import C, Cat, ClockSignal, Instance, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.config import ConfigError

from .ports import weight_layout, weight_load_signature, weight_read_signature

SPRAM_ADDR_BITS = 14
SPRAM_DEPTH = 1 << SPRAM_ADDR_BITS
SPRAM_WIDTH = 16
#: SB_SPRAM256KA blocks on an iCE40 UP5K.
UP5K_SPRAMS = 4


class SPRAM(wiring.Component):
    """One 16K x 16 single-port RAM.

    ``we`` writes the bytes of ``wdata`` that ``wmask`` selects (bit 0 the low byte) at
    ``addr`` (whatever ``en`` is).  Otherwise ``en`` reads ``addr``: ``rdata`` is valid
    :attr:`latency` cycles later and holds while ``en`` and ``we`` are both low (the SPRAM is
    deselected), so a stalled pipeline keeps its operand without re-reading it.

    ``rdata`` is undefined before the first read and after a write until the next read
    (yosys' model drives X; the generic twin holds its last value), and so is any word
    never written, since SPRAM cannot be initialised.  ``init`` preloads the generic
    twin only, so simulations need not spend cycles loading.
    """

    addr: In(SPRAM_ADDR_BITS)
    wdata: In(SPRAM_WIDTH)
    wmask: In(2)
    we: In(1)
    en: In(1)
    rdata: Out(SPRAM_WIDTH)

    def __init__(self, target="generic", init=None):
        if target not in ("generic", "ice40"):
            raise ValueError(f"SPRAM: target must be 'generic' or 'ice40', got {target!r}")
        if init is not None and target == "ice40":
            raise ValueError("SPRAM: init applies to the generic target only; SB_SPRAM256KA has no "
                             "initial contents, so write the data through the port")
        init = [] if init is None else [int(v) for v in init]
        if len(init) > SPRAM_DEPTH or not all(0 <= v < 1 << SPRAM_WIDTH for v in init):
            raise ValueError(f"SPRAM: init must be at most {SPRAM_DEPTH} unsigned 16-bit words")
        self.target = target
        self._init = init
        super().__init__()

    @property
    def latency(self):
        """DATAOUT is registered inside the SPRAM: data arrives the cycle after its address."""
        return 1

    def elaborate(self, platform):
        m = Module()
        if self.target == "ice40":
            m.submodules.spram = Instance(
                "SB_SPRAM256KA",
                i_CLOCK=ClockSignal(),
                i_ADDRESS=self.addr,
                i_DATAIN=self.wdata,
                # One mask bit a nibble: both of a byte's.
                i_MASKWREN=Cat(self.wmask[0], self.wmask[0], self.wmask[1], self.wmask[1]),
                i_WREN=self.we,
                # Deselected, DATAOUT keeps its value: that is the read enable.
                i_CHIPSELECT=self.en | self.we,
                i_STANDBY=C(0, 1),
                i_SLEEP=C(0, 1),
                i_POWEROFF=C(1, 1),            # active low
                o_DATAOUT=self.rdata,
            )
        else:
            m.submodules.mem = mem = Memory(shape=SPRAM_WIDTH, depth=SPRAM_DEPTH, init=self._init)
            wr = mem.write_port(granularity=8)
            rd = mem.read_port()
            m.d.comb += [
                wr.addr.eq(self.addr), wr.data.eq(self.wdata), wr.en.eq(self.wmask & self.we.replicate(2)),
                rd.addr.eq(self.addr), rd.en.eq(self.en & ~self.we),
                self.rdata.eq(rd.data),
            ]
        return m


class WeightMemory(wiring.Component):
    """Words of ``config.cols`` int8 weights: SPRAMs on iCE40, one block-RAM memory otherwise.

    On iCE40 the words are split across :attr:`sprams_wide` SPRAMs side by side (two weights
    in each) and :attr:`banks` banks of :data:`SPRAM_DEPTH` words, selected by the address
    bits above the SPRAM's; all ``config.weight_words`` are there, since the SPRAMs are.  The
    generic target holds ``depth`` words (the program's, so that a device with block RAM
    spends only what the model needs; ``config.weight_words`` if not given) in one memory
    ``cols`` bytes wide: a grid of 16-bit SPRAM twins would round every column up to 16K
    words, twice the block RAM of the ULX3S's weights.

    ``read`` is the sequencer's port: ``data`` is valid :attr:`latency` cycles after
    ``addr`` with ``en`` high and holds while ``en`` is low.  ``load`` fills the memory
    (SPRAM is not in the bitstream: the board loads it from flash or UART, a simulation
    through this port or ``init``).  On iCE40 both share the SPRAMs' single port, so load
    only while the accelerator is idle: if both are used in one cycle the load wins, the
    read is dropped, and ``read.data`` is undefined until the next read.

    ``init`` (int8 array of shape (n, cols), n <= the depth) preloads words 0..n-1 on the
    generic target only, so simulations need not spend cycles loading.
    """

    def __init__(self, config, init=None, depth=None):
        self.config = config
        self.depth = config.weight_words if depth is None else depth
        if not 1 <= self.depth <= config.weight_words:
            raise ValueError(f"WeightMemory: depth must be 1..{config.weight_words} words, got {self.depth}")
        self.sprams_wide = -(-config.cols * 8 // SPRAM_WIDTH)
        self.banks = -(-config.weight_words // SPRAM_DEPTH)
        if config.target == "ice40" and self.sprams_wide * self.banks > UP5K_SPRAMS:
            raise ConfigError(
                f"config: {config.weight_words} words of {config.cols} weights need "
                f"{self.sprams_wide} x {self.banks} SB_SPRAM256KA, but the UP5K has {UP5K_SPRAMS}; "
                f"lower weight_mem_bytes")
        self._init = None if init is None else self._check_init(init)
        super().__init__({"read": In(weight_read_signature(config)), "load": In(weight_load_signature(config))})

    @property
    def latency(self):
        """The SPRAM's registered output; the bank multiplexer after it is combinational."""
        return 1

    def _check_init(self, init):
        cfg = self.config
        if cfg.target == "ice40":
            raise ValueError("WeightMemory: init applies to the generic target only; SB_SPRAM256KA "
                             "has no initial contents, so fill it through the load port")
        words = np.asarray(init)
        if (words.ndim != 2 or words.shape[1] != cfg.cols or len(words) > self.depth
                or not np.issubdtype(words.dtype, np.integer)
                or (words.size and (words.min() < -128 or words.max() > 127))):
            raise ValueError(f"WeightMemory: init must be int8 values of shape (n, {cfg.cols}) "
                             f"with n <= {self.depth}, got {words.dtype} {words.shape}")
        return words

    def elaborate(self, platform):
        if self.config.target == "ice40":
            return self._elaborate_sprams()
        m = Module()
        init = [] if self._init is None else [[int(v) for v in row] for row in self._init]
        m.submodules.mem = mem = Memory(shape=weight_layout(self.config), depth=self.depth, init=init)
        wr, rd = mem.write_port(), mem.read_port()
        m.d.comb += [
            wr.addr.eq(self.load.addr), wr.data.eq(self.load.data), wr.en.eq(self.load.we),
            rd.addr.eq(self.read.addr), rd.en.eq(self.read.en & ~self.load.we),
            self.read.data.eq(rd.data),
        ]
        return m

    def _elaborate_sprams(self):
        m = Module()
        cfg = self.config
        loading = self.load.we
        addr = Mux(loading, self.load.addr, self.read.addr)
        bank = addr[SPRAM_ADDR_BITS:]
        reading = self.read.en & ~loading
        wdata = Signal(SPRAM_WIDTH * self.sprams_wide)
        # The bank whose SPRAMs hold the last read word; like their outputs, it ignores reset.
        read_bank = Signal.like(bank, reset_less=True)
        m.d.comb += wdata.eq(self.load.data)
        with m.If(reading):
            m.d.sync += read_bank.eq(bank)

        # Only the addressed bank is selected, so the others hold their outputs and idle.
        for b in range(self.banks):
            selected = bank == b
            rdata = []
            for w in range(self.sprams_wide):
                m.submodules[f"spram{b}_{w}"] = spram = SPRAM(cfg.target)
                m.d.comb += [
                    spram.addr.eq(addr[:SPRAM_ADDR_BITS]),
                    spram.wdata.eq(wdata.word_select(w, SPRAM_WIDTH)), spram.wmask.eq(0b11),
                    spram.we.eq(loading & selected),
                    spram.en.eq(reading & selected),
                ]
                rdata.append(spram.rdata)
            with m.If(read_bank == b):
                m.d.comb += self.read.data.eq(Cat(*rdata))
        return m
