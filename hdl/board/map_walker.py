"""Host port addresses of an activation map's elements in NHWC order, one per ``next``.

The board streams the input tensor in and the output tensor out over a UART, in the
tensor's own NHWC order, while the core keeps maps in four parity banks
(:func:`compiler.program.bank_address`).  A table of addresses would cost block RAM; this
walks the layout with one incrementer instead, for any of a few fixed maps.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from compiler.program import bank_address


class MapWalker(wiring.Component):
    """``maps`` is a list of ``((H, W, C), base)`` in ``config``'s activation banks;
    ``restart`` (with ``select``) goes to element 0 of that map, ``next`` to the following
    element.  ``addr`` is combinational from registers, valid the cycle after ``restart`` or
    ``next``."""

    def __init__(self, config, maps):
        self.config = config
        self.maps = self.check(config, maps)
        super().__init__({
            "select": In(range(max(len(self.maps), 2))),
            "restart": In(1),
            "next": In(1),
            "addr": Out(config.host_addr_bits),
        })

    @staticmethod
    def check(config, maps):
        """The maps as ints; ValueError (one line) for one beyond the bank."""
        maps = [(tuple(int(v) for v in shape), int(base)) for shape, base in maps]
        for (h, w, c), base in maps:
            last = bank_address((h, w, c), base, h - 1, w - 1, c - 1)[1]
            if min(h, w, c) < 1 or last >= config.act_bank_bytes:
                raise ValueError(f"map {h}x{w}x{c} at {base} does not fit the {config.act_bank_bytes}-byte bank")
        return maps

    def elaborate(self, platform):
        m = Module()
        widest = max(max(w, c) for (_, w, c), _ in self.maps)

        def per_map(values):
            """The constant of the selected map."""
            out = Const(values[0], range(max(values) + 1))
            for k, v in enumerate(values[1:], 1):
                out = Mux(self.select == k, v, out)
            return out

        c_last = per_map([c - 1 for (_, _, c), _ in self.maps])
        x_last = per_map([w - 1 for (_, w, _), _ in self.maps])
        base = per_map([b for _, b in self.maps])

        # At least one bit each: a 1x1x1 map (TFLite Micro's hello_world) still has an x[0].
        c, x = Signal(range(max(widest, 2))), Signal(range(max(widest, 2)))
        y_odd = Signal()
        addr = self.config.bank_addr_bits
        off = Signal(addr)        # the element's offset in its bank
        pix = Signal(addr)        # offset of channel 0 of the current pixel pair
        row = Signal(addr)        # offset of channel 0, pixel 0 of the current row pair
        step = off + 1
        m.d.comb += self.addr.eq(Cat(off, x[0], y_odd))

        with m.If(self.restart):
            m.d.sync += [c.eq(0), x.eq(0), y_odd.eq(0), off.eq(base), pix.eq(base), row.eq(base)]
        with m.Elif(self.next):
            with m.If(c != c_last):
                m.d.sync += [c.eq(c + 1), off.eq(step)]
            with m.Else():
                m.d.sync += c.eq(0)
                # The pixel pair (x even, x odd) shares one offset; after an odd pixel
                # ``off + 1`` is the next pair's start.
                with m.If(x != x_last):
                    m.d.sync += x.eq(x + 1)
                    with m.If(x[0]):
                        m.d.sync += [off.eq(step), pix.eq(step)]
                    with m.Else():
                        m.d.sync += off.eq(pix)
                with m.Else():
                    # After the last element of an odd row, ``off + 1`` is the next row pair's
                    # start; an even row is followed by its odd partner at the same offsets.
                    m.d.sync += [x.eq(0), y_odd.eq(~y_odd)]
                    with m.If(y_odd):
                        m.d.sync += [off.eq(step), pix.eq(step), row.eq(step)]
                    with m.Else():
                        m.d.sync += [off.eq(row), pix.eq(row)]
        return m
