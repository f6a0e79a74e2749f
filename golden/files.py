"""File writing shared by every command line: outputs appear whole or not at all."""

import io
import os
import tempfile
from pathlib import Path

import numpy as np


def write_atomic(path, data, mode=0o644):
    """Write bytes (or text) to ``path`` through a temp file beside it, renamed only once complete."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_npy(path, array):
    buf = io.BytesIO()
    np.save(buf, array)
    write_atomic(path, buf.getvalue())


def one_line(e):
    """An exception's message on one line, for errors shown to users."""
    return " ".join(str(e).split()) or type(e).__name__
