"""sim/netlist.py without the tools: the pins the gate-level check maps between the board's
top level and the harness.  (The check itself runs in the opt-in build test,
tests/test_build.py::test_icebreaker_build, on a real netlist and on a corrupted one.)"""

import pytest

from boards import BOARDS
from sim.board import BOARD_PORTS, TOP
from sim.netlist import _pins, _wrapper, netlist_design
from sim.verilator import _check_ports, parse_ports


def test_icebreaker_pins_and_their_polarity():
    pins = {soc: (port, d, inv) for soc, port, d, inv in _pins(BOARDS["icebreaker"])}
    assert pins == {
        "clk": ("clk12_0__io", "input", False),
        "uart_rx": ("uart_0__rx__io", "input", False), "uart_tx": ("uart_0__tx__io", "output", False),
        # The flash select and both LEDs are active low on the board, active high on the Soc.
        "flash_cs": ("spi_flash_1x_0__cs__io", "output", True),
        "flash_copi": ("spi_flash_1x_0__copi__io", "output", False),
        "flash_cipo": ("spi_flash_1x_0__cipo__io", "input", False),
        "flash_sck": ("spi_flash_1x_0__clk__io", "output", False),
        "led_ready": ("led_g_0__io", "output", True), "led_error": ("led_r_0__io", "output", True),
    }


def test_wrapper_has_the_harness_ports_and_inverts_the_active_low_pins():
    text = _wrapper(_pins(BOARDS["icebreaker"]))
    _check_ports(parse_ports(text, TOP), TOP, BOARD_PORTS)
    assert "assign flash_cs = ~pad_flash_cs;" in text and "assign uart_tx = pad_uart_tx;" in text
    assert ".clk12_0__io(clk)" in text


def test_only_ice40_and_only_a_synthesised_directory(tmp_path):
    from sim.netlist import NetlistError
    with pytest.raises(NetlistError, match="ulx3s-85f is ecp5"):
        netlist_design(tmp_path, BOARDS["ulx3s-85f"], None, 1e6, {})
    with pytest.raises(NetlistError, match="no synthesised netlist"):
        netlist_design(tmp_path, BOARDS["icebreaker"], None, 1e6, {})
