"""File writing shared by every command line: outputs appear whole or not at all."""

import argparse
import io
import os
import sys
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


def check_output(path, option):
    """Refuse, before any work, an output path that cannot be written: a directory, a parent
    that does not exist or is not a directory, or one not writable.  The message is one line."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a directory; give a file name")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{option} {path}: {parent} is not a directory")
    if not parent.is_dir():
        raise OutputError(f"{option} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(f"{option} {path}: not writable")


def check_output_dir(path, option):
    """Refuse, before any work and without creating anything, an output directory that
    cannot be made or written: under a file, or under a directory not writable."""
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{option} {path}: {probe} is not a directory")
    if not os.access(probe, os.W_OK):
        raise OutputError(f"{option} {path}: {probe} is not writable")


class OutputError(ValueError):
    """An output path that cannot be written; one line."""


def save_npy(path, array):
    buf = io.BytesIO()
    np.save(buf, array)
    write_atomic(path, buf.getvalue())


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (``prog: error: ...``, exit 2), like every
    other error of the command lines, instead of the usage text and the message."""

    def error(self, message):
        print(f"{self.prog}: error: {' '.join(message.split())}", file=sys.stderr)
        raise SystemExit(2)


def one_line(e):
    """An exception's message on one line, for errors shown to users."""
    return " ".join(str(e).split()) or type(e).__name__
