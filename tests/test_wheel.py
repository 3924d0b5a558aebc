"""The package as a user gets it: built into a wheel, installed (not editable) into a fresh
environment, and run from a folder that is not the repository, with the shipped configs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("mpe_ssl/configs/demo.yaml", "mpe_ssl/configs/ssmpe.yaml", "mpe_ssl/weights/transcriber.pt",
           "mpe_ssl/weights/transcriber-onnx/model.json", "mpe_ssl/weights/transcriber-onnx/network.onnx",
           "mpe_ssl/weights/transcriber-onnx/frontend.onnx", "mpe_ssl/weights/transcriber-onnx/peak.onnx")


def _run(command: list, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)  # the installed package only, never the repository's source
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def _build_wheel(tmp_path: Path) -> Path:
    """Build from a copy of the source, so that build/ and *.egg-info stay out of the repository."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "mpe_ssl", source / "mpe_ssl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    # no network: the setuptools and wheel already in this environment build it
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", dist, source], cwd=tmp_path)
    (wheel,) = dist.glob("mpe_ssl-*.whl")
    return wheel


def _fresh_env(tmp_path: Path, wheel: Path) -> Path:
    """A new venv holding the wheel; the dependencies come from this environment's site-packages,
    added by a path line in a .pth file (which does not run the .pth files found there, so this
    environment's editable install of mpe_ssl stays out)."""
    env = tmp_path / "env"
    _run([sys.executable, "-m", "venv", env], cwd=tmp_path)
    python = env / "bin" / "python"
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], cwd=tmp_path)
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path)
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (Path(site.stdout.strip()) / "_mpe_ssl_test_deps.pth").write_text("".join(f"{path}\n" for path in ours))
    return env


def test_wheel_installs_and_runs_the_shipped_configs(tmp_path, rendered_root):
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in SHIPPED:
        assert shipped in names, f"{shipped} is missing from {wheel.name}"

    env = _fresh_env(tmp_path, wheel)
    work = tmp_path / "work"  # an empty folder, not the repository
    work.mkdir()

    # the package imported is the installed one, with no editable finder pointing at the source
    probe = _run([env / "bin" / "python", "-c",
                  "import sys, mpe_ssl; print(mpe_ssl.__file__); print(repr(sys.meta_path))"], cwd=work)
    imported, finders = probe.stdout.splitlines()
    assert Path(imported).is_relative_to(env), imported
    assert not Path(imported).is_relative_to(REPO / "mpe_ssl"), imported
    assert "editable" not in finders, finders

    cli = env / "bin" / "mpe-ssl"
    shown = _run([cli, "fit", "--config", "ssmpe", "--print_config"], cwd=work)
    assert "SelfSupervisedMPE" in shown.stdout

    # the demo config by its short name, shrunk by a second config: a complexity-1 network,
    # 2 steps on 1 s excerpts of the fixture's chorales, one validation, on CPU
    tiny = {
        "trainer": {"accelerator": "cpu", "max_steps": 2, "val_check_interval": 2,
                    "enable_progress_bar": False, "enable_model_summary": False},
        "model": {"init_args": {"network": {"init_args": {"model_complexity": 1}}}},
        "data": {"init_args": {
            "root": str(rendered_root), "steps_per_epoch": 2, "excerpt_seconds": 1.0, "num_workers": 0,
            "train_streams": [{"kind": "labelled", "split": "train", "count": 1, "batch_size": 2}],
            "val_streams": [{"kind": "labelled", "split": "val", "count": 1}],
            "test_streams": [{"kind": "labelled", "split": "test", "count": 1}],
        }},
    }
    (work / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    configs = ["--config", "demo", "--config", "tiny.yaml"]

    _run([cli, "fit", *configs], cwd=work)
    run = work / "runs" / "demo"  # the demo config's relative paths, under the working folder
    best = run / "version_0" / "best.ckpt"  # each fit checkpoints into its own version folder
    assert best.is_file() and (run / "version_0" / "last.ckpt").is_file()
    assert torch.load(best, weights_only=False)["global_step"] == 2
    assert "val/f1" in (run / "csv" / "version_0" / "metrics.csv").read_text()

    tested = _run([cli, "test", *configs, "--ckpt_path", best], cwd=work)
    logged = "".join(path.read_text() for path in (run / "csv").glob("version_*/metrics.csv"))
    assert "test/f1" in tested.stdout or "test/f1" in logged

    # the shipped model from the wheel, without --ckpt: ONNX Runtime on this CPU
    mix = sorted(rendered_root.glob("test/*/mix.wav"))[0]
    _run([cli, "transcribe", mix, "--out", work / "transcribed"], cwd=work)
    assert (work / "transcribed" / "mix.notes.csv").read_text().count("\n") > 1
