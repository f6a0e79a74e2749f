"""PLL settings: within the devices' documented ranges, never above the request, and the
figures icepll gives for the usual iCEBreaker clocks."""

import pytest

from hdl.board.pll import PllError, ecp5_pll, ice40_pll


@pytest.mark.parametrize("req_mhz, got_mhz, divf, divq", [(48, 48.0, 63, 4), (40, 39.75, 52, 4), (30, 30.0, 79, 5)])
def test_ice40_known_settings(req_mhz, got_mhz, divf, divq):
    s = ice40_pll(12e6, req_mhz * 1e6)
    assert s.f_out_mhz == pytest.approx(got_mhz)
    assert (s.params["DIVR"], s.params["DIVF"], s.params["DIVQ"], s.params["FILTER_RANGE"]) == (0, divf, divq, 1)


@pytest.mark.parametrize("req_mhz", [16.5, 22, 33.3, 37.7, 45, 60, 100])
def test_ice40_ranges(req_mhz):
    s = ice40_pll(12e6, req_mhz * 1e6)
    p = s.params
    f_pfd = 12e6 / (p["DIVR"] + 1)
    f_vco = f_pfd * (p["DIVF"] + 1)
    assert 10e6 <= f_pfd <= 133e6 and 533e6 <= f_vco <= 1066e6
    assert s.f_out_hz == f_vco / 2 ** p["DIVQ"] <= req_mhz * 1e6
    assert s.f_out_hz > 0.97 * req_mhz * 1e6


def test_ecp5_exact_and_ranges():
    s = ecp5_pll(25e6, 50e6)
    p = s.params
    assert s.f_out_mhz == 50 and 400e6 <= s.f_out_hz * p["CLKOP_DIV"] <= 800e6


def test_unreachable_clock_is_one_line():
    with pytest.raises(PllError, match="no setting"):
        ice40_pll(12e6, 5e6)
