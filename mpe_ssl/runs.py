"""Run folders: every fit writes its checkpoints to a new ``<dirpath>/version_N/``.

A config names a checkpoint folder once (``ModelCheckpoint(dirpath=runs/demo)``); each
``mpe-ssl fit`` then writes into the next free ``runs/demo/version_N/``, so a second fit
never replaces the checkpoints of an earlier one. A resumed fit (``--ckpt_path`` a
checkpoint inside ``runs/demo/version_K/``, or ``last``) continues in that folder. A
pointer such as ``runs/demo/best.ckpt`` is a symbolic link that only its owner moves (the
demo points it at its own best model).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint

_VERSION = re.compile(r"version_(\d+)$")


def versions(folder: str | os.PathLike) -> list[Path]:
    """The ``version_N`` subfolders of ``folder``, by N."""
    folder = Path(folder)
    found = [(int(m.group(1)), p) for p in folder.glob("version_*") if p.is_dir() and (m := _VERSION.match(p.name))]
    return [path for _, path in sorted(found)]


def next_version(folder: str | os.PathLike) -> Path:
    """``folder/version_N`` with N one past the highest existing (0 for none)."""
    existing = versions(folder)
    number = int(_VERSION.match(existing[-1].name).group(1)) + 1 if existing else 0
    return Path(folder) / f"version_{number}"


def latest_last(folder: str | os.PathLike, filename: str = "last.ckpt") -> Path | None:
    """The newest version folder's ``last.ckpt`` under ``folder`` (None if there is none)."""
    for version in reversed(versions(folder)):
        if (version / filename).is_file():
            return version / filename
    return None


def version_checkpoints(callbacks: Iterable, ckpt_path: str | None) -> str | None:
    """Point every ``ModelCheckpoint`` that has a ``dirpath`` at a version folder of it.

    A fresh fit gets the next free version (one per dirpath, shared by its callbacks); a
    resume from a checkpoint inside ``<dirpath>/version_K`` keeps writing there, and
    ``ckpt_path="last"`` becomes the newest version's ``last.ckpt``. Returns the
    ``ckpt_path`` to fit with.
    """
    chosen: dict[Path, Path] = {}
    for callback in callbacks:
        if not isinstance(callback, ModelCheckpoint) or callback.dirpath is None:
            continue
        root = Path(callback.dirpath)
        if root not in chosen:
            if ckpt_path == "last":
                found = latest_last(root)
                ckpt_path = str(found) if found is not None else None
            resumed = Path(os.path.realpath(ckpt_path)).parent if ckpt_path and ckpt_path != "last" else None
            inside = resumed is not None and resumed.parent == Path(os.path.realpath(root)) and _VERSION.match(resumed.name)
            chosen[root] = root / resumed.name if inside else next_version(root)
        callback.dirpath = str(chosen[root])
    return ckpt_path


def point(pointer: str | os.PathLike, target: str | os.PathLike) -> None:
    """Make ``pointer`` a symbolic link to ``target`` (relative), replacing it atomically.

    A regular file at ``pointer`` (a checkpoint from before run folders) is kept, renamed
    to ``<stem>.kept-<mtime>.<suffix>``, never replaced.
    """
    pointer = Path(pointer)
    if pointer.is_file() and not pointer.is_symlink():
        kept = pointer.with_name(f"{pointer.stem}.kept-{int(pointer.stat().st_mtime)}{pointer.suffix}")
        os.replace(pointer, kept)
    tmp = pointer.with_name(f".{pointer.name}.{uuid.uuid4().hex[:8]}")
    os.symlink(os.path.relpath(Path(target).resolve(), pointer.parent.resolve()), tmp)
    os.replace(tmp, pointer)
