"""Score-informed separation on rendered Bach chorales: NMF vs the structured autoencoder.

Tasks (each piece cut to its first ``--excerpt`` seconds):
- ``piano``: all four parts on one piano; sources = upper two parts (soprano + alto) vs the
  lower two (tenor + bass) -- the paper's right hand vs left hand: notes of one instrument;
- ``ensemble``: four different instruments; sources = each part.
Scores: exact, or deliberately misaligned by a random smooth time warp of ``--warps``
seconds at most (``mpe_ssl.data.score.warp_notes``), the same warp for every method.
Methods (``mpe_ssl.separate.SeparationSettings``): ``nmf``, ``ae`` (free synthesis weights),
``ae_nonneg`` (non-negative synthesis), ``ae_nonneg_ctx`` (+ 2 context frames each side),
``ae_prior`` (not in the paper: ``mpe-ssl separate --harmonic-prior``, ``HARMONIC_PRIOR``),
``ae_pretrained`` (not in the paper: the per-piece fit starts from a model trained over the
train split's piano chorales, ``mpe-ssl fit --config separation``, given by ``--pretrained``).
Metric: museval BSSEval v4 (1 s windows, median over windows), per source SDR and
NSDR = SDR - SDR of the mixture as the estimate; a piece's NSDR is the mean over its sources.

Also ``--speed``: structured dropout first vs the activity penalty alone on one piece: the
penalty objective (eq. 2 of the paper) per step, and the steps each needs to reach a level.

Usage (the figures in docs/separation/ came from these):
    python experiments/separation_experiments.py --split test --pieces 8 --workers 2
    python experiments/separation_experiments.py --speed --split test
Pieces of the ``val`` split are for choosing settings; ``test`` only for the final table.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from mpe_ssl.separate import HARMONIC_PRIOR

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "separation"
UPPER, LOWER = ("Soprano", "Alto"), ("Tenor", "Bass")
METHODS = {
    "nmf": {"method": "nmf"},
    # NMF at the update count of the tables before 2026-11-27 (fourth session): 100, not 25
    "nmf_100": {"method": "nmf", "nmf_iterations": 100},
    "nmf_p2": {"method": "nmf", "nmf_units_per_class": 2},  # NMF's units per class before 2026-11-27 (fifth session): 2, not 3
    "ae": {"method": "ae", "nonnegative_synthesis": False},
    "ae_nonneg": {"method": "ae", "nonnegative_synthesis": True},
    "ae_nonneg_ctx": {"method": "ae", "nonnegative_synthesis": True, "context": 2},
    # not in the paper: a harmonic prior in f (one linear non-negative layer started from the
    # templates of score-informed NMF fitted to the recording), three units per class, a
    # softplus representation, a temporal-continuity cost (HARMONIC_PRIOR)
    "ae_prior": {"method": "ae", **HARMONIC_PRIOR},
    # fine-tuned per piece from a model trained over the train split (--pretrained CKPT)
    "ae_pretrained": {"method": "ae"},
}


def render_config(task: str, split: str, pieces: int):
    from mpe_ssl.data.render import RenderConfig

    counts = {s: (pieces if s == split else 0) for s in ("train", "val", "test")}
    if task == "piano":
        return RenderConfig(seed=0, programs=(0,), distinct_programs=False, counts=counts)
    return RenderConfig(seed=0, counts=counts)


def load_pieces(task: str, split: str, pieces: int, excerpt: float) -> list[dict]:
    """Each piece's first ``excerpt`` seconds: mixture, reference sources and notes."""
    import soundfile as sf

    from mpe_ssl.data.render import load_manifest, render_dataset
    from mpe_ssl.data.score import crop_notes, notes_from_csv

    root = Path(render_dataset(render_config(task, split, pieces), progress=False))
    entries = [e for e in load_manifest(root)["pieces"] if e["split"] == split][:pieces]
    loaded = []
    for entry in entries:
        folder = root / split / entry["id"]
        mix, sr = sf.read(folder / "mix.wav", dtype="float32")
        n = min(len(mix), int(excerpt * sr))
        stems = {p.stem: sf.read(p, dtype="float32")[0][:n] for p in sorted((folder / "stems").glob("*.wav"))}
        notes = crop_notes(notes_from_csv(folder / "notes.csv"), 0.0, n / sr)
        if task == "piano":
            names = ["upper", "lower"]
            references = [sum(stems[p] for p in UPPER), sum(stems[p] for p in LOWER)]
            members = [UPPER, LOWER]
        else:
            names = sorted(stems)
            references = [stems[p] for p in names]
            members = [(p,) for p in names]
        loaded.append({"id": entry["id"], "mix": mix[:n], "references": np.stack(references), "names": names,
                       "members": members, "notes": notes, "sr": sr})
    return loaded


