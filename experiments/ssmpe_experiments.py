"""The SS-MPE experiment grid on the embedded chorales; writes a table and plots to docs/ssmpe/.

Conditions (each a variant of experiments/ssmpe.yaml):
- table1/<name>: closed conditions, labelled data only: supervised, + each objective, + all;
- degeneration/n<N>: all objectives + N chorales used for self-supervision only, N in {0, 16, 64, 256};
- energy/n<N>: the same + the energy-based remedy (EG energy + sparsity).

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

from mpe_ssl.cli import lightning_cli

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "experiments" / "ssmpe.yaml"
SS_TERMS = ("timbre", "percussion", "geometric")


def conditions(groups: list[str], ns: list[int]) -> dict[str, dict]:
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
            grid[f"energy/n{n}"] = {"weights": {**weights, "energy": 1.0, "sparsity": 0.01}, "unlabelled": n}
    return grid


def make_config(name: str, condition: dict, args: argparse.Namespace) -> Path:
    config = copy.deepcopy(yaml.safe_load(BASE.read_text()))
    out = ROOT / "runs" / "ssmpe" / name
    trainer = config["trainer"]
    trainer.update(max_steps=args.steps, val_check_interval=args.val_every, default_root_dir=str(out))
    for logger in trainer["logger"]:
        logger["init_args"]["save_dir"] = str(out)
    trainer["callbacks"][0]["init_args"]["dirpath"] = str(out)
    model = config["model"]["init_args"]
    model.update(weights=condition["weights"], model_complexity=args.complexity, init_weights=args.init_weights)
    data = config["data"]["init_args"]
    data.update(excerpt_seconds=args.excerpt, steps_per_epoch=args.steps)
    labelled, unlabelled = data["train_streams"]
    n = condition["unlabelled"]
    first = labelled["first"] + labelled["count"]
    data["train_streams"] = [labelled] + ([{**unlabelled, "first": first, "count": n}] if n else [])
    # F1 on the self-supervision-only pieces is measured on those very pieces (labels hidden
    # from training); with N = 0 the same pieces are watched as a reference, never trained on
    watched = max(1, min(n or 4, 4))
    data["val_streams"][1].update(first=first, count=watched)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def read_curves(name: str) -> dict[str, list[tuple[int, float]]]:
    versions = sorted((ROOT / "runs" / "ssmpe" / name / "csv").glob("version_*"), key=lambda p: int(p.name[8:]))
    rows = list(csv.DictReader(open(versions[-1] / "metrics.csv")))
    curves: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key.startswith("val/") and key.count("/") == 2 and value:
                curves.setdefault(key, []).append((int(row["step"]), float(value)))
    return curves


def summarise(names: list[str], out_dir: Path, tag: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in names:
        curves = read_curves(name)
        lab, unl = curves.get("val/labelled/f1", []), curves.get("val/unlabelled/f1", [])
        best = max(lab, key=lambda p: p[1]) if lab else (0, float("nan"))
        results[name] = {
            "best_labelled_val_f1": best[1], "best_step": best[0],
            "final_labelled_val_f1": lab[-1][1] if lab else float("nan"),
            "final_unlabelled_f1": unl[-1][1] if unl else float("nan"),
            "final_unlabelled_blank": curves.get("val/unlabelled/blank_fraction", [(0, float("nan"))])[-1][1],
            "final_unlabelled_silent": curves.get("val/unlabelled/silent_fraction", [(0, float("nan"))])[-1][1],
        }
        figure, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for stream in ("labelled", "unlabelled"):
            for axis, key in zip(axes, ("f1", "blank_fraction")):
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
    (out_dir / f"results{suffix}.json").write_text(json.dumps(results, indent=2))
    lines = ["| condition | best labelled val F1 (step) | final labelled val F1 | final F1 on SS-only pieces | blank / silent frames there |",
             "|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['best_labelled_val_f1']:.3f} ({r['best_step']}) | {r['final_labelled_val_f1']:.3f} "
                     f"| {r['final_unlabelled_f1']:.3f} | {r['final_unlabelled_blank']:.2f} / {r['final_unlabelled_silent']:.2f} |")
    (out_dir / f"table{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="+", default=["table1", "degeneration", "energy"])
    parser.add_argument("--n", nargs="+", type=int, default=[0, 16, 64, 256])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--val-every", type=int, default=50)
    parser.add_argument("--complexity", type=int, default=2)
    parser.add_argument("--excerpt", type=float, default=2.0)
    parser.add_argument("--init-weights", default=None,
                        help="start every run from this checkpoint's autoencoder (e.g. runs/demo/best.ckpt)")
    parser.add_argument("--tag", default="", help="suffix of every condition's name (keeps variants apart)")
    parser.add_argument("--summarise-only", action="store_true")
    args = parser.parse_args()
    grid = {name + (f"-{args.tag}" if args.tag else ""): c for name, c in conditions(args.groups, args.n).items()}
    for name, condition in grid.items():
        if not args.summarise_only:
            print(f"== {name}: {condition}", flush=True)
            lightning_cli(["fit", "--config", str(make_config(name, condition, args))])
    summarise(list(grid), ROOT / "docs" / "ssmpe", args.tag)


if __name__ == "__main__":
    main()
