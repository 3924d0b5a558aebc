"""The SS-MPE experiment grid on the embedded chorales; writes a table and plots to docs/ssmpe/.

Conditions (each a variant of the shipped ssmpe config, mpe_ssl/configs/ssmpe.yaml):
- table1/<name>: closed conditions, labelled data only: supervised, + each objective, + all;
- degeneration/n<N>: all objectives + N chorales used for self-supervision only, N in {0, 16, 64, 256};
- energy/n<N>: the same + the energy-based remedy (EG energy + sparsity);
- invariance/n<N>: degeneration without the geometric term (timbre + percussion only);
- intl/n<N>: the same as degeneration/n<N> + INTL (IterNorm whitening + trace loss) on the latent of the
  self-supervision-only stream (issue 4's anti-collapse regulariser).

Usage:
    python experiments/ssmpe_experiments.py --groups degeneration --n 16 64 [--steps 400] [--complexity 2]
The F1 of every stream over training comes from each run's metrics.csv.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
from pathlib import Path

import yaml

from mpe_ssl import configs
from mpe_ssl.cli import lightning_cli

ROOT = Path(__file__).resolve().parents[1]
BASE = Path(configs.resolve("ssmpe"))
RUNS = ROOT / "runs" / "ssmpe"


def start_file(tag: str) -> Path:
    """Where :func:`evaluate_start` writes the start model's validation metrics for ``tag``."""
    return RUNS / f"start{'-' + tag if tag else ''}.json"
SS_TERMS = ("timbre", "percussion", "geometric")
SCHEDULES = {"linear": "mpe_ssl.systems.LinearWarmup", "cosine": "mpe_ssl.systems.CosineWarmup"}


def conditions(groups: list[str], ns: list[int], args: argparse.Namespace) -> dict[str, dict]:
    """name -> {"weights": ..., "unlabelled": N}."""
    grid = {}
    if "table1" in groups:
        grid["table1/supervised"] = {"weights": {"supervised": 1.0}, "unlabelled": 0}
        for term in SS_TERMS:
            grid[f"table1/+{term}"] = {"weights": {"supervised": 1.0, term: 1.0}, "unlabelled": 0}
        grid["table1/+all"] = {"weights": {"supervised": 1.0, **{t: 1.0 for t in SS_TERMS}}, "unlabelled": 0}
    for n in ns:
        weights = {"supervised": 1.0, **{t: 1.0 for t in SS_TERMS}}
        if "degeneration" in groups:
            grid[f"degeneration/n{n}"] = {"weights": weights, "unlabelled": n}
        if "energy" in groups:
            grid[f"energy/n{n}"] = {
                "weights": {**weights, "energy": args.energy_weight, "sparsity": args.sparsity_weight}, "unlabelled": n
            }
        if "invariance" in groups:
            grid[f"invariance/n{n}"] = {"weights": {"supervised": 1.0, "timbre": 1.0, "percussion": 1.0}, "unlabelled": n}
        if "intl" in groups:
            grid[f"intl/n{n}"] = {"weights": {**weights, "intl": args.intl_weight}, "unlabelled": n}
    return grid


def make_config(name: str, condition: dict, args: argparse.Namespace, runs: Path = RUNS) -> Path:
    config = copy.deepcopy(yaml.safe_load(BASE.read_text()))
    out = runs / name
    trainer = config["trainer"]
    trainer.update(max_steps=args.steps, val_check_interval=args.val_every)
    configs.write_outputs_to(config, out)
    trainer["callbacks"].append({"class_path": "mpe_ssl.callbacks.SpectrumMonitor"})
    model = config["model"]["init_args"]
    model.update(weights=condition["weights"], init_weights=args.init_weights, stop_gradient=args.stop_gradient,
                 max_shift_frames=args.shift_frames)
    model["network"]["init_args"]["model_complexity"] = args.complexity
    if args.lr is not None:
        model.update(lr_encoder=args.lr, lr_decoder=args.lr)
    # the grid of docs/ssmpe ran with a linear warm-up and the energy terms on every stream;
    # --schedule cosine --energy-streams unlabelled give the shipped config's reference protocol
    model["lr_scheduler"]["class_path"] = SCHEDULES[args.schedule]
    model["energy_streams"] = args.energy_streams
    if args.warmup is not None:
        model["lr_scheduler"]["init_args"]["warmup_steps"] = args.warmup
    if args.shift_step != 1:
        model.update(shift_step_bins=args.shift_step)
    data = config["data"]["init_args"]
    data.update(excerpt_seconds=args.excerpt, steps_per_epoch=args.steps)
    labelled, unlabelled = data["train_streams"]
    labelled["batch_size"], unlabelled["batch_size"] = args.batch
    n = condition["unlabelled"]
    first = args.unlabelled_first if args.unlabelled_first is not None else labelled["first"] + labelled["count"]
    data["train_streams"] = [labelled] + ([{**unlabelled, "first": first, "count": n}] if n else [])
    # F1 on the self-supervision-only pieces is measured on those very pieces (labels hidden
    # from training); with N = 0 the same pieces are watched as a reference, never trained on
    watched = max(1, min(n or 4, 4))
    data["val_streams"][1].update(first=first, count=watched)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_condition(name: str, condition: dict, args: argparse.Namespace) -> None:
    """Fit, then test the checkpoint best on labelled validation F1; test metrics to test.json."""
    config = make_config(name, condition, args)
    fit = lightning_cli(["fit", "--config", str(config)])
    out = config.parent
    best = fit.trainer.checkpoint_callback.best_model_path  # in this fit's own out/version_N/
    cli = lightning_cli(["test", "--config", str(config), "--ckpt_path", best])
    metrics = {key: float(value) for key, value in cli.trainer.callback_metrics.items() if key.startswith("test/")}
    (out / "test.json").write_text(json.dumps(metrics, indent=2))


