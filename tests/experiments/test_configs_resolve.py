"""Every config shipped in experiments/ resolves: classes and keys exist, values type-check."""

from __future__ import annotations

from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@pytest.mark.parametrize("config", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda path: path.name)
def test_experiment_config_resolves(config, capsys):
    from mpe_ssl.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None), capsys.readouterr().err
    assert "class_path" in capsys.readouterr().out
