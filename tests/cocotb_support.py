"""What the cocotb test modules share: emit an Amaranth component as Verilog and run some of
their ``@cocotb.test`` coroutines on it under Icarus.  Not named ``test_*`` so pytest does not
collect it."""

import shutil

import pytest

from sim.tools import amaranth_verilog

__all__ = ["verilog_text", "run_icarus"]

#: ``component`` as Verilog module ``name``, with a yosys found even when only YoWASP's is.
verilog_text = amaranth_verilog


def run_icarus(component, name, test_module, testcase, build_dir, *, sources=(), defines=None,
               extra_env=None):
    """Write ``component`` to ``build_dir/<name>.v`` as Verilog module ``name``, build it with
    the extra Verilog ``sources`` and preprocessor ``defines`` under Icarus, and run the cocotb
    ``testcase`` (a name or a list of names) of ``test_module`` on it with ``extra_env`` set.
    Skips the test when Icarus is not installed."""
    if shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog (iverilog) is not installed; `make setup` installs it")
    from cocotb_tools.runner import get_runner

    source = build_dir / f"{name}.v"
    source.write_text(verilog_text(component, name))
    runner = get_runner("icarus")
    runner.build(sources=[source, *sources], defines=defines or {}, hdl_toplevel=name,
                 build_dir=build_dir, timescale=("1ns", "1ps"), always=True)
    runner.test(test_module=test_module, hdl_toplevel=name, testcase=testcase, build_dir=build_dir,
                extra_env=extra_env or {})
