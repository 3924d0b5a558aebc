"""The ``mpe-ssl`` command.

- ``mpe-ssl fit|validate|test|predict --config NAME_OR_PATH`` (LightningCLI: any
  :class:`~mpe_ssl.systems.System` and any LightningDataModule, chosen by ``class_path``; a
  short name such as ``demo`` names a config shipped in ``mpe_ssl/configs/``);
- ``mpe-ssl transcribe AUDIO... --ckpt PATH --out DIR``;
- ``mpe-ssl data render [options]``.

Errors caused by the user's input print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings

from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningCLI

from mpe_ssl import configs
from mpe_ssl.errors import MpeSslError
from mpe_ssl.systems import System

USAGE = f"""usage: mpe-ssl {{fit,validate,test,predict}} --config CONFIG [options]
       mpe-ssl transcribe AUDIO... --ckpt PATH --out DIR
       mpe-ssl data render [--root DIR] [--seed N] [--train N --val N --test N] [--soundfont PATH]

CONFIG is a YAML file or the name of a shipped config ({', '.join(configs.names())}).
predict writes transcriptions through the config's TranscriptionWriter callback (the demo
config has one: runs/demo/predictions/); without one it computes and discards them."""


def resolve_configs(argv: list[str]) -> list[str]:
    """``argv`` with each ``--config NAME`` of a shipped config replaced by its path."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out):
            out[i + 1] = configs.resolve(out[i + 1])
        elif arg.startswith("--config="):
            out[i] = "--config=" + configs.resolve(arg.split("=", 1)[1])
    return out


def lightning_cli(argv: list[str], run: bool = True) -> LightningCLI:
    """Build (and by default run) the LightningCLI over every system and data module."""
    argv = resolve_configs(argv)
    with warnings.catch_warnings():
        # it warns whenever sys.argv has arguments too (the demo, pytest), which is intended here
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return _lightning_cli(argv, run)


def _lightning_cli(argv: list[str], run: bool) -> LightningCLI:
    return LightningCLI(
        System,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=argv,
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"exit_on_error": False},
        auto_configure_optimizers=False,
    )


_NOISE = re.compile(
    r"Does not validate against|Subtypes:|^Errors:|Expected a <class 'NoneType'>|Given value|Expected a path but"
)


def config_error_line(error: argparse.ArgumentError) -> str:
    """Condense jsonargparse's nested report into one line that keeps the key and the reason."""
    lines = [line.strip().lstrip("- ").strip() for line in str(error).splitlines()]
    kept = [line for line in lines if line and not _NOISE.search(line)]
    return "config: " + " ".join(kept)


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "transcribe":
        from mpe_ssl.transcribe import main as transcribe_main

        return transcribe_main(argv[1:])
    if argv[0] == "data":
        if argv[1:2] != ["render"]:
            raise MpeSslError(f"unknown data command {argv[1:2] or ''}; expected 'mpe-ssl data render'")
        from mpe_ssl.data.render import main as render_main

        return render_main(argv[2:])
    lightning_cli(argv)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except MpeSslError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except argparse.ArgumentError as error:
        print(f"error: {config_error_line(error)} (see 'mpe-ssl {argv[0]} --help')", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