def piece_groups(piece: dict, notes: list) -> list[np.ndarray]:
    """Per source of ``piece`` (its ``members``: the parts of each), which of ``notes`` are its."""
    return [np.array([n.part in parts for n in notes]) for parts in piece["members"]]


def run_one(job: tuple) -> dict:
    """Separate one piece with one method at one warp; its scores and time."""
    import torch

    from mpe_ssl.data.score import warp_notes
    from mpe_ssl.metrics.separation import bss_eval
    from mpe_ssl.separate import SeparationSettings, separate_sources

    piece, method, warp, overrides, threads = job
    torch.set_num_threads(threads)
    if method == "ae_pretrained" and not overrides.get("pretrained"):
        raise SystemExit("ae_pretrained needs --pretrained CKPT")
    notes = warp_notes(piece["notes"], warp, seed=piece["seed"]) if warp else piece["notes"]
    groups = piece_groups(piece, notes)
    settings = SeparationSettings(**{**METHODS[method], **overrides})
    estimates = separate_sources(piece["mix"], notes, groups, settings)
    scores = bss_eval(piece["references"], estimates, piece["sr"], mixture=piece["mix"])
    return {"piece": piece["id"], "method": method, "warp": warp, "sources": piece["names"],
            "sdr": scores["sdr"].tolist(), "nsdr": scores["nsdr"].tolist(), "sdr_mixture": scores["sdr_mixture"].tolist(),
            "nsdr_mean": float(np.nanmean(scores["nsdr"])), "seconds": settings.report["seconds"]}


def stable_seed(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode()) % 2**31