def evaluate_start(name: str, condition: dict, args: argparse.Namespace) -> None:
    """Validation metrics of the ``--init-weights`` model itself (step 0 of every curve) to start.json.

    Every condition watches the same pieces (the first 4 past ``--unlabelled-first``), so one
    evaluation serves the whole grid.
    """
    config = make_config(name, condition, args)
    cli = lightning_cli(["validate", "--config", str(config), "--ckpt_path", args.init_weights])
    metrics = {key: float(value) for key, value in cli.trainer.callback_metrics.items() if key.startswith("val/")}
    start_file(args.tag).write_text(json.dumps(metrics, indent=2))


def read_curves(name: str) -> dict[str, list[tuple[int, float]]]:
    """Validation curves of the condition's last fit (the highest csv version with val metrics)."""
    versions = sorted((RUNS / name / "csv").glob("version_*"), key=lambda p: int(p.name[8:]))
    fits = [v for v in versions if (v / "metrics.csv").exists() and "val/" in (v / "metrics.csv").read_text().split("\n")[0]]
    if not fits:
        return {}
    rows = list(csv.DictReader(open(fits[-1] / "metrics.csv")))
    curves: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith("val/") and key.count("/") == 2 and value:
                curves.setdefault(key, []).append((int(row["step"]), float(value)))
    return curves


