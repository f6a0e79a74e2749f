"""Board profiles: the device's resources, its clock and pins, and the accelerator
configuration sized from them, so that ``python -m hdl.build --board NAME`` needs nothing
else.

A profile never holds a guessed figure: resources are the device's datasheet counts as
nextpnr names them (the build compares its utilisation report against them).
"""

from dataclasses import dataclass

from compiler.program import CompileError, compile_model
from golden.config import AcceleratorConfig


class BoardError(ValueError):
    """An unknown board or a request the board cannot honour; the message is one line."""


@dataclass(frozen=True)
class Board:
    name: str
    title: str
    family: str                    #: "ice40" or "ecp5": picks the toolchain and primitives
    platform: str                  #: "module:Class" of the amaranth-boards platform
    osc_hz: int                    #: the board oscillator the PLL starts from
    osc: str                       #: its resource name
    default_clock_mhz: float
    device: str                    #: the part, short: what reports and bench figures name it
    nextpnr_device: tuple          #: nextpnr's arguments that pick the device, package (and speed)
    resources: dict                #: nextpnr BEL name -> count on the device
    config: AcceleratorConfig      #: the array and memories sized for this device
    weights_offset: int            #: flash byte offset of the weight header (after the bitstream)
    flash_bytes: int
    uart: str = "uart"
    flash: str = "spi_flash_1x"
    #: The flash on four data lines, for designs whose weights stream ("" where the board's
    #: profile does not take them).
    flash_quad: str = ""
    leds: tuple = ("led_g", "led_r")   #: ready, error
    notes: str = ""

    def make_platform(self):
        module, cls = self.platform.split(":")
        return getattr(__import__(module, fromlist=[cls]), cls)()


#: One requantiser of 8-bit digits (0.2 elements a cycle) rather than two of 4-bit digits
#: (0.22): nearly the same rate for about 150 logic cells less, which the UP5K needs for
#: the UART and flash logic next to the core.
#: Maps that outgrow the block RAM go to the SPRAMs next to the weights (``act_memory``), and
#: the accumulators are as wide as the model's sums need (``narrow_acc``).  Weights beyond
#: the SPRAMs stream from the flash on its four lines (``weight_stream``).
ICEBREAKER = AcceleratorConfig(target="ice40", requant_lanes=1, requant_digit_bits=8, act_memory="auto",
                               narrow_acc=True, weight_stream="auto")

ICEBREAKER_BOARD = Board(
    name="icebreaker",
    title="1BitSquared iCEBreaker (Lattice iCE40 UP5K-SG48)",
    family="ice40",
    platform="amaranth_boards.icebreaker:ICEBreakerPlatform",
    osc_hz=12_000_000, osc="clk12",
    default_clock_mhz=40.0,
    device="up5k-sg48", nextpnr_device=("--up5k", "--package", "sg48"),
    resources={"ICESTORM_LC": 5280, "ICESTORM_DSP": 8, "ICESTORM_RAM": 30, "ICESTORM_SPRAM": 4},
    # 8 SB_MAC16 in dual 8x8 mode = 16 lanes; the four SPRAMs hold the weights.
    config=ICEBREAKER,
    weights_offset=0x100000, flash_bytes=16 << 20, flash_quad="spi_flash_4x",
    notes="UART on the FTDI's second channel (/dev/ttyUSB1); program with `iceprog flash.bin`",
)

#: Widest array the drain keeps fed: it takes one result a cycle, so a pass must last at
#: least rows * cols cycles, and MNIST-sized layers (9 to 576 taps) stop gaining beyond 64.
MAX_LANES = 64


def sized_config(multipliers, bram_bytes, rows=4):
    """The generic (inferred-multiplier) configuration for a device with ``multipliers``
    8x8-capable multipliers and ``bram_bytes`` of block RAM: as many columns as the
    multipliers allow (a power of two, at most :data:`MAX_LANES` lanes); the weights may
    take three quarters of the block RAM (whole 16 KiB), the four activation banks 16 KiB
    each (ResNet-8 and VWW need 13-14 KiB).  These are capacities: the generator sizes the
    block-RAM memories from the program, and the accumulators and requantisers from its sums,
    so a small model spends little.  Two requantisers of 8-bit digits take an element every
    1.5 cycles at KWS's 21 bits, so its depthwise passes (9 taps, 4 elements) wait for the
    array, not for them."""
    cols = 1
    while rows * cols * 2 <= min(multipliers, MAX_LANES):
        cols *= 2
    weight_bytes = bram_bytes * 3 // 4 // 16384 * 16384
    return AcceleratorConfig(rows=rows, cols=cols, requant_lanes=2, requant_digit_bits=8,
                             weight_mem_bytes=weight_bytes, act_bank_bytes=16384, param_depth=4096,
                             narrow_acc=True)


#: The ULX3S's LFE5U-85F: 156 18x18 multipliers and 208 block RAMs of 18 kbit (2 KiB of
#: data each): the array grows to 4 x 16 lanes and the weights go to block RAM.
ULX3S_85F_BOARD = Board(
    name="ulx3s-85f",
    title="Radiona ULX3S (Lattice ECP5 LFE5U-85F-6BG381C)",
    family="ecp5",
    platform="amaranth_boards.ulx3s:ULX3S_85F_Platform",
    osc_hz=25_000_000, osc="clk25",
    default_clock_mhz=50.0,
    device="lfe5u-85f-6bg381c", nextpnr_device=("--85k", "--package", "CABGA381", "--speed", "6"),
    resources={"TRELLIS_COMB": 83640, "MULT18X18D": 156, "DP16KD": 208},
    config=sized_config(multipliers=156, bram_bytes=208 * 2048),
    weights_offset=0x400000, flash_bytes=32 << 20,
    flash="spi_flash", leds=("led", "led"),
    notes="UART on the USB port (/dev/ttyUSB0); program with `openFPGALoader -f flash.bin`",
)

BOARDS = {b.name: b for b in (ICEBREAKER_BOARD, ULX3S_85F_BOARD)}


def get_board(name):
    try:
        return BOARDS[name]
    except KeyError:
        raise BoardError(f"unknown board {name!r}; known: {', '.join(BOARDS)}") from None


def compile_for(model, config):
    """``compile_model``; a model the configuration cannot take fails in one line that also
    names the board profiles that would take it."""
    try:
        return compile_model(model, config)
    except CompileError as e:
        takers = []
        for b in BOARDS.values():
            other = b.config.with_(target=config.target)
            if other == config:
                continue
            try:
                compile_model(model, other)
                takers.append(b.name)
            except CompileError:
                pass
        hint = (f"; the {' and the '.join(takers)} takes it (--board {takers[0]})" if takers
                else "; no board profile takes it")
        raise CompileError(f"{e}{hint}") from None
