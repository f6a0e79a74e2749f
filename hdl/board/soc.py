"""The board-side device: boots the weights from SPI flash, then serves docs/protocol.md
over a UART around the accelerator core.

Everything here is sized by one compiled program: the expected lengths, the flash header
and the INFO reply are constants in a small ROM, and the input and output tensors are
walked in NHWC order by :class:`~hdl.board.map_walker.MapWalker`.  The logic is deliberately
byte-serial and narrow, because it shares a nearly full UP5K with the core.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from host import protocol

from ..core.accelerator import Accelerator
from .map_walker import MapWalker
from .spi_flash import SpiFlashReader
from .uart import UartRx, UartTx

INFO_LEN = 17       # status, magic, input bytes, output bytes, weight bytes, model id


def _le(value, n):
    return [(int(value) >> (8 * k)) & 0xFF for k in range(n)]


class Soc(wiring.Component):
    """Pins only: ``uart_rx``/``uart_tx``, the flash's ``flash_*`` (``flash_cs`` active high)
    and two LEDs.

    ``divisor`` is clock cycles per UART bit, ``timeout_cycles`` the frame timeout (and the
    quiet time after an error), ``sck_half``/``wake_cycles`` the flash reader's timing,
    ``weights_offset`` the flash address of the weight header (the board's)."""

    def __init__(self, program, *, model_id, divisor, timeout_cycles, sck_half=2, wake_cycles=200,
                 weights_offset=protocol.WEIGHTS_OFFSET):
        self.program = program
        self.model_id = int(model_id) & 0xFFFFFFFF
        self.divisor, self.timeout_cycles = int(divisor), int(timeout_cycles)
        self.sck_half, self.wake_cycles = int(sck_half), int(wake_cycles)
        self.weights_offset = int(weights_offset)
        h, w, c = program.input_shape
        oh, ow, oc = program.output_desc.out_shape
        self.input_bytes, self.output_bytes = h * w * c, oh * ow * oc
        self.weight_bytes = len(program.weight_image)
        if self.input_bytes > 0xFFFF or self.output_bytes > 0xFFFF:
            raise ValueError(f"input ({self.input_bytes} B) and output ({self.output_bytes} B) must each fit "
                             "the protocol's 16-bit length")
        if self.timeout_cycles < 16 * self.divisor:
            raise ValueError(f"frame timeout of {self.timeout_cycles} cycles is shorter than a byte "
                             f"({10 * self.divisor} cycles)")
        self.rom = ([protocol.OK, *protocol.INFO_MAGIC, *_le(self.input_bytes, 2), *_le(self.output_bytes, 2),
                     *_le(self.weight_bytes, 4), *_le(self.model_id, 4)]
                    + [*protocol.WEIGHTS_MAGIC, *_le(self.weight_bytes, 4)])
        assert len(self.rom) == INFO_LEN + protocol.WEIGHTS_HEADER_BYTES
        self._flash = SpiFlashReader(sck_half=self.sck_half, wake_cycles=self.wake_cycles,
                                     max_length=self.boot_bytes)
        super().__init__({
            "uart_rx": In(1, init=1), "uart_tx": Out(1, init=1),
            "flash_sck": Out(1), "flash_cs": Out(1), "flash_copi": Out(1), "flash_cipo": In(1),
            "led_ready": Out(1), "led_error": Out(1),
        })

    @property
    def boot_bytes(self):
        """Bytes the device reads from flash at reset: the weight header and the image."""
        return protocol.WEIGHTS_HEADER_BYTES + self.weight_bytes

    @property
    def boot_cycles(self):
        """Cycles from reset until the device answers commands (bytes before are ignored)."""
        return self._flash.cycles(self.boot_bytes) + 4

    def elaborate(self, platform):
        m = Module()
        prog = self.program
        m.submodules.core = core = Accelerator(prog)
        m.submodules.rx = rx = UartRx(self.divisor)
        m.submodules.tx = tx = UartTx(self.divisor)
        m.submodules.flash = flash = self._flash
        maps = [(prog.input_shape, 0), (prog.output_desc.out_shape, prog.output_desc.out_base)]
        m.submodules.walker = walker = MapWalker(prog.config, maps)
        m.submodules.rom = rom = Memory(shape=8, depth=len(self.rom), init=self.rom)
        rom_rd = rom.read_port()
        m.d.comb += [
            rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx),
            self.flash_sck.eq(flash.sck), self.flash_cs.eq(flash.cs), self.flash_copi.eq(flash.copi),
            flash.cipo.eq(self.flash_cipo),
            flash.length.eq(self.boot_bytes),
            core.host.addr.eq(walker.addr),
        ]

        idx = Signal(range(len(self.rom)))        # ROM byte: INFO reply, expected length, header
        m.d.comb += rom_rd.addr.eq(idx)
        # Bytes done in the current run, counted up from a clear (a down-counter loaded with
        # constants would get set/reset flip-flops that split its carry chain).
        # Bytes come at least 16 cycles apart, so ``done`` moves a cycle after the FSM asks
        # and each "last byte of a run of n" flag is a registered compare a cycle later
        # still: the FSM and the counter see flip-flops.
        longest = max(self.boot_bytes, self.input_bytes, self.output_bytes, 4)
        done = Signal(range(longest))
        done_inc, done_clr = Signal(), Signal()     # the FSM's requests, applied a cycle later
        m.d.sync += [done_inc.eq(0), done_clr.eq(0)]
        with m.If(done_clr):
            m.d.sync += done.eq(0)
        with m.Elif(done_inc):
            m.d.sync += done.eq(done + 1)
        last_flags = {}
        for count in {protocol.WEIGHTS_HEADER_BYTES, self.weight_bytes, 2, 4, self.input_bytes, self.output_bytes}:
            last_flags[count] = Signal(name=f"last_of_{count}")
            m.d.sync += last_flags[count].eq(done == count - 1)

        def last(count):
            """This byte is the last of a run of ``count``."""
            return last_flags[count]
        mismatch = Signal()
        weights_ok = Signal()
        error = Signal()
        code = Signal(8)

        # Weight words: ``cols`` bytes, lowest lane first, then one load-port write the
        # cycle after the word's last byte (the address moves on after it).
        cols = prog.config.cols
        word = Signal(8 * cols)
        lane = Signal(range(cols))
        waddr = Signal(prog.config.weight_addr_bits)
        wload_we = Signal()
        m.d.sync += wload_we.eq(0)
        with m.If(wload_we):
            m.d.sync += waddr.eq(waddr + 1)
        m.d.comb += [core.wload.addr.eq(waddr), core.wload.data.eq(word), core.wload.we.eq(wload_we)]

        def take_weight_byte(byte, write):
            m.d.sync += [lane.eq(Mux(lane == cols - 1, 0, lane + 1)), word.eq(Cat(word[8:], byte))]
            with m.If(lane == cols - 1):
                m.d.sync += wload_we.eq(write)

        # Walker steps, input writes: registered pulses the cycle after the byte event, so
        # the walker and the banks see flip-flops.  An output byte leaves four cycles after
        # its step (walker, bank read, ``value`` register): ``settle`` counts them down.
        walk_next, walk_restart, walk_output = Signal(), Signal(), Signal()
        host_we, host_wdata = Signal(), Signal(8)
        settle = Signal(2)
        value = Signal(8)
        m.d.sync += [walk_next.eq(0), walk_restart.eq(0), host_we.eq(0), value.eq(core.host.rdata)]
        m.d.comb += [walker.next.eq(walk_next), walker.restart.eq(walk_restart), walker.select.eq(walk_output),
                     core.host.we.eq(host_we), core.host.wdata.eq(host_wdata)]
        with m.If(settle != 0):
            m.d.sync += settle.eq(settle - 1)

        # Frame timeout and post-error quiet time: cleared by every received byte and while
        # the line is held low (a break), it runs out after ``timeout_cycles`` of silence.
        quiet = Signal(range(self.timeout_cycles + 1))
        expired = Signal()
        m.d.sync += expired.eq(quiet == self.timeout_cycles)
        rx_low = Signal()
        m.d.sync += rx_low.eq(~self.uart_rx)
        with m.If(rx.o.valid | rx.error | rx_low):
            m.d.sync += quiet.eq(0)
        with m.Elif(~expired):
            m.d.sync += quiet.eq(quiet + 1)

        # The ROM answers a cycle after ``idx`` moves; a transmitted ROM byte waits for it.
        rom_fresh = Signal()
        m.d.sync += rom_fresh.eq(1)

        best, best_at = Signal(8), Signal(8)
        has_argmax = self.output_bytes <= 256

        # One-hot states: yosys re-encodes no FSM whose register has an initial value (all of
        # Amaranth's do), and a binary state's decode made the longest paths of the design.
        states = ["BOOT", "BOOT_HEADER", "BOOT_DATA", "IDLE", "LENGTH_I", "LENGTH_W", "INPUT", "START", "RUN",
                  "SEND_OK", "SEND_OUTPUT", "SEND_ARGMAX", "SEND_CYCLES", "WEIGHTS", "SEND_DONE", "INFO",
                  "SEND_FLAGS", "DISCARD", "SEND_ERROR"]
        # Each state is its own flip-flop, and a transition clears its source and sets its
        # target, so a state's next value depends only on its own transitions.
        bits = {name: Signal(name=f"st_{name.lower()}", init=name == "BOOT") for name in states}
        current = [None]

        def state(name):
            current[0] = name
            return m.If(bits[name])

        def goto(name):
            m.d.sync += [bits[current[0]].eq(0), bits[name].eq(1)]

        # Received bytes are acted on a cycle late (``rx_ev``; the payload holds until the
        # next start bit), against compares registered meanwhile.
        rx_ev, rx_match = Signal(), Signal()
        is_info, is_infer, is_weights = Signal(), Signal(), Signal()
        m.d.sync += [rx_ev.eq(rx.o.valid), rx_match.eq(rx.o.p == rom_rd.data), is_info.eq(rx.o.p == protocol.CMD_INFO),
                     is_infer.eq(rx.o.p == protocol.CMD_INFER), is_weights.eq(rx.o.p == protocol.CMD_WEIGHTS)]

        def fail(reason, wait=True):
            m.d.sync += [code.eq(reason), error.eq(1)]
            goto("DISCARD" if wait else "SEND_ERROR")

        def guard_frame():
            """Mid-frame: a framing error or a silent line ends the frame with an error; the
            caller's ``m.Elif`` then takes a received byte (never together with an error)."""
            with m.If(rx.error):
                fail(protocol.FRAMING)
            with m.Elif(expired):
                fail(protocol.TIMEOUT, wait=False)

        m.d.comb += [self.led_ready.eq(weights_ok & ~core.busy), self.led_error.eq(error)]

        with state("BOOT"):
            m.d.comb += [flash.start.eq(1), flash.addr.eq(self.weights_offset)]
            m.d.sync += [idx.eq(INFO_LEN), done_clr.eq(1), mismatch.eq(0), waddr.eq(0), lane.eq(0)]
            goto("BOOT_HEADER")
        with state("BOOT_HEADER"):
            m.d.comb += flash.o.ready.eq(1)
            with m.If(flash.o.valid):
                m.d.sync += [idx.eq(idx + 1), done_inc.eq(1),
                             mismatch.eq(mismatch | (flash.o.p != rom_rd.data))]
                with m.If(last(protocol.WEIGHTS_HEADER_BYTES)):
                    m.d.sync += done_clr.eq(1)
                    goto("BOOT_DATA")
        with state("BOOT_DATA"):
            m.d.comb += flash.o.ready.eq(1)
            with m.If(flash.o.valid):
                take_weight_byte(flash.o.p, ~mismatch)
                m.d.sync += done_inc.eq(1)
                with m.If(last(self.weight_bytes)):
                    m.d.sync += [weights_ok.eq(~mismatch), error.eq(mismatch)]
                    goto("IDLE")

        with state("IDLE"):
            m.d.sync += idx.eq(0)
            with m.If(rx.error):
                fail(protocol.FRAMING)
            with m.Elif(rx_ev):
                with m.If(is_info):
                    goto("INFO")
                with m.Elif(is_infer):
                    m.d.sync += [idx.eq(5), done_clr.eq(1), mismatch.eq(0)]
                    with m.If(weights_ok):
                        goto("LENGTH_I")
                    with m.Else():
                        fail(protocol.NO_WEIGHTS)
                with m.Elif(is_weights):
                    m.d.sync += [idx.eq(9), done_clr.eq(1), mismatch.eq(0)]
                    goto("LENGTH_W")
                with m.Else():
                    fail(protocol.BAD_COMMAND)

        for name, data_state, fields in (("LENGTH_I", "INPUT", 2), ("LENGTH_W", "WEIGHTS", 4)):
            with state(name):
                guard_frame()
                with m.Elif(rx_ev):
                    bad = mismatch | ~rx_match
                    m.d.sync += [idx.eq(idx + 1), done_inc.eq(1), mismatch.eq(bad)]
                    with m.If(last(fields)):
                        m.d.sync += [done_clr.eq(1), waddr.eq(0), lane.eq(0), walk_restart.eq(1),
                                     walk_output.eq(0)]
                        with m.If(bad):
                            fail(protocol.BAD_LENGTH)
                        with m.Else():
                            if data_state == "WEIGHTS":
                                m.d.sync += weights_ok.eq(0)
                            goto(data_state)

        with state("INPUT"):
            guard_frame()
            with m.Elif(rx.o.valid):
                m.d.sync += [host_wdata.eq(rx.o.p), host_we.eq(1), walk_next.eq(1), done_inc.eq(1)]
                with m.If(last(self.input_bytes)):
                    goto("START")
        with state("START"):
            m.d.comb += core.start.eq(1)
            goto("RUN")
        with state("RUN"):
            with m.If(core.done):
                m.d.sync += [done_clr.eq(1), best_at.eq(0), best.eq(0x80), walk_restart.eq(1),
                             walk_output.eq(1), settle.eq(3)]
                goto("SEND_OK")
        with state("SEND_OK"):
            m.d.comb += [tx.i.valid.eq(1), tx.i.p.eq(protocol.OK)]
            with m.If(tx.i.ready):
                goto("SEND_OUTPUT")
        with state("SEND_OUTPUT"):
            m.d.comb += [tx.i.valid.eq(settle == 0), tx.i.p.eq(value)]
            # The state's own valid term, not ``tx.i.valid`` (every state's terms ORed): that
            # put the whole state decode in front of the argmax compare.
            with m.If((settle == 0) & tx.i.ready):
                m.d.sync += [walk_next.eq(1), done_inc.eq(1), settle.eq(3)]
                # The first largest value wins: only a strictly larger one replaces it.
                with m.If(value.as_signed() > best.as_signed()):
                    m.d.sync += [best.eq(value), best_at.eq(done[:8])]
                with m.If(last(self.output_bytes)):
                    m.d.sync += done_clr.eq(1)
                    goto("SEND_ARGMAX")
        with state("SEND_ARGMAX"):
            m.d.comb += [tx.i.valid.eq(1), tx.i.p.eq(best_at if has_argmax else 0xFF)]
            with m.If(tx.i.ready):
                goto("SEND_CYCLES")
        with state("SEND_CYCLES"):
            m.d.comb += [tx.i.valid.eq(1), tx.i.p.eq(core.cycles.word_select(done[:2], 8))]
            with m.If(tx.i.ready):
                m.d.sync += done_inc.eq(1)
                with m.If(last(4)):
                    m.d.sync += error.eq(0)
                    goto("IDLE")

        with state("WEIGHTS"):
            guard_frame()
            with m.Elif(rx.o.valid):
                take_weight_byte(rx.o.p, 1)
                m.d.sync += done_inc.eq(1)
                with m.If(last(self.weight_bytes)):
                    m.d.sync += weights_ok.eq(1)
                    goto("SEND_DONE")
        with state("SEND_DONE"):
            m.d.comb += [tx.i.valid.eq(1), tx.i.p.eq(protocol.OK)]
            with m.If(tx.i.ready):
                m.d.sync += error.eq(0)
                goto("IDLE")

        with state("INFO"):
            m.d.comb += [tx.i.valid.eq(rom_fresh), tx.i.p.eq(rom_rd.data)]
            with m.If(rom_fresh & tx.i.ready):
                m.d.sync += [idx.eq(idx + 1), rom_fresh.eq(0)]
                with m.If(idx == INFO_LEN - 1):
                    goto("SEND_FLAGS")
        with state("SEND_FLAGS"):
            m.d.comb += [tx.i.valid.eq(1), tx.i.p.eq(weights_ok)]
            with m.If(tx.i.ready):
                m.d.sync += error.eq(~weights_ok & error)
                goto("IDLE")

        with state("DISCARD"):
            with m.If(expired):
                goto("SEND_ERROR")
        with state("SEND_ERROR"):
            m.d.comb += [tx.i.valid.eq(1), tx.i.p.eq(code)]
            with m.If(tx.i.ready):
                goto("IDLE")
        return m
