"""The main job of ``make demo``: render, train, test and transcribe, on the embedded chorales.

Steps, each through the same commands a user runs:
1. ``mpe-ssl fit --config demo`` (``mpe_ssl/configs/demo.yaml``) (renders the split on first use; logs to
   TensorBoard and CSV under ``runs/demo/{tensorboard,csv}/version_N``; checkpoints in a new
   ``runs/demo/version_N/`` per fit; ``runs/demo/best.ckpt`` and ``last.ckpt`` link to this
   demo's);
2. ``mpe-ssl test`` with the best checkpoint, printing precision / recall / F1;
3. ``mpe-ssl transcribe`` of one test piece into ``runs/demo/transcriptions``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mpe_ssl.cli import lightning_cli, main as cli_main
from mpe_ssl.data.render import load_manifest
from mpe_ssl.runs import point


def run(config: str, out: Path) -> dict:
    start = time.time()
    fit = lightning_cli(["fit", "--config", config])
    # every fit writes its own runs/demo/version_N/; runs/demo/best.ckpt points at the demo's
    best_in_run = Path(fit.trainer.checkpoint_callback.best_model_path)
    best = out / "best.ckpt"
    point(best, best_in_run)
    point(out / "last.ckpt", best_in_run.parent / "last.ckpt")
    test = lightning_cli(["test", "--config", config, "--ckpt_path", str(best)])
    scores = {k: float(v) for k, v in test.trainer.callback_metrics.items() if k.startswith("test/")}
    root = Path(fit.datamodule.root)
    test_pieces = [p for p in load_manifest(root)["pieces"] if p["split"] == "test"]
    # named after the piece (every rendered mixture is called mix.wav)
    audio = out / "audio" / f"{test_pieces[0]['id']}.wav"
    audio.parent.mkdir(parents=True, exist_ok=True)
    audio.unlink(missing_ok=True)
    audio.symlink_to((root / test_pieces[0]["mix"]).resolve())
    status = cli_main(["transcribe", str(audio), "--ckpt", str(best), "--out", str(out / "transcriptions")])
    scores["minutes"] = (time.time() - start) / 60
    print("\nmpe-ssl demo: supervised MPE on the embedded test split")
    for name in ("precision", "recall", "f1"):
        print(f"  {name:>9}: {scores.get(f'test/{name}', float('nan')):.3f}")
    print(f"  wall time: {scores['minutes']:.1f} min; best checkpoint: {best}")
    (out / "demo_scores.json").write_text(json.dumps(scores, indent=2))
    if status != 0:
        raise SystemExit(status)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="demo", help="a shipped config name or a YAML path")
    parser.add_argument("--out", default="runs/demo", type=Path)
    args = parser.parse_args(argv)
    run(args.config, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