def summarise(names: list[str], out_dir: Path, tag: str = "", start: Path | None = None) -> None:
    """Table (markdown + json) of every condition and a curve plot per condition.

    ``start``: the start.json of :func:`evaluate_start`; its values become step 0 of the curves.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    results, all_curves = {}, {}
    for name in names:
        if not (RUNS / name / "csv").is_dir():
            print(f"{name}: not run, left out of the table")
            continue
        curves = read_curves(name)
        if not curves:
            print(f"{name}: no validation yet, left out of the table")
            continue
        if start is not None and start.exists():
            for key, value in json.loads(start.read_text()).items():
                if key in curves:
                    curves[key].insert(0, (0, value))
        all_curves[name] = curves
        test_file = RUNS / name / "test.json"
        test = json.loads(test_file.read_text()) if test_file.exists() else {}
        lab = curves.get("val/labelled/f1", [])
        trained = [point for point in lab if point[0] > 0]  # best.ckpt is chosen among these
        best = max(trained, key=lambda p: p[1]) if trained else (0, float("nan"))
        def last(key: str) -> float:
            return curves[key][-1][1] if curves.get(key) else float("nan")

        results[name] = {
            "best_labelled_val_f1": best[1], "best_step": best[0],
            "final_labelled_val_f1": last("val/labelled/f1"),
            "final_unlabelled_f1": last("val/unlabelled/f1"),
            "final_unlabelled_blank": last("val/unlabelled/blank_fraction"),
            "final_unlabelled_silent": last("val/unlabelled/silent_fraction"),
            "final_labelled_blank": last("val/labelled/blank_fraction"),
            "final_unlabelled_precision": last("val/unlabelled/precision"),
            "final_unlabelled_recall": last("val/unlabelled/recall"),
            "final_unlabelled_latent_rank": last("val/unlabelled/latent_effective_rank"),
            "test_f1": test.get("test/f1", float("nan")),
            "test_precision": test.get("test/precision", float("nan")),
            "test_recall": test.get("test/recall", float("nan")),
        }
        figure, axes = plt.subplots(1, 3, figsize=(13, 3.2))
        for stream in ("labelled", "unlabelled"):
            for axis, key in zip(axes, ("f1", "blank_fraction", "latent_effective_rank")):
                points = curves.get(f"val/{stream}/{key}", [])
                if points:
                    axis.plot(*zip(*points), marker="o", label=stream)
                    axis.set_title(key)
                    axis.set_xlabel("step")
        axes[0].legend()
        figure.suptitle(name)
        figure.tight_layout()
        figure.savefig(out_dir / f"{name.replace('/', '_')}.png", dpi=90)
        plt.close(figure)
    suffix = f"_{tag}" if tag else ""
    figure, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for name, curves in all_curves.items():
        for axis, stream in zip(axes, ("labelled", "unlabelled")):
            points = curves.get(f"val/{stream}/f1", [])
            if points:
                axis.plot(*zip(*points), marker="o", label=name)
    axes[0].set(title="F1 on the labelled validation pieces", xlabel="step", ylabel="F1")
    axes[1].set(title="F1 on the self-supervision-only pieces", xlabel="step")
    axes[1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out_dir / f"overview{suffix}.png", dpi=90)
    plt.close(figure)
    (out_dir / f"results{suffix}.json").write_text(json.dumps(results, indent=2))
    lines = ["| condition | test F1 (P / R) of best | best labelled val F1 (step) | final labelled val F1 "
             "| final F1 (P / R) on SS-only pieces | blank / silent frames there | latent eff. rank there |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['test_f1']:.3f} ({r['test_precision']:.3f} / {r['test_recall']:.3f}) "
                     f"| {r['best_labelled_val_f1']:.3f} ({r['best_step']}) | {r['final_labelled_val_f1']:.3f} "
                     f"| {r['final_unlabelled_f1']:.3f} ({r['final_unlabelled_precision']:.3f} / {r['final_unlabelled_recall']:.3f}) "
                     f"| {r['final_unlabelled_blank']:.2f} / {r['final_unlabelled_silent']:.2f} | {r['final_unlabelled_latent_rank']:.1f} |")
    (out_dir / f"table{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="+", default=["table1", "degeneration", "energy"])
    parser.add_argument("--n", nargs="+", type=int, default=[0, 16, 64, 256])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--val-every", type=int, default=50)
    parser.add_argument("--complexity", type=int, default=2)
    parser.add_argument("--excerpt", type=float, default=2.0)
    parser.add_argument("--init-weights", default=None,
                        help="start every run from this checkpoint's autoencoder (e.g. runs/demo/best.ckpt)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate of encoder and decoder")
    parser.add_argument("--warmup", type=int, default=None, help="learning-rate warm-up steps")
    parser.add_argument("--batch", nargs=2, type=int, default=[8, 16], metavar=("LABELLED", "UNLABELLED"),
                        help="samples per batch of each stream (the paper: 8 + 16)")
    parser.add_argument("--unlabelled-first", type=int, default=None,
                        help="index of the first self-supervision-only training chorale (default: right after "
                             "the labelled ones; with --init-weights, put it past every piece that model saw labelled)")
    parser.add_argument("--stop-gradient", action="store_true", help="detach the self-supervised targets")
    parser.add_argument("--shift-step", type=int, default=1,
                        help="vertical shifts of the geometric term in multiples of this many bins (5: semitones)")
    parser.add_argument("--shift-frames", type=lambda v: None if v == "none" else int(v), default=86,
                        help="largest time shift in frames (86: the setting of docs/ssmpe; none: a quarter of the excerpt)")
    parser.add_argument("--schedule", choices=sorted(SCHEDULES), default="linear",
                        help="learning-rate warm-up (linear: the grid of docs/ssmpe; cosine: the reference's)")
    parser.add_argument("--energy-streams", nargs="+", default=["labelled", "pseudo", "unlabelled"],
                        help="streams of the energy terms (the grid: all; the reference: unlabelled)")
    parser.add_argument("--energy-weight", type=float, default=1.0)
    parser.add_argument("--sparsity-weight", type=float, default=0.01)
    parser.add_argument("--intl-weight", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (two runs side by side: 1)")
    parser.add_argument("--tag", default="", help="suffix of every condition's name (keeps variants apart)")
    parser.add_argument("--summarise-only", action="store_true")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    grid = {name + (f"-{args.tag}" if args.tag else ""): c for name, c in conditions(args.groups, args.n, args).items()}
    if args.init_weights and not args.summarise_only:
        evaluate_start(*next(iter(grid.items())), args)
    for name, condition in grid.items():
        if not args.summarise_only:
            print(f"== {name}: {condition}", flush=True)
            run_condition(name, condition, args)
    summarise(list(grid), ROOT / "docs" / "ssmpe", args.tag, start_file(args.tag))


if __name__ == "__main__":
    main()
