"""The ``mpe-ssl`` command.

- ``mpe-ssl fit|validate|test|predict --config NAME_OR_PATH`` (LightningCLI: any
  :class:`~mpe_ssl.systems.System` and any LightningDataModule, chosen by ``class_path``; a
  short name such as ``demo`` names a config shipped in ``mpe_ssl/configs/``);
- ``mpe-ssl transcribe AUDIO... [--ckpt PATH] [--out DIR]`` (the packaged model by default);
- ``mpe-ssl export-model CKPT OUT`` (a checkpoint's model file, see :mod:`mpe_ssl.pretrained`);
- ``mpe-ssl separate AUDIO --score MIDI --keep ...`` (score-informed) or ``AUDIO... --ckpt MAJL``;
- ``mpe-ssl pseudo-label --ckpt STAGE1 --out DIR`` (MAJL's stage-II labels, :mod:`mpe_ssl.pseudo_label`);
- ``mpe-ssl data render [options]``.

Errors caused by the user's input print one line and exit with status 2. Lightning,
jsonargparse and the systems are imported only by the commands that need them, so that
``mpe-ssl transcribe`` starts quickly.
"""

from __future__ import annotations

import argparse
import functools
import logging
import re
import sys
import warnings
from typing import TYPE_CHECKING

from mpe_ssl import configs
from mpe_ssl.errors import MpeSslError

if TYPE_CHECKING:
    from lightning.pytorch.cli import LightningCLI

USAGE = f"""usage: mpe-ssl {{fit,validate,test,predict}} --config CONFIG [options]
       mpe-ssl transcribe AUDIO... [--ckpt PATH] [--out DIR]
       mpe-ssl export-model CKPT OUT [--precision float16|float32]
       mpe-ssl export-onnx MODEL OUT
       mpe-ssl separate AUDIO --score MIDI --keep part=Soprano [--method ae|nmf] [--out DIR]
       mpe-ssl separate AUDIO... --ckpt MAJL.ckpt [--out DIR]
       mpe-ssl pseudo-label --ckpt STAGE1.ckpt --out DIR (--config YAML | --root DIR)
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


@functools.cache
def mpe_ssl_cli_class() -> type[LightningCLI]:
    """``MpeSslCLI``, defined at first use: Lightning is imported only by the commands that run it."""
    from lightning.pytorch.cli import LightningCLI

    from mpe_ssl.runs import version_checkpoints

    class MpeSslCLI(LightningCLI):
        """LightningCLI with mpe-ssl's run folders: every fit checkpoints into its own
        ``<dirpath>/version_N/`` (see :mod:`mpe_ssl.runs`)."""

        def add_arguments_to_parser(self, parser) -> None:
            ints_before_floats(parser)

        def _set_seed(self) -> None:
            # quietly: the seed is in the run's saved config.yaml, and an error in the config that
            # follows must stay the only line the user sees
            seed_logger = logging.getLogger("lightning.fabric.utilities.seed")
            level = seed_logger.level
            seed_logger.setLevel(logging.WARNING)
            try:
                super()._set_seed()
            finally:
                seed_logger.setLevel(level)

        def before_fit(self) -> None:
            config = self.config_init[self.subcommand]
            config["ckpt_path"] = version_checkpoints(self.trainer.callbacks, config.get("ckpt_path"))

    MpeSslCLI.__qualname__ = "MpeSslCLI"
    return MpeSslCLI


def __getattr__(name: str):
    if name == "MpeSslCLI":  # the class, for code that names it
        return mpe_ssl_cli_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _lightning_cli(argv: list[str], run: bool) -> LightningCLI:
    from lightning.pytorch import LightningDataModule

    from mpe_ssl.systems import System

    return mpe_ssl_cli_class()(
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
    cause = wrapped_user_error(error)
    if cause is not None:
        return "config: " + user_error_line(error, cause)
    lines = [line.strip().lstrip("- ").strip() for line in str(error).splitlines()]
    kept = [line for line in lines if line and not _NOISE.search(line)]
    return "config: " + " ".join(kept)


#: Trainer arguments whose type tells what they mean: an int counts batches, a float is a fraction
INT_OR_FRACTION = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches",
                   "val_check_interval")


def ints_before_floats(parser) -> None:
    """Make ``parser``'s trainer arguments of :data:`INT_OR_FRACTION` try ``int`` before ``float``.

    Lightning annotates ``limit_*_batches`` ``Optional[Union[int, float]]``, but ``typing``
    caches unions as equal whatever their order, so that annotation is the
    ``Union[float, int, None]`` that lightning.fabric built first (``clip_val``). jsonargparse
    tries the subtypes in order, ``float`` accepts ``1``, and ``--trainer.limit_val_batches 1``
    (one batch) became ``1.0`` (every batch). With ``int`` first, ``1`` stays an int and a
    value written with a decimal point (``1.0``, ``0.5``) stays a float.
    """
    from typing import Union

    wanted = {f"trainer.{key}" for key in INT_OR_FRACTION}
    for action in parser._actions:
        subtypes = list(getattr(getattr(action, "_typehint", None), "__args__", ()))
        if action.dest in wanted and int in subtypes and float in subtypes[: subtypes.index(int)]:
            subtypes.remove(int)
            subtypes.insert(subtypes.index(float), int)
            action._typehint = Union[tuple(subtypes)]  # a flat union: no cached reordering


def wrapped_user_error(error: BaseException) -> MpeSslError | None:
    """The :class:`MpeSslError` that ``error`` was raised from, if any.

    jsonargparse wraps what a class raises while it is instantiated from a config (a
    StreamSpec's ``kind``, a system's ``lr_encoder``) in its own ``ValueError`` report.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, MpeSslError):
            return error
        seen.add(id(error))
        error = error.__cause__
    return None


