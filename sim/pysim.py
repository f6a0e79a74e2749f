"""Runs the accelerator in the Amaranth simulator: slow (thousands of cycles a second) but
needs nothing besides Amaranth, so it is the engine for small models and waveforms.

The testbench talks to the core through its ports exactly as a board or the Verilator
harness does: weights through the load port, the input map through the host port, then
``start`` and wait for ``done``.
"""

import numpy as np
from amaranth.sim import Simulator

from compiler.program import bank_address
from hdl.core.accelerator import Accelerator, host_address

from .models import MultiIoFlashModel


def input_writes(program, x):
    """(host address, byte) pairs that place one input tensor in the activation banks."""
    h, w, c = program.input_shape
    x = np.asarray(x).reshape(h, w, c)
    writes = []
    for y in range(h):
        for xx in range(w):
            for ch in range(c):
                bank, addr = bank_address(program.input_shape, 0, y, xx, ch)
                writes.append((host_address(program.config, bank, addr), int(x[y, xx, ch]) & 0xFF))
    return writes


def map_addresses(config, shape, base, stride=0):
    """Host addresses of every element of an (H, W, C) map, in NHWC order; ``stride``: the
    stored map's channels when it is a slice of a CONCATENATION."""
    h, w, c = shape
    stored = (h, w, stride or c)
    return [host_address(config, *bank_address(stored, base, y, xx, ch))
            for y in range(h) for xx in range(w) for ch in range(c)]


def output_addresses(program):
    d = program.output_desc
    return map_addresses(program.config, d.out_shape, d.out_base)


def weight_words(program):
    """The weight image as load-port words: lane j of a word in bits [8j + 7 : 8j]."""
    image, n = program.weight_image, program.config.cols
    return [int.from_bytes(image[k:k + n], "little") for k in range(0, len(image), n)]


def run(program, x, vcd=None, max_cycles=5_000_000, waits=None, flash=None):
    """Outputs (N, n_out) int8 and cycles per inference (N,) for a batch of inputs.  A program
    whose weights stream reads them from a model of the board's flash (W25Q128JV, quad read),
    by default ``MultiIoFlashModel(program.stream_image)`` (the stream at address 0), else
    ``flash``; ``waits``, a list, then receives each inference's cycles spent waiting for it."""
    dut = Accelerator(program)
    outs, cycles = [], []
    out_addrs = output_addresses(program)

    async def bench(ctx):
        for i, word in enumerate(weight_words(program)):
            ctx.set(dut.wload.addr, i)
            ctx.set(dut.wload.data.as_value(), word)
            ctx.set(dut.wload.we, 1)
            await ctx.tick()
        ctx.set(dut.wload.we, 0)
        for row in np.asarray(x):
            for addr, byte in input_writes(program, row):
                ctx.set(dut.host.addr, addr)
                ctx.set(dut.host.wdata, byte)
                ctx.set(dut.host.we, 1)
                await ctx.tick()
            ctx.set(dut.host.we, 0)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            waited = 0
            while not ctx.get(dut.done):
                await ctx.tick()
                waited += 1
                if waited > max_cycles:
                    raise RuntimeError(f"accelerator did not finish within {max_cycles} cycles")
            cycles.append(ctx.get(dut.cycles))
            if program.config.streams:
                if not ctx.get(dut.flash_ok):
                    raise RuntimeError("the weights streamed from flash failed their CRC-32: the flash does not "
                                       "hold the program's stream")
                if waits is not None:
                    waits.append(ctx.get(dut.flash_wait))
            got = []
            for addr in out_addrs:
                ctx.set(dut.host.addr, addr)
                await ctx.tick()
                got.append(ctx.get(dut.host.rdata))
            outs.append(got)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    if program.config.streams:
        if flash is None:
            flash = MultiIoFlashModel(program.stream_image)
        f = dut.flash
        sim.add_process(flash.process_io(f.sck, f.cs, f.dq_o, f.dq_oe, f.dq_i))
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return np.array(outs, np.uint8).astype(np.int8), np.array(cycles)
