"""The core's port groups, each a signature defined once and seen from the side that drives
the address: a unit reading or writing a memory takes it as ``Out``, the memory (and the
core, for the host) as ``In``.  A port with one user and nothing between is joined by
``wiring.connect`` (the feeder's to the weight memory); the accelerator multiplexes the
shared ones (the banks, the parameter memory) and gates the host's member by member.

Read ports answer ``addr`` the cycle after ``en`` and hold their data while ``en`` is low,
which is how a stalled pipeline keeps its operand.
"""

from amaranth.hdl import signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.config import SPRAM_BANK_BYTES

from .layer_desc import desc_layout


def weight_layout(config):
    """One weight word: the ``cols`` int8 weights entering the array in one cycle."""
    return data.ArrayLayout(signed(8), config.cols)


def param_layout():
    """One output channel's requantisation parameters (the rest is per layer, in the descriptor)."""
    return data.StructLayout({"bias": signed(32), "multiplier": 31, "shift": signed(6)})


def bank_read_signature(config):
    """One activation bank's read port (its bytes are int8 activations)."""
    return wiring.Signature({"addr": Out(config.bank_addr_bits), "en": Out(1), "data": In(signed(8))})


def bank_write_signature(config, banked=False):
    """A write port of the activation banks; ``banked``: the writer also names the bank (the
    drain writes all four through one port)."""
    members = {"addr": Out(config.bank_addr_bits), "data": Out(signed(8)), "en": Out(1)}
    if banked:
        members["bank"] = Out(range(config.banks))
    return wiring.Signature(members)


def word_write_signature(config):
    """A write of one SPRAM bank's 16-bit word: ``mask`` selects its bytes (bit 0 the byte at
    the even address)."""
    return wiring.Signature({"addr": Out(config.bank_addr_bits - 1), "data": Out(16), "mask": Out(2), "en": Out(1)})


def host_signature(config):
    """The host's port to the activation banks (used while the core is idle): ``addr`` is
    the bank above the offset (:func:`hdl.core.accelerator.host_address`), ``rdata`` answers a
    cycle later."""
    return wiring.Signature({"addr": Out(config.host_addr_bits), "wdata": Out(8), "we": Out(1), "rdata": In(8)})


def weight_read_signature(config):
    """The feeder's port to the weight memory."""
    return wiring.Signature({"addr": Out(config.weight_addr_bits), "en": Out(1), "data": In(weight_layout(config))})


def weight_load_signature(config):
    """The weight memory's fill port (the board loads it from flash or UART)."""
    return wiring.Signature({"addr": Out(config.weight_addr_bits), "data": Out(weight_layout(config)),
                             "we": Out(1)})


def weight_fetch_signature(config):
    """The weight cache's port to the weights in the shared SPRAMs: a read is taken in a cycle
    with ``en`` and ``ok`` (no write has the SPRAMs), and its word arrives the next cycle with
    ``valid``.  ``word`` is the SPRAM word that holds weight word ``addr`` (the program's
    weight base plus ``addr >> 1``), kept by the cache beside the address so that no adder
    sits before the SPRAMs' address multiplexers."""
    return wiring.Signature({"addr": Out(config.weight_addr_bits), "word": Out(range(SPRAM_BANK_BYTES // 2)),
                             "en": Out(1), "ok": In(1), "valid": In(1), "data": In(weight_layout(config))})


def weight_fill_signature(config):
    """The feeder's request to the weight cache: ``start`` copies ``count`` words from
    ``base`` on; ``done`` pulses once the last is in."""
    return wiring.Signature({"start": Out(1), "base": Out(config.weight_addr_bits),
                             "count": Out(config.taps_bits), "done": In(1)})


def param_read_signature(config):
    """A read port of the per-channel parameter memory."""
    return wiring.Signature({"addr": Out(config.param_addr_bits), "en": Out(1), "data": In(param_layout())})


def engine_members(config):
    """Ports shared by the units that run descriptors over the activation banks (feeder,
    pool engine, add engine): the descriptor, start/done, a read port per bank, and ``stall``:
    high in a cycle whose bank reads would not be done (a write has the SPRAMs), so the unit
    reads nothing then and moves no read data on."""
    return {
        "desc": In(desc_layout(config)),
        "start": In(1),
        "done": Out(1),
        "stall": In(1),
        "banks": Out(bank_read_signature(config)).array(config.banks),
    }
