"""Writing outputs so that an interruption never leaves half of one behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def _read_umask_once() -> int:
    # os.umask can only be read by setting it: done once, at import (single-threaded then);
    # setting it later could give a file created meanwhile by another thread mode 0666.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_IMPORT_UMASK = _read_umask_once()


def current_umask() -> int:
    """The process' umask, read without changing it (Linux: /proc/self/status).

    Elsewhere, the umask at import of this module.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _IMPORT_UMASK


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    The rename is atomic on POSIX, so readers see the old file or the whole new one. The
    file gets the mode an ordinary ``open()`` would give it (``0o666`` less the umask), not
    the ``0o600`` of :func:`tempfile.mkstemp`, so shared caches and outputs stay readable.
    """
    path = Path(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def publish_directory(tmp: Path, final: Path, done: Callable[[Path], bool]) -> None:
    """Rename a completely written directory ``tmp`` to ``final``; ``tmp`` is gone afterwards.

    If another process published ``final`` first (``done(final)``), its copy is kept.
    (``tmp`` is made by the caller with ``mkdir``, so its mode already follows the umask.)
    """
    try:
        os.replace(tmp, final)
    except OSError:
        if not done(final):
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
