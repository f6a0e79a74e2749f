"""int8 -> int8 lookup (TFLite LOGISTIC / TANH) on a stream of int8 vectors, one BRAM per lane."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

#: Run-time table load port.  ``addr`` is the table index ``x + 128`` (golden's layout), and
#: one write reaches every lane's copy, since all lanes apply the same function.
TableWriteSignature = wiring.Signature({
    "addr": Out(8),
    "data": Out(signed(8)),
    "en": Out(1),
})


class ActivationTable(wiring.Component):
    """Replaces each int8 ``x`` of a ``lanes``-wide vector by ``table[x + 128]``.

    Each lane owns a 256 x 8 ``Memory`` read synchronously, so yosys maps it to one
    SB_RAM40_4K; ``init`` (256 int8, e.g. ``golden.nonlinear.lookup_table``) is the table in
    the bitstream, identity by default so an unloaded table changes nothing.  ``write``
    reloads it at run time so one bitstream serves models with different tables; load it
    while no transfer is in flight.

    ``bypass`` is sampled together with each accepted transfer, so it can change between
    layers without corrupting values still in the pipeline; a bypassed value leaves as is.

    The lookup register only loads when the pipeline advances: while ``o`` is stalled it
    keeps the pending result, so back-pressure needs no skid buffer and the unit still
    accepts one vector per cycle.  It is written as an asynchronous read port plus a
    reset-less enabled register, which yosys folds into the SB_RAM40_4K's synchronous read;
    with ``no_rw_check`` a read racing a write is left undefined.  (Amaranth's synchronous
    port promises read-before-write there, and yosys spends ~20 LUTs per lane emulating it.)
    """

    def __init__(self, lanes=1, init=None):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"ActivationTable: lanes must be a positive int, got {lanes!r}")
        init = list(range(-128, 128)) if init is None else [int(v) for v in init]
        if len(init) != 256 or not all(-128 <= v <= 127 for v in init):
            raise ValueError("ActivationTable: init must be 256 int8 values indexed by x + 128")
        self.lanes = lanes
        self._init = init
        vector = data.ArrayLayout(signed(8), lanes)
        super().__init__({
            "i": In(stream.Signature(vector)),
            "o": Out(stream.Signature(vector)),
            "bypass": In(1),
            "write": In(TableWriteSignature),
        })

    @property
    def latency(self):
        """Cycles from an accepted input transfer to its output being valid (``o.ready`` high)."""
        return 1

    def elaborate(self, platform):
        m = Module()

        advance = Signal()           # the output register is empty or being emptied
        bypass = Signal()
        held = Signal.like(self.i.payload, reset_less=True)
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
        ]
        with m.If(advance):
            m.d.sync += [
                self.o.valid.eq(self.i.valid),
                bypass.eq(self.bypass),
                held.eq(self.i.payload),
            ]

        # Entry x lives at address x's two's-complement bits: the input is the read address.
        init = self._init[128:] + self._init[:128]
        for lane in range(self.lanes):
            m.submodules[f"table{lane}"] = table = Memory(
                shape=signed(8), depth=256, init=init, attrs={"no_rw_check": 1})
            wr = table.write_port()
            rd = table.read_port(domain="comb")
            looked_up = Signal(signed(8), name=f"looked_up{lane}", reset_less=True)
            with m.If(advance):
                m.d.sync += looked_up.eq(rd.data)
            m.d.comb += [
                rd.addr.eq(self.i.payload[lane].as_unsigned()),
                wr.addr.eq(self.write.addr ^ 0x80),
                wr.data.eq(self.write.data),
                wr.en.eq(self.write.en),
                self.o.payload[lane].eq(Mux(bypass, held[lane], looked_up)),
            ]
        return m
