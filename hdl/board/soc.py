"""The board-side device: boots the weights from SPI flash and checks them, then serves
docs/protocol.md over a UART around the accelerator core.

Everything here is sized by one compiled program: the expected lengths, the flash header
and the INFO reply are constants in a small ROM, and the input and output tensors are
walked in NHWC order by :class:`~hdl.board.map_walker.MapWalker`.  The logic is deliberately
byte-serial and narrow, because it shares a nearly full UP5K with the core.
"""

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from host import wire

from ..core.accelerator import Accelerator
from .crc32 import Crc32
from .frame_timer import FrameTimer
from .map_walker import MapWalker
from .one_hot import OneHot
from .spi_flash import SpiFlashReader
from .uart import UartRx, UartTx
from .weight_packer import WeightPacker

#: ROM layout: the INFO payload's constant part, the flash header the device expects, and
#: each command's expected length field.
INFO_CONST = wire.INFO_BYTES - 2          # weight state and boot result come from registers
HEADER_AT = INFO_CONST
LENGTH_AT = {wire.CMD_INFER: HEADER_AT + wire.WEIGHTS_HEADER_BYTES}
LENGTH_AT[wire.CMD_WEIGHTS] = LENGTH_AT[wire.CMD_INFER] + 4
LENGTH_AT[wire.CMD_INFO] = LENGTH_AT[wire.CMD_RELOAD] = LENGTH_AT[wire.CMD_WEIGHTS] + 4
REPLY_HEAD = len(wire.SYNC) + 6           # sync, command, status, length


def _le(value, n):
    return [(int(value) >> (8 * k)) & 0xFF for k in range(n)]


