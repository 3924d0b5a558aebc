"""The experiment configs shipped with the package, named by a short name (``demo``, ``ssmpe``).

``mpe-ssl fit --config demo`` reads ``mpe_ssl/configs/demo.yaml`` from wherever the package
is installed; a path to a file of the user's own works the same.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def names() -> list[str]:
    """Short names of the shipped configs."""
    return sorted(path.stem for path in FOLDER.glob("*.yaml"))


def resolve(config: str) -> str:
    """The path of the shipped config that ``config`` names (``demo`` or ``demo.yaml``), unless
    a file of that name exists here; else ``config`` unchanged (a path, a YAML string, or a
    wrong name that the CLI then reports)."""
    if "\n" in config or Path(config).name != config:
        return config  # a YAML string or a path: not a short name
    shipped = FOLDER / (config if config.endswith(".yaml") else f"{config}.yaml")
    return str(shipped) if not Path(config).is_file() and shipped.is_file() else config
