"""Bit-serial CRC-32 (zlib's: reflected, polynomial 0xEDB88320) for the frames and the flash
image (docs/protocol.md): a bit a cycle, so about 45 logic cells where a byte-parallel
update would take three times that, and bytes come at least 16 cycles apart (UART frames,
flash reads)."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from host.wire import CRC_RESIDUE

__all__ = ["Crc32"]

POLY = 0xEDB88320


class Crc32(wiring.Component):
    """``clear`` restarts at ``0xFFFFFFFF``; a ``valid`` byte enters on ``data`` and has been
    folded into ``value`` (the register, not inverted) while ``busy``, :attr:`latency` cycles
    at most.  A byte offered while ``busy`` is a caller's bug: bytes must come at least
    :attr:`latency` cycles apart.  Once ``busy`` is low, ``residue_ok`` says the register
    holds the residue a frame leaves when its own CRC has followed it (an intact frame), and
    ``expect_ok`` that it equals ``expect``.  ``busy`` and both flags are flip-flops: the
    decisions that wait for them see no comparator."""

    latency = 10

    def __init__(self, expect=0):
        self.expect = int(expect) & 0xFFFFFFFF
        super().__init__({"clear": In(1), "valid": In(1), "data": In(8), "value": Out(32, init=0xFFFFFFFF),
                          "busy": Out(1), "residue_ok": Out(1), "expect_ok": Out(1)})

    def elaborate(self, platform):
        m = Module()
        # The byte's bits, LSB next, above a marker 1: the byte is done when only the marker
        # is left, so no bit counter is needed.  ``busy`` follows ``shifting`` a cycle late,
        # which also covers the cycle in which the flags compare the final value.
        bits = Signal(9)
        shifting = bits[1:] != 0
        m.d.sync += [self.busy.eq(self.valid | shifting), self.residue_ok.eq(self.value == CRC_RESIDUE),
                     self.expect_ok.eq(self.value == self.expect)]
        feedback = self.value[0] ^ bits[0]
        with m.If(self.clear):
            m.d.sync += [self.value.eq(0xFFFFFFFF), bits.eq(0), self.busy.eq(0)]
        with m.Elif(self.valid):
            m.d.sync += bits.eq(Cat(self.data, Const(1, 1)))
        with m.Elif(shifting):
            m.d.sync += [self.value.eq((self.value >> 1) ^ Mux(feedback, POLY, 0)), bits.eq(bits >> 1)]
        return m
