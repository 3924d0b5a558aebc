"""A fit killed mid-epoch and resumed from last.ckpt trains on the same batches, step for step,
as one that never stopped: same losses, same validation metrics."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.tiny import tiny_demo_config

REPO = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, root: Path, name: str, kill_at: int | None) -> Path:
    out = str(tmp_path / name)
    config = tiny_demo_config(root, out, eval_seconds=2.0)  # 4 steps per epoch: 8 steps cross an epoch
    trainer = config["trainer"]
    trainer.update(max_steps=8, val_check_interval=2, log_every_n_steps=1)
    trainer["logger"] = [{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": out, "name": "csv"}}]
    trainer["callbacks"] = [c for c in trainer["callbacks"] if "ModelCheckpoint" in c["class_path"]]
    if kill_at is not None:
        trainer["callbacks"].append({"class_path": "tests.killer.KillAt", "init_args": {"step": kill_at}})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _fit(config: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "mpe_ssl.cli", "fit", "--config", str(config), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _logged(folder: Path) -> dict[tuple[str, int], float]:
    """``{(metric, step): value}`` of every CSV log under ``folder``."""
    values = {}
    for path in sorted(folder.glob("csv/version_*/metrics.csv")):
        for row in csv.DictReader(open(path)):
            for key, value in row.items():
                if value and key not in ("step", "epoch") and (key.startswith("train/") or key.startswith("val/")):
                    values[(key, int(row["step"]))] = float(value)
    return values


def test_a_killed_and_resumed_fit_equals_an_uninterrupted_one(tmp_path, rendered_root):
    assert _fit(_config(tmp_path, rendered_root, "straight", None)).returncode == 0
    killed = _fit(_config(tmp_path, rendered_root, "killed", kill_at=7))
    assert killed.returncode == -9  # SIGKILL at step 7: last.ckpt is the one of step 6, mid-epoch 2
    last = tmp_path / "killed" / "version_0" / "last.ckpt"
    resumed = _fit(_config(tmp_path, rendered_root, "killed", None), "--ckpt_path", str(last))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight, after = _logged(tmp_path / "straight"), _logged(tmp_path / "killed")
    steps_after = {key for key in after if key[1] >= 6}
    assert {("train/loss", 6), ("train/loss", 7), ("val/f1", 7)} <= steps_after
    for key in steps_after:
        assert after[key] == straight[key], (key, after[key], straight[key])
