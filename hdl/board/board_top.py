"""A board's top level: the PLL from its oscillator, and the :class:`~hdl.board.soc.Soc` on its
UART, SPI flash and LED pins, as the board profile names them."""

from amaranth.hdl import ClockDomain, Elaboratable, Instance, Module
from amaranth.lib import io

from .pll import Pll


class BoardTop(Elaboratable):
    def __init__(self, board, soc, pll):
        self.board, self.soc, self.pll = board, soc, pll

    def elaborate(self, platform):
        m = Module()
        board, soc = self.board, self.soc

        def buffer(direction, port):
            m.submodules += (buf := io.Buffer(direction, port))
            return buf.i if direction == "i" else buf.o

        m.domains.sync = cd_sync = ClockDomain("sync")
        osc = platform.request(board.osc, dir="-")
        # iCE40: the oscillator pin is the PLL's own pad and must feed SB_PLL40_PAD directly.
        pin = osc.io if board.family == "ice40" else buffer("i", osc)
        m.submodules.pll = Pll(self.pll, pin, cd_sync)
        platform.add_clock_constraint(cd_sync.clk, self.pll.f_out_hz)
        m.submodules.soc = soc

        uart = platform.request(board.uart, 0, dir="-")
        if soc.streams:
            # Weights stream on the flash's four I/O lines, each with its own output enable.
            flash = platform.request(board.flash_quad, 0, dir="-")
            m.d.comb += [soc.uart_rx.eq(buffer("i", uart.rx)), buffer("o", uart.tx).eq(soc.uart_tx),
                         buffer("o", flash.cs).eq(soc.flash_cs)]
            for k in range(4):
                m.submodules[f"dq{k}"] = dq = io.Buffer("io", flash.dq[k])
                m.d.comb += [dq.o.eq(soc.flash_dq_o[k]), dq.oe.eq(soc.flash_dq_oe[k]), soc.flash_dq_i[k].eq(dq.i)]
        else:
            flash = platform.request(board.flash, 0, dir="-")
            m.d.comb += [soc.uart_rx.eq(buffer("i", uart.rx)), buffer("o", uart.tx).eq(soc.uart_tx),
                         buffer("o", flash.cs).eq(soc.flash_cs), buffer("o", flash.copi).eq(soc.flash_copi),
                         soc.flash_cipo.eq(buffer("i", flash.cipo))]
        if hasattr(flash, "clk"):
            m.d.comb += buffer("o", flash.clk).eq(soc.flash_sck)
        else:
            # ECP5: the configuration flash clock is reached through USRMCLK only.
            m.submodules.usrmclk = Instance("USRMCLK", i_USRMCLKI=soc.flash_sck, i_USRMCLKTS=0)
        ready_led, error_led = board.leds
        m.d.comb += [buffer("o", platform.request(ready_led, 0, dir="-")).eq(soc.led_ready),
                     buffer("o", platform.request(error_led, 1 if ready_led == error_led else 0, dir="-"))
                     .eq(soc.led_error)]
        return m