def _instantiated_key(error: BaseException) -> str:
    """Best effort: the config key jsonargparse was instantiating when ``error`` (the outer
    exception of a ``__cause__`` chain) was raised, e.g. ``data.init_args.train_streams[0]``;
    ``""`` where it cannot tell. Read from jsonargparse's frames, so it never raises."""
    import linecache
    from dataclasses import is_dataclass

    parts: list[str] = []
    try:
        seen: set[tuple[int, int]] = set()
        while error is not None:
            tb = error.__traceback__
            while tb is not None:
                frame, code = tb.tb_frame, tb.tb_frame.f_code
                if "jsonargparse" in code.co_filename and (id(frame), tb.tb_lineno) not in seen:
                    seen.add((id(frame), tb.tb_lineno))
                    line = linecache.getline(code.co_filename, tb.tb_lineno)
                    local = frame.f_locals
                    if code.co_name == "instantiate" and "component.instantiate_classes(" in line:
                        parts.append(str(local["component"].dest))
                    elif code.co_name == "adapt_typehints" and "val[n] = adapt_typehints(" in line:
                        parts.append(f"[{local['n']}]")
                    elif code.co_name == "adapt_class_type" and not is_dataclass(local.get("val_class")):
                        parts.append("init_args")  # a class given by class_path; a dataclass has no init_args
                tb = tb.tb_next
            if isinstance(error, MpeSslError):
                break
            error = error.__cause__
    except Exception:  # jsonargparse's internals changed: no key, still the message
        return ""
    return ".".join(parts).replace(".[", "[")


def user_error_line(error: BaseException, cause: MpeSslError) -> str:
    """``cause``'s message, prefixed with the config key it was raised under where known."""
    message, key = str(cause), _instantiated_key(error)
    if not key:
        return message
    return f"{key}.{message}" if re.match(r"[A-Za-z_]\w*: ", message) else f"{key}: {message}"


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "transcribe":
        from mpe_ssl.transcribe_cli import main as transcribe_main  # imports no torch (its ONNX engine)

        return transcribe_main(argv[1:])
    if argv[0] == "export-model":
        from mpe_ssl.pretrained import main as export_main

        return export_main(argv[1:])
    if argv[0] == "export-onnx":
        from mpe_ssl.onnx_export import main as export_onnx_main

        return export_onnx_main(argv[1:])
    if argv[0] == "separate":
        from mpe_ssl.separate import main as separate_main

        return separate_main(argv[1:])
    if argv[0] == "pseudo-label":
        from mpe_ssl.pseudo_label import main as pseudo_label_main

        return pseudo_label_main(argv[1:])
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
    except Exception as error:  # raised from an MpeSslError: jsonargparse wraps what a class raises
        cause = wrapped_user_error(error)
        if cause is None:
            raise
        print(f"error: {user_error_line(error, cause)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