def grid(args) -> None:
    rows = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        pieces = load_pieces(task, args.split, args.pieces, args.excerpt)
        for piece in pieces:
            piece["seed"] = stable_seed(piece["id"])
        overrides = {**json.loads(args.overrides), **({"pretrained": args.pretrained} if args.pretrained else {})}
        jobs = [(p, m, w, overrides if m == "ae_pretrained" else json.loads(args.overrides), args.threads)
                for w in args.warps for m in args.methods for p in pieces]
        started = time.perf_counter()
        with get_context("spawn").Pool(args.workers) as pool:
            for row in pool.imap_unordered(run_one, jobs):
                row["task"] = task
                rows.append(row)
                print(f"{task} {row['method']:>14} warp {row['warp']:.2f} {row['piece']:>12} "
                      f"NSDR {row['nsdr_mean']:6.2f} dB  {row['seconds']:5.1f} s", flush=True)
        print(f"{task}: {len(jobs)} runs in {time.perf_counter() - started:.0f} s", flush=True)
    tag = f"{args.split}{'_' + args.tag if args.tag else ''}"
    (out / f"results_{tag}.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    write_table(rows, out / f"table_{tag}.md", args)
    plot(rows, out / f"nsdr_{tag}.png")


def write_table(rows: list[dict], path: Path, args) -> None:
    lines = [f"Split `{args.split}`, {args.pieces} pieces, first {args.excerpt:g} s of each; NSDR in dB "
             "(mean over sources, then over pieces; ± std over pieces); time per piece on "
             f"{args.threads} thread(s).", ""]
    for task in sorted({r["task"] for r in rows}):
        lines += [f"### {task}", "", "| method | " + " | ".join(f"warp {w:g} s" for w in args.warps) + " | s/piece |",
                  "|---|" + "---|" * (len(args.warps) + 1)]
        for method in args.methods:
            cells, seconds = [], []
            for warp in args.warps:
                values = [r["nsdr_mean"] for r in rows if r["task"] == task and r["method"] == method and r["warp"] == warp]
                seconds += [r["seconds"] for r in rows if r["task"] == task and r["method"] == method and r["warp"] == warp]
                cells.append(f"{np.mean(values):.2f} ± {np.std(values):.2f}" if values else "-")
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {np.mean(seconds):.1f} |")
        lines.append("")
        if "nmf" in args.methods and len(args.methods) > 1:
            lines += lead_over_nmf(rows, task, args)
        pieces = sorted({r["piece"] for r in rows if r["task"] == task})
        lines += [f"Per piece, exact score (warp {args.warps[0]:g}):", "", "| piece | " + " | ".join(args.methods) + " |",
                  "|---|" + "---|" * len(args.methods)]
        for piece in pieces:
            cells = []
            for method in args.methods:
                match = [r["nsdr_mean"] for r in rows if r["task"] == task and r["piece"] == piece
                         and r["method"] == method and r["warp"] == args.warps[0]]
                cells.append(f"{match[0]:.2f}" if match else "-")
            lines.append(f"| {piece} | " + " | ".join(cells) + " |")
        lines.append("")
    path.write_text("\n".join(lines))
    print(path.read_text())


def lead_over_nmf(rows: list[dict], task: str, args) -> list[str]:
    """Table lines: each method's NSDR minus NMF's on the same piece and warp, mean ± std over
    pieces, and on how many pieces it is ahead."""
    lines = ["Lead over NMF (dB, same piece and warp; pieces ahead / pieces):", "",
             "| method | " + " | ".join(f"warp {w:g} s" for w in args.warps) + " |", "|---|" + "---|" * len(args.warps)]
    for method in args.methods:
        if method == "nmf":
            continue
        cells = []
        for warp in args.warps:
            nmf = {r["piece"]: r["nsdr_mean"] for r in rows if r["task"] == task and r["method"] == "nmf" and r["warp"] == warp}
            leads = [r["nsdr_mean"] - nmf[r["piece"]] for r in rows if r["task"] == task and r["method"] == method
                     and r["warp"] == warp and r["piece"] in nmf]
            cells.append(f"{np.mean(leads):+.2f} ± {np.std(leads):.2f} ({sum(x > 0 for x in leads)}/{len(leads)})"
                         if leads else "-")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines + [""]


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        methods = list(dict.fromkeys(r["method"] for r in rows if r["task"] == task))
        warps = sorted({r["warp"] for r in rows if r["task"] == task})
        for method in methods:
            means = [np.mean([r["nsdr_mean"] for r in rows if r["task"] == task and r["method"] == method and r["warp"] == w])
                     for w in warps]
            ax.plot(warps, means, marker="o", label=method)
        ax.set(title=task, xlabel="score warp (s, max displacement)", ylabel="NSDR (dB)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def speed(args) -> None:
    """Penalty objective per step: structured dropout first, vs the activity penalty alone, at
    each λ of ``--speed-lambdas`` (``speed.json``/``.png`` for λ = 1, else ``speed_lambda<λ>``)."""
    import mpe_ssl.separate as separate

    piece = load_pieces("piano", args.split, 1, args.excerpt)[0]
    _, _, V, _, L, _ = separate.score_setup(piece["mix"], piece["notes"], piece_groups(piece, piece["notes"]),
                                            separate.SeparationSettings())
    for weight in args.speed_lambdas:
        speed_at(args, piece, V, L, weight)


def speed_at(args, piece: dict, V, L, weight: float) -> None:
    """:func:`speed` at the activity weight λ = ``weight`` on ``piece``'s ``V`` and ``L``."""
    from lightning.pytorch import Callback

    import mpe_ssl.separate as separate

    curves = {}

    class Record(Callback):
        def __init__(self, curve):
            self.curve = curve

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.curve.append(float(trainer.callback_metrics["train/labelled/objective"]))

    for name, fraction, steps in (("dropout_first", 0.5, args.speed_steps), ("penalty_only", 0.0, args.speed_steps * args.speed_factor)):
        curve: list[float] = []
        settings = replace(separate.SeparationSettings(), iterations=steps, dropout_fraction=fraction,
                           activity_weight=weight)
        started = time.perf_counter()
        separate.fit_autoencoder(V, L, settings, callbacks=[Record(curve)], track_objective=True)
        curves[name] = {"objective": curve, "seconds": time.perf_counter() - started}
        print(f"λ {weight:g}, {name}: {steps} steps, final objective {curve[-1]:.4f}, "
              f"{curves[name]['seconds']:.0f} s", flush=True)
    target = curves["dropout_first"]["objective"][-1]
    reach = {name: next((i + 1 for i, v in enumerate(c["objective"]) if v <= target), None) for name, c in curves.items()}
    result = {"piece": piece["id"], "activity_weight": weight, "target": target, "steps_to_target": reach,
              "curves": {k: v["objective"] for k, v in curves.items()}}
    out = Path(args.out)
    stem = "speed" if weight == 1.0 else f"speed_lambda{weight:g}"
    (out / f"{stem}.json").write_text(json.dumps(result))
    print(json.dumps({"activity_weight": weight, "target": target, "steps_to_target": reach}))
    plot_speed(result, out / f"{stem}.png")


def plot_speed(result: dict, path: Path) -> None:
    """The objective curves of a speed.json (``--plot-speed`` redraws saved ones)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in result["curves"].items():
        ax.semilogy(np.arange(1, len(curve) + 1), curve, label=name)
    ax.axhline(result["target"], color="grey", ls=":", label="dropout-first final")
    weight = result.get("activity_weight", 1.0)
    ax.set(xlabel="step", ylabel="objective (2): KL + λ·activity outside L",
           title=f"{result['piece']} (piano), λ = {weight:g}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--pieces", type=int, default=8)
    parser.add_argument("--excerpt", type=float, default=30.0)
    parser.add_argument("--tasks", nargs="+", default=["piano", "ensemble"], choices=("piano", "ensemble"))
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS),
                        help="default: every method, ae_pretrained only with --pretrained")
    parser.add_argument("--warps", nargs="+", type=float, default=[0.0, 0.2, 0.5])
    parser.add_argument("--overrides", default="{}", help="JSON of SeparationSettings fields for every AE/NMF run")
    parser.add_argument("--pretrained", default=None, help="checkpoint of `mpe-ssl fit --config separation` for ae_pretrained")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--tag", default="")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--speed-steps", type=int, default=400)
    parser.add_argument("--speed-factor", type=int, default=5, help="penalty-only runs this many times longer")
    parser.add_argument("--speed-lambdas", nargs="+", type=float, default=[1.0], help="activity weights λ to compare at")
    parser.add_argument("--plot-speed", nargs="+", default=None, metavar="JSON", help="redraw saved speed JSONs")
    args = parser.parse_args()
    if args.methods is None:
        args.methods = [m for m in METHODS if m != "ae_pretrained" or args.pretrained]
    if "ae_pretrained" in args.methods and not args.pretrained:
        parser.error("--methods ae_pretrained needs --pretrained CKPT")
    if args.plot_speed:
        for path in map(Path, args.plot_speed):
            plot_speed(json.loads(path.read_text()), path.with_suffix(".png"))
        return
    if args.speed:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        speed(args)
    else:
        grid(args)


if __name__ == "__main__":
    main()
