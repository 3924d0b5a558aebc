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


def write_outputs_to(config: dict, out: str | Path) -> dict:
    """Point every output of a config (a dict read from its YAML) at the folder ``out``, in place.

    The trainer's ``default_root_dir``, every logger's ``save_dir``, every callback's
    ``dirpath`` (checkpoints) and ``output_dir`` (predictions, under ``out/predictions``):
    a run of an edited config then writes nothing beside another run's files. Returns ``config``.
    """
    out = str(out)
    trainer = config.setdefault("trainer", {})
    trainer["default_root_dir"] = out
    for logger in trainer.get("logger") or []:
        logger.setdefault("init_args", {})["save_dir"] = out
    for callback in trainer.get("callbacks") or []:
        init_args = callback.get("init_args", {})
        if "dirpath" in init_args:
            init_args["dirpath"] = out
        if "output_dir" in init_args:
            init_args["output_dir"] = f"{out}/predictions"
    return config