class Soc(wiring.Component):
    """Pins only: ``uart_rx``/``uart_tx``, the flash's ``flash_*`` (``flash_cs`` active high)
    and two LEDs.

    A program whose weights partly stream has the flash's four I/O lines (``flash_dq_o``,
    ``flash_dq_oe``, ``flash_dq_i``) instead of ``flash_copi``/``flash_cipo``: the boot reads
    on IO0 and IO1 with IO2 and IO3 (/WP, /HOLD) high, the core's quad reads take the lines
    while it selects the flash.  Its weight image is the program's ``flash_image``: the
    boot (and a WEIGHTS upload) checks all of it and copies the resident part into SPRAM;
    the core streams the rest from the flash, where it follows the resident part.

    ``divisor`` is clock cycles per UART bit, ``timeout_cycles`` the frame timeout (and the
    quiet time before an error reply), ``sck_half``/``wake_cycles`` the flash reader's
    timing, ``weights_offset`` the flash address of the weight header (the board's)."""

    def __init__(self, program, *, model_id, divisor, timeout_cycles, sck_half=2, wake_cycles=200,
                 weights_offset=wire.WEIGHTS_OFFSET):
        self.program = program
        self.model_id = int(model_id) & 0xFFFFFFFF
        self.program_id = program.program_id
        self.divisor, self.timeout_cycles = int(divisor), int(timeout_cycles)
        self.sck_half, self.wake_cycles = int(sck_half), int(wake_cycles)
        self.weights_offset = int(weights_offset)
        h, w, c = program.input_shape
        oh, ow, oc = program.output_desc.out_shape
        self.input_bytes, self.output_bytes = h * w * c, oh * ow * oc
        image = program.flash_image
        self.weight_bytes = len(image)
        self.resident_bytes = len(program.weight_image)     # into SPRAM; the rest streams
        self.weights_crc = wire.crc32(image)
        if self.input_bytes > wire.MAX_IO_BYTES or self.output_bytes > wire.MAX_IO_BYTES:
            raise ValueError(f"input ({self.input_bytes} B) and output ({self.output_bytes} B) must each fit "
                             "the protocol's 16-bit length")
        if self.timeout_cycles < 16 * self.divisor:
            raise ValueError(f"frame timeout of {self.timeout_cycles} cycles is shorter than a byte "
                             f"({10 * self.divisor} cycles)")
        header = wire.weights_header(image, self.program_id)
        self.rom = ([*wire.INFO_MAGIC, *_le(self.input_bytes, 2), *_le(self.output_bytes, 2),
                     *_le(self.weight_bytes, 4), *_le(self.model_id, 4), *_le(self.program_id, 4),
                     *_le(self.weights_crc, 4)]
                    + list(header) + _le(self.input_bytes, 4) + _le(self.weight_bytes, 4) + _le(0, 4))
        assert len(self.rom) == LENGTH_AT[wire.CMD_INFO] + 4
        self._flash = SpiFlashReader(sck_half=self.sck_half, wake_cycles=self.wake_cycles)
        self.streams = program.config.streams
        pins = ({"flash_dq_o": Out(4), "flash_dq_oe": Out(4), "flash_dq_i": In(4)} if self.streams
                else {"flash_copi": Out(1), "flash_cipo": In(1)})
        super().__init__({
            "uart_rx": In(1, init=1), "uart_tx": Out(1, init=1),
            "flash_sck": Out(1), "flash_cs": Out(1), **pins,
            "led_ready": Out(1), "led_error": Out(1),
        })

    @property
    def stream_base(self):
        """Flash address of the streamed weights: after the header and the resident weights."""
        return self.weights_offset + wire.WEIGHTS_HEADER_BYTES + self.resident_bytes

    @property
    def boot_bytes(self):
        """Bytes the device reads from flash at reset: the weight header and the image."""
        return wire.WEIGHTS_HEADER_BYTES + self.weight_bytes

    @property
    def boot_cycles(self):
        """Cycles from reset until the device hunts for frames (bytes before are ignored):
        the flash read, then the CRC's last byte."""
        return self._flash.cycles(self.boot_bytes) + Crc32.latency + 8

    def elaborate(self, platform):
        m = Module()
        prog = self.program
        m.submodules.core = core = Accelerator(prog, flash_base=self.stream_base, count_waits=False)
        m.submodules.rx = rx = UartRx(self.divisor)
        m.submodules.tx = tx = UartTx(self.divisor)
        m.submodules.flash = flash = self._flash
        m.submodules.crc = crc = Crc32(expect=~self.weights_crc)
        m.submodules.timer = timer = FrameTimer(self.timeout_cycles)
        m.submodules.packer = packer = WeightPacker(prog.config)
        maps = [(prog.input_shape, 0), (prog.output_desc.out_shape, prog.output_desc.out_base)]
        m.submodules.walker = walker = MapWalker(prog.config, maps)
        # In a block RAM: in logic the ROM's read multiplexer costs tens of cells the UP5K
        # lacks next to KWS's core.
        m.submodules.rom = rom = Memory(shape=8, depth=len(self.rom), init=self.rom, attrs={"ram_style": "block"})
        rom_rd = rom.read_port()
        wiring.connect(m, packer.wload, core.wload)
        if self.streams:
            # The core's quad reads have the lines while it selects the flash, the boot's
            # single-line reads (IO0 out, IO1 in, /WP and /HOLD high) otherwise.
            streaming = core.flash.cs
            m.d.comb += [
                rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx),
                self.flash_sck.eq(Mux(streaming, core.flash.sck, flash.sck)), self.flash_cs.eq(streaming | flash.cs),
                self.flash_dq_o.eq(Mux(streaming, core.flash.dq_o, Cat(flash.copi, Const(0b110, 3)))),
                self.flash_dq_oe.eq(Mux(streaming, core.flash.dq_oe, 0b1101)),
                flash.cipo.eq(self.flash_dq_i[1]), core.flash.dq_i.eq(self.flash_dq_i),
                core.host.addr.eq(walker.addr),
            ]
        else:
            m.d.comb += [
                rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx),
                self.flash_sck.eq(flash.sck), self.flash_cs.eq(flash.cs), self.flash_copi.eq(flash.copi),
                flash.cipo.eq(self.flash_cipo),
                core.host.addr.eq(walker.addr),
            ]
        rx_low = Signal()
        m.d.sync += rx_low.eq(~self.uart_rx)
        m.d.comb += timer.activity.eq(rx.o.valid | rx.error | rx_low)
        expired = timer.expired

        idx = Signal(range(len(self.rom)))        # ROM byte
        m.d.comb += rom_rd.addr.eq(idx)
        # Bytes done in the current run, counted up from a clear.  Bytes come at least 16
        # cycles apart, so ``done`` moves a cycle after the FSM asks and each "last byte of a
        # run of n" flag is a registered compare a cycle later still: the FSM and the counter
        # see flip-flops.
        longest = max(self.boot_bytes, self.input_bytes, self.output_bytes, REPLY_HEAD)
        done = Signal(range(longest))
        done_inc, done_clr = Signal(), Signal()
        m.d.sync += [done_inc.eq(0), done_clr.eq(0)]
        with m.If(done_clr):
            m.d.sync += done.eq(0)
        with m.Elif(done_inc):
            m.d.sync += done.eq(done + 1)
        runs = {wire.WEIGHTS_HEADER_BYTES, self.weight_bytes, 2, 4, REPLY_HEAD, self.input_bytes,
                self.output_bytes} - {0}
        if self.streams and self.resident_bytes:
            runs.add(self.resident_bytes)
        last_flags = {n: Signal(name=f"last_of_{n}") for n in runs}
        # The short runs share one "upper bits clear" term.
        low = 5
        upper_clear = done[low:] == 0
        for n, flag in last_flags.items():
            m.d.sync += flag.eq((done[:low] == n - 1) & upper_clear if n <= 1 << low else done == n - 1)

        # Bytes into the CRC a cycle after they are taken, from registers; ``crc_clear``
        # likewise.  While ``crc_pending`` (below) the CRC has not finished the last byte.
        crc_feed, crc_byte, crc_clear = Signal(), Signal(8), Signal()
        m.d.sync += crc_clear.eq(0)
        m.d.comb += [crc.valid.eq(crc_feed), crc.data.eq(crc_byte), crc.clear.eq(crc_clear)]

        # Walker steps, input writes: registered pulses the cycle after the byte event.  An
        # output byte leaves four cycles after its step (walker, bank read, ``value``
        # register): ``settle`` counts them down.
        walk_next, walk_restart, walk_output = Signal(), Signal(), Signal()
        host_we = Signal()
        settle = Signal(2)
        value = Signal(8)
        m.d.sync += [walk_next.eq(0), walk_restart.eq(0), host_we.eq(0), value.eq(core.host.rdata)]
        m.d.comb += [walker.next.eq(walk_next), walker.restart.eq(walk_restart), walker.select.eq(walk_output),
                     core.host.we.eq(host_we), core.host.wdata.eq(rx.o.p)]
        with m.If(settle != 0):
            m.d.sync += settle.eq(settle - 1)

        # The ROM answers a cycle after ``idx`` moves; a transmitted ROM byte waits for it.
        rom_fresh = Signal()
        m.d.sync += rom_fresh.eq(1)

        # What the device knows about its weights and the frame it is answering.
        weight_state = Signal(2, init=wire.WEIGHTS_NONE)
        boot_result = Signal(2)
        usable = Signal()
        m.d.comb += usable.eq((weight_state == wire.WEIGHTS_FLASH) | (weight_state == wire.WEIGHTS_UART))
        mismatch = Signal()
        reloading = Signal()
        command, status = Signal(8), Signal(8)
        kind = {c: Signal(name=f"cmd_{n.lower()}") for c, n in wire.COMMAND_NAMES.items()}
        status_ok = Signal()
        error = Signal()
        m.d.comb += [self.led_ready.eq(usable & ~core.busy), self.led_error.eq(error | ~usable)]

        # Received bytes are acted on a cycle late (``rx_ev``; the payload holds until the
        # next start bit), against compares registered meanwhile.
        rx_ev, rx_match = Signal(), Signal()
        is_sync0, is_sync1 = Signal(), Signal()
        is_cmd = {c: Signal(name=f"is_{n.lower()}") for c, n in wire.COMMAND_NAMES.items()}
        m.d.sync += [rx_ev.eq(rx.o.valid), rx_match.eq(rx.o.p == rom_rd.data),
                     is_sync0.eq(rx.o.p == wire.SYNC[0]), is_sync1.eq(rx.o.p == wire.SYNC[1])]
        m.d.sync += [is_cmd[c].eq(rx.o.p == c) for c in is_cmd]

        fsm = OneHot(m, ["BOOT", "BOOT_HEADER", "BOOT_DATA", "BOOT_CHECK",
                         "HUNT", "SYNC", "COMMAND", "LENGTH", "HEAD_CRC", "HEAD_CHECK", "INPUT", "WEIGHTS",
                         "PAYLOAD_CRC", "VERIFY", "START", "RUN",
                         "SEND_HEAD", "SEND_INFO", "SEND_STATE", "SEND_OUTPUT", "SEND_CYCLES",
                         "SEND_CRC", "DISCARD"], init="BOOT")
        # Bytes that arrive while the device is busy are lost: it then discards until the
        # line is quiet and answers BUSY, so the rest of such a frame is never hunted
        # through for a sync pattern.
        overrun = Signal()
        busy_states = ["BOOT", "BOOT_HEADER", "BOOT_DATA", "BOOT_CHECK", "START", "RUN", "SEND_HEAD", "SEND_INFO",
                       "SEND_STATE", "SEND_OUTPUT", "SEND_CYCLES", "SEND_CRC"]
        with m.If(rx.o.valid & Cat(*(fsm[n] for n in busy_states)).any()):
            m.d.sync += overrun.eq(1)

        # What the CRC takes: every byte received inside a frame after the sync, every flash
        # byte of the image, every byte sent after a reply's sync but its own CRC.  One
        # source per phase, chosen by state flip-flops, not by each state's own byte.
        rx_crc = Cat(*(fsm[n] for n in ("COMMAND", "LENGTH", "HEAD_CRC", "INPUT", "WEIGHTS", "PAYLOAD_CRC"))).any()
        tx_crc = (Cat(*(fsm[n] for n in ("SEND_INFO", "SEND_STATE", "SEND_OUTPUT", "SEND_CYCLES"))).any()
                  | (fsm["SEND_HEAD"] & (done[1] | done[2])))
        boot_data = fsm["BOOT_DATA"] if self.weight_bytes else Const(0)
        # A sent byte is fed a cycle after the UART took it, from the UART's frame register:
        # the CRC's input multiplexer sees registers only.
        tx_taken = Signal()
        m.d.sync += tx_taken.eq(tx_crc & tx.i.valid & tx.i.ready)
        m.d.sync += [crc_feed.eq((rx_ev & rx_crc) | (boot_data & flash.o.valid) | tx_taken),
                     crc_byte.eq(Mux(boot_data, flash.o.p, Mux(tx_taken, tx.sent, rx.o.p)))]

        crc_pending = tx_taken | crc_feed | crc.busy

        def idle():
            """Back to hunting for frames, unless bytes were lost meanwhile."""
            with m.If(overrun):
                m.d.sync += [overrun.eq(0), command.eq(0)]
                fail(wire.BUSY)
            with m.Else():
                fsm.goto("HUNT")

        # The reply's status: each call raises a flag for its constant, which a flip-flop of
        # its own holds until the reply has been sent, and the status is the OR of the held
        # constants (one is held at a time), so no priority chain runs through every state
        # that answers and no status register is loaded.  The payload length follows from the
        # status and the command: INFO's and INFER's when they succeed, else none.
        status_flags = {}
        reply_end = Signal()

        def flag(value):
            if value not in status_flags:
                status_flags[value] = Signal(name=f"set_status_{value:#04x}")
            m.d.comb += status_flags[value].eq(1)

        def answer(code):
            """Reply now with ``code`` (``done`` is clear)."""
            flag(code)
            fsm.goto("SEND_HEAD")

        def fail(code):
            """End a frame: discard until the line is quiet, then answer ``code``."""
            flag(code)
            m.d.sync += done_clr.eq(1)
            fsm.goto("DISCARD")

        def receiving():
            """Mid-frame: a framing error or a silent line ends the frame with an error; the
            caller's ``m.Elif`` then takes a received byte (never together with an error)."""
            with m.If(rx.error):
                fail(wire.FRAMING)
            with m.Elif(expired):
                fail(wire.TIMEOUT)
            return m.Elif(rx_ev)

        def count(n, then):
            """One more byte of a run of ``n`` (received, read or sent); the last moves on."""
            m.d.sync += done_inc.eq(1)
            with m.If(last_flags[n]):
                m.d.sync += done_clr.eq(1)
                fsm.goto(then)

        # The packer takes an image's resident bytes, the first ``resident_bytes`` (all but a
        # streaming program's).
        if self.streams:
            writing = Signal()

            def to_packer(valid):
                m.d.comb += packer.valid.eq(valid & writing)
                if self.resident_bytes:
                    with m.If(valid & last_flags[self.resident_bytes]):
                        m.d.sync += writing.eq(0)

            with m.If(packer.restart):
                m.d.sync += writing.eq(self.resident_bytes > 0)
        else:
            def to_packer(valid):
                m.d.comb += packer.valid.eq(valid)

        # ---- boot: the flash header must equal the bitstream's (magic, length, program id,
        # CRC), and the image's CRC-32 the header's.  A header that differs writes nothing.
        with fsm.state("BOOT"):
            m.d.comb += [flash.start.eq(1), flash.addr.eq(self.weights_offset)]
            m.d.sync += [idx.eq(HEADER_AT), done_clr.eq(1), mismatch.eq(0), crc_clear.eq(1),
                         weight_state.eq(wire.WEIGHTS_NONE)]
            m.d.comb += packer.restart.eq(1)
            fsm.goto("BOOT_HEADER")
        with fsm.state("BOOT_HEADER"):
            m.d.comb += flash.o.ready.eq(1)
            with m.If(flash.o.valid):
                m.d.sync += [idx.eq(idx + 1), done_inc.eq(1), mismatch.eq(mismatch | (flash.o.p != rom_rd.data))]
                with m.If(last_flags[wire.WEIGHTS_HEADER_BYTES]):
                    m.d.sync += done_clr.eq(1)
                    m.d.comb += flash.stop.eq(not self.weight_bytes)
                    fsm.goto("BOOT_DATA" if self.weight_bytes else "BOOT_CHECK")
        if self.weight_bytes:
            with fsm.state("BOOT_DATA"):
                if self.streams:
                    m.d.comb += [flash.o.ready.eq(1), packer.data.eq(flash.o.p), packer.write.eq(~mismatch)]
                    to_packer(flash.o.valid)
                else:
                    m.d.comb += [flash.o.ready.eq(1), packer.valid.eq(flash.o.valid), packer.data.eq(flash.o.p),
                                 packer.write.eq(~mismatch)]
                with m.If(flash.o.valid):
                    m.d.comb += flash.stop.eq(last_flags[self.weight_bytes])
                    count(self.weight_bytes, "BOOT_CHECK")
        with fsm.state("BOOT_CHECK"):
            with m.If(~crc_pending & ~flash.busy):
                crc_ok = crc.expect_ok
                good = ~mismatch & crc_ok
                m.d.sync += [weight_state.eq(Mux(good, wire.WEIGHTS_FLASH, wire.WEIGHTS_NONE)),
                             boot_result.eq(Mux(mismatch, wire.BOOT_BAD_HEADER,
                                                Mux(crc_ok, wire.BOOT_OK, wire.BOOT_BAD_CRC))),
                             reloading.eq(0), error.eq(~good)]
                with m.If(reloading & good):
                    answer(wire.OK)
                with m.Elif(reloading):
                    answer(wire.BAD_FLASH)
                with m.Else():
                    idle()

        # ---- frames: bytes outside a frame are ignored until the sync pattern.
        with fsm.state("HUNT"):
            with m.If(rx_ev & is_sync0):
                fsm.goto("SYNC")
        with fsm.state("SYNC"):
            with m.If(rx.error | expired):
                fsm.goto("HUNT")
            with m.Elif(rx_ev):
                with m.If(is_sync1):
                    m.d.sync += [crc_clear.eq(1), command.eq(0)]
                    fsm.goto("COMMAND")
                with m.Elif(~is_sync0):
                    fsm.goto("HUNT")
        with fsm.state("COMMAND"):
            with receiving():
                m.d.sync += [command.eq(rx.o.p), done_clr.eq(1), mismatch.eq(0), idx.eq(LENGTH_AT[wire.CMD_INFO])]
                m.d.sync += [kind[c].eq(is_cmd[c]) for c in kind]
                for c in (wire.CMD_INFER, wire.CMD_WEIGHTS):
                    with m.If(is_cmd[c]):
                        m.d.sync += idx.eq(LENGTH_AT[c])
                with m.If(Cat(*is_cmd.values()).any()):
                    fsm.goto("LENGTH")
                with m.Else():
                    fail(wire.BAD_COMMAND)
        with fsm.state("LENGTH"):
            with receiving():
                m.d.sync += [idx.eq(idx + 1), mismatch.eq(mismatch | ~rx_match)]
                count(4, "HEAD_CRC")
        with fsm.state("HEAD_CRC"):
            with receiving():
                count(4, "HEAD_CHECK")
        # Nothing of the payload is acted on before the header has checked out.  The CRC
        # takes 11 cycles here, the next byte at least 40.
        with fsm.state("HEAD_CHECK"):
            with m.If(~crc_pending):
                m.d.sync += [crc_clear.eq(1), walk_restart.eq(1), walk_output.eq(0)]
                m.d.comb += packer.restart.eq(1)
                with m.If(~crc.residue_ok):
                    fail(wire.BAD_CRC)
                with m.Elif(mismatch):
                    fail(wire.BAD_LENGTH)
                with m.Elif(kind[wire.CMD_INFER]):
                    fsm.goto("INPUT")
                with m.Elif(kind[wire.CMD_WEIGHTS]):
                    # No double buffer: the old weights are gone from here on.
                    m.d.sync += weight_state.eq(wire.WEIGHTS_PARTIAL)
                    fsm.goto("WEIGHTS" if self.weight_bytes else "PAYLOAD_CRC")
                with m.Else():
                    fsm.goto("PAYLOAD_CRC")
        with fsm.state("INPUT"):
            with receiving():
                m.d.sync += [host_we.eq(1), walk_next.eq(1)]
                count(self.input_bytes, "PAYLOAD_CRC")
        if self.weight_bytes:
            with fsm.state("WEIGHTS"):
                m.d.comb += [packer.data.eq(rx.o.p), packer.write.eq(1)]
                with receiving():
                    to_packer(1)
                    count(self.weight_bytes, "PAYLOAD_CRC")
        # The payload's CRC before its own CRC bytes go in: a WEIGHTS image must be the one
        # the bitstream was built for, not merely intact (the CRC takes 11 cycles, the first
        # CRC byte comes 40 or more after the last payload byte).
        image_ok = Signal()
        with fsm.state("PAYLOAD_CRC"):
            with m.If(rx_ev & (done == 0)):
                m.d.sync += image_ok.eq(crc.expect_ok)
            with receiving():
                count(4, "VERIFY")
        with fsm.state("VERIFY"):
            with m.If(~crc_pending):
                with m.If(~crc.residue_ok):
                    answer(wire.BAD_CRC)
                with m.Elif(kind[wire.CMD_INFO]):
                    answer(wire.OK)
                with m.Elif(kind[wire.CMD_INFER]):
                    with m.If(usable):
                        fsm.goto("START")
                    with m.Else():
                        answer(wire.NO_WEIGHTS)
                with m.Elif(kind[wire.CMD_WEIGHTS] & image_ok):
                    m.d.sync += weight_state.eq(wire.WEIGHTS_UART)
                    answer(wire.OK)
                with m.Elif(kind[wire.CMD_WEIGHTS]):
                    answer(wire.BAD_IMAGE)
                with m.Else():
                    m.d.sync += reloading.eq(1)
                    fsm.goto("BOOT")

        with fsm.state("START"):
            m.d.comb += core.start.eq(1)
            fsm.goto("RUN")
        with fsm.state("RUN"):
            with m.If(core.done):
                m.d.sync += [walk_restart.eq(1), walk_output.eq(1), settle.eq(3)]
                if self.streams:
                    # Weights that streamed from flash and failed their CRC give no output.
                    with m.If(core.flash_ok):
                        answer(wire.OK)
                    with m.Else():
                        answer(wire.BAD_FLASH)
                else:
                    answer(wire.OK)

        # ---- replies: sync, command, status, length, payload, CRC of all but the sync.
        # Each sending state offers a byte; the UART's input is their one-hot AND-OR (two
        # LUT levels), not a priority chain through every state.
        offers = []

        def send(valid, byte):
            offers.append((fsm.active, valid, byte))

        info_reply = status_ok & kind[wire.CMD_INFO]
        infer_reply = status_ok & kind[wire.CMD_INFER]
        reply_len = Mux(info_reply, wire.INFO_BYTES, Mux(infer_reply, self.output_bytes + wire.INFER_TRAILER_BYTES, 0))
        head = Signal(8)
        with m.Switch(done[:3]):
            for k, byte in enumerate([wire.SYNC[0], wire.SYNC[1], command, status]):
                with m.Case(k):
                    m.d.comb += head.eq(byte)
            for k in range(4):
                with m.Case(4 + k):
                    m.d.comb += head.eq(Cat(reply_len, Const(0, 32)).word_select(k, 8))
        with fsm.state("SEND_HEAD"):
            send(1, head)
            m.d.sync += idx.eq(0)
            with m.If(tx.i.ready):
                m.d.sync += done_inc.eq(1)
                with m.If(done[:3] == 1):
                    m.d.sync += crc_clear.eq(1)
                with m.If(last_flags[REPLY_HEAD]):
                    m.d.sync += done_clr.eq(1)
                    with m.If(info_reply):
                        fsm.goto("SEND_INFO")
                    with m.Elif(infer_reply):
                        fsm.goto("SEND_OUTPUT")
                    with m.Else():
                        fsm.goto("SEND_CRC")
        with fsm.state("SEND_INFO"):
            send(rom_fresh, rom_rd.data)
            with m.If(rom_fresh & tx.i.ready):
                m.d.sync += [idx.eq(idx + 1), rom_fresh.eq(0)]
                with m.If(idx == INFO_CONST - 1):
                    fsm.goto("SEND_STATE")
        with fsm.state("SEND_STATE"):
            byte = Mux(done[0], boot_result, weight_state)
            send(1, byte)
            with m.If(tx.i.ready):
                count(2, "SEND_CRC")
        with fsm.state("SEND_OUTPUT"):
            send(settle == 0, value)
            with m.If((settle == 0) & tx.i.ready):
                m.d.sync += [walk_next.eq(1), settle.eq(3)]
                count(self.output_bytes, "SEND_CYCLES")
        with fsm.state("SEND_CYCLES"):
            byte = core.cycles.word_select(done[:2], 8)
            send(1, byte)
            with m.If(tx.i.ready):
                count(4, "SEND_CRC")
        with fsm.state("SEND_CRC"):
            send(~crc_pending, ~crc.value.word_select(done[:2], 8))
            with m.If(~crc_pending & tx.i.ready):
                m.d.sync += done_inc.eq(1)
                with m.If(last_flags[4]):
                    m.d.sync += [done_clr.eq(1), error.eq(~status_ok)]
                    m.d.comb += reply_end.eq(1)
                    idle()

        with fsm.state("DISCARD"):
            with m.If(expired):
                fsm.goto("SEND_HEAD")

        m.d.comb += [tx.i.valid.eq(Cat(*(st & valid for st, valid, _ in offers)).any()),
                     tx.i.p.eq(functools.reduce(operator.or_, (Mux(st, byte, 0) for st, _, byte in offers)))]
        # A reply's end clears the held flag in the cycle that may raise the next (BUSY).
        held = {v: Signal(name=f"{f.name}_r") for v, f in status_flags.items()}
        m.d.sync += [held[v].eq(f | (held[v] & ~reply_end)) for v, f in status_flags.items()]
        m.d.comb += [status.eq(functools.reduce(operator.or_, (Mux(h, v, 0) for v, h in held.items()))),
                     status_ok.eq(held[wire.OK])]
        fsm.finish()
        return m
