"""atomic_write: files appear whole, with the mode the umask gives (not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mpe_ssl.atomic import atomic_write


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_write_gives_the_mode_of_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "new.txt", lambda tmp: Path(tmp).write_text("new"))
        (tmp_path / "old.txt").write_text("old")
        os.chmod(tmp_path / "old.txt", 0o600)
        atomic_write(tmp_path / "old.txt", lambda tmp: Path(tmp).write_text("replaced"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "old.txt").stat().st_mode) == mode
    assert (tmp_path / "old.txt").read_text() == "replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.txt", "old.txt"]  # no temporary left


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    def fail(tmp):
        Path(tmp).write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.txt", fail)
    assert not any(tmp_path.iterdir())
