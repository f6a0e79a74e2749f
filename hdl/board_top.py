"""A board's top level: the PLL from its oscillator, and the :class:`~hdl.soc.Soc` on its
UART, SPI flash and LED pins, as the board profile names them."""

from amaranth.hdl import ClockDomain, Elaboratable, Instance, Module

from .pll import Pll


class BoardTop(Elaboratable):
    def __init__(self, board, soc, pll):
        self.board, self.soc, self.pll = board, soc, pll

    def elaborate(self, platform):
        m = Module()
        board, soc = self.board, self.soc
        m.domains.sync = cd_sync = ClockDomain("sync")
        if board.family == "ice40":
            # The oscillator pin is the PLL's own pad: it must feed SB_PLL40_PAD directly.
            pin = platform.request(board.osc, dir="-").io
        else:
            pin = platform.request(board.osc).i
        m.submodules.pll = Pll(self.pll, pin, cd_sync)
        platform.add_clock_constraint(cd_sync.clk, self.pll.f_out_hz)
        m.submodules.soc = soc

        uart = platform.request(board.uart, 0)
        flash = platform.request(board.flash, 0)
        m.d.comb += [soc.uart_rx.eq(uart.rx.i), uart.tx.o.eq(soc.uart_tx),
                     flash.cs.o.eq(soc.flash_cs), flash.copi.o.eq(soc.flash_copi),
                     soc.flash_cipo.eq(flash.cipo.i)]
        if hasattr(flash, "clk"):
            m.d.comb += flash.clk.o.eq(soc.flash_sck)
        else:
            # ECP5: the configuration flash clock is reached through USRMCLK only.
            m.submodules.usrmclk = Instance("USRMCLK", i_USRMCLKI=soc.flash_sck, i_USRMCLKTS=0)
        ready_led, error_led = board.leds
        m.d.comb += [platform.request(ready_led, 0).o.eq(soc.led_ready),
                     platform.request(error_led, 1 if ready_led == error_led else 0).o.eq(soc.led_error)]
        return m
