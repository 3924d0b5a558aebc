"""Writing outputs so that an interruption never leaves half of one behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    The rename is atomic on POSIX, so readers see the old file or the whole new one.
    """
    path = Path(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def publish_directory(tmp: Path, final: Path, done: Callable[[Path], bool]) -> None:
    """Rename a completely written directory ``tmp`` to ``final``; ``tmp`` is gone afterwards.

    If another process published ``final`` first (``done(final)``), its copy is kept.
    """
    try:
        os.replace(tmp, final)
    except OSError:
        if not done(final):
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
