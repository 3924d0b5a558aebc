"""A small rendered chorale dataset shared by the data tests (3 pieces, a few seconds)."""

from __future__ import annotations

import pytest

from mpe_ssl.data.render import RenderConfig, render_dataset

COUNTS = {"train": 1, "val": 1, "test": 1}


@pytest.fixture(scope="session")
def rendered_root(tmp_path_factory):
    """Root of a dataset of one train, one val and one test chorale (seed 0)."""
    root = tmp_path_factory.mktemp("chorales") / "seed0"
    return render_dataset(RenderConfig(seed=0, counts=dict(COUNTS)), root=root, progress=False)
