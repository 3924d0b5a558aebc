"""The faithful SS-MPE experiment (issue 12): closed conditions, the SS share of the batch, remedies.

Every condition is an edit of ``experiments/ssmpe_faithful.yaml`` (the reference's protocol on
detuned chorales, with out-of-domain self-supervision-only audio) fitted from scratch:

- ``closed/<name>``: labelled data only (the paper's Table 1): ``supervised``, ``+timbre``,
  ``+percussion``, ``+geometric``, ``+all``; the SS-domain validation pieces are watched, never
  trained on, so ``closed/supervised`` is "supervised alone on that domain";
- ``share/s<K>``: all three self-supervised terms, K self-supervision-only samples per batch
  beside the labelled ones (``--labelled-batch``, 8 as in the paper; the CPU runs use 4) (the
  paper: K in {2, 4, 8, 16});
- ``remedy/<name>``: ``share/s<K>`` (``--remedy-share``; ``--share-in-name`` names it
  ``remedy/<name>-s<K>``) plus one collapse remedy:
  ``stopgrad`` (detached targets), ``ema`` (an EMA teacher's targets), ``ema-warmup`` (its
  decay ramped up as in the mean teacher), ``confidence`` (targets counted only where near 0
  or 1), ``ema+confidence``, ``intl`` (IterNorm whitening
  + trace loss on the SS-only latents), ``energy`` (energy + sparsity terms on the SS-only
  samples, rescaled each step to the supervised term's magnitude), ``stopgrad+ss-x4``
  and ``stopgrad+ss-x8`` (stop-gradient, the view terms on the SS-only samples weighted 4x, 8x),
  ``stopgrad+ss-x4-late``, ``stopgrad+ss-x8-late`` (those weights 1 until step 750, reached at 1000),
  ``stopgrad+ss-x4-escape`` (the 4x ramp over the 250 steps after the measured escape from blank);
- ``oracle/supervised``: not self-supervision but its ceiling at this scale: the SS-domain
  stream (``--remedy-share`` per batch) trained *with* its labels, supervised loss only; how
  close the two domains' F1 can come when the SS domain is labelled too.

Each condition fits in its own folder ``runs/ssmpe_faithful/<condition>`` (resumable: a rerun
continues from its newest ``version_N/last.ckpt``); ``--parallel N`` runs N conditions at once (e.g. on a GPU,
or one per CPU core with ``--threads 1``). The summary (table + curves) goes to
``docs/ssmpe/faithful/`` from the runs' ``metrics.csv``; its ``results.json`` keeps each condition's row
and curves for later checkouts, whose ``runs/`` starts empty.

Usage:
    python experiments/ssmpe_faithful.py --groups closed share remedy --steps 1500 [--complexity 2]
    python experiments/ssmpe_faithful.py --summarise-only
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from mpe_ssl.atomic import atomic_write
from mpe_ssl.configs import write_outputs_to

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "experiments" / "ssmpe_faithful.yaml"
RUNS = ROOT / "runs" / "ssmpe_faithful"
DOCS = ROOT / "docs" / "ssmpe" / "faithful"
GROUPS = ["closed", "share", "remedy", "oracle"]
SS_TERMS = {"timbre": 1.0, "percussion": 1.0, "geometric": 1.0}
REMEDIES = {
    "stopgrad": {"stop_gradient": True},
    "ema": {"target_network": "ema", "ema_decay": 0.99},
    "ema-warmup": {"target_network": "ema", "ema_decay": 0.99, "ema_warmup": True},
    "confidence": {"target_confidence": 0.8},
    "ema+confidence": {"target_network": "ema", "ema_decay": 0.99, "target_confidence": 0.8},
    "intl": {"weights": {"intl": 1.0}},  # on the SS-only stream's latents (intl_streams' default)
    "energy": {"weights": {"energy": 1.0, "sparsity": 0.1}, "balanced_terms": ["energy", "sparsity"]},
    # ours: stop-gradient, and the view terms on the SS-only samples 4x (8x) as heavy as on the labelled
    "stopgrad+ss-x4": {"stop_gradient": True, "stream_weights": {"unlabelled": 4.0}},
    "stopgrad+ss-x8": {"stop_gradient": True, "stream_weights": {"unlabelled": 8.0}},
    # ours: the same weights reached only after the model has left the blank start (stopgrad
    # leaves it between steps 500 and 750): 1 until step 750, rising to 4x (8x) at step 1000
    "stopgrad+ss-x4-late": {"stop_gradient": True, "stream_weights": {"unlabelled": 4.0}, "stream_weight_ramp": [750, 1000]},
    "stopgrad+ss-x8-late": {"stop_gradient": True, "stream_weights": {"unlabelled": 8.0}, "stream_weight_ramp": [750, 1000]},
    # ours: the 4x ramp keyed to the measured escape instead of fixed steps (it starts at the
    # first step with fewer than half of the labelled voiced frames blank, 4x 250 steps later)
    "stopgrad+ss-x4-escape": {"stop_gradient": True, "stream_weights": {"unlabelled": 4.0},
                              "stream_weight_ramp": [0, 250], "stream_weight_ramp_from_escape": 0.5},
}


def conditions(
    groups: list[str], shares: list[int], remedy_share: int, remedies: list[str], share_in_name: bool = False
) -> dict[str, dict]:
    """name -> {"model": init_args to set, "share": SS-only samples per batch (0: none)}.

    ``share_in_name`` names the remedies ``remedy/<name>-s<K>``, to run one remedy at several shares.
    """
    grid: dict[str, dict] = {}
    if "closed" in groups:
        grid["closed/supervised"] = {"model": {"weights": {"supervised": 1.0}}, "share": 0}
        for term in SS_TERMS:
            grid[f"closed/+{term}"] = {"model": {"weights": {"supervised": 1.0, term: 1.0}}, "share": 0}
        grid["closed/+all"] = {"model": {"weights": {"supervised": 1.0, **SS_TERMS}}, "share": 0}
    if "share" in groups:
        for share in shares:
            grid[f"share/s{share}"] = {"model": {"weights": {"supervised": 1.0, **SS_TERMS}}, "share": share}
    if "remedy" in groups:
        for name in remedies:
            remedy = copy.deepcopy(REMEDIES[name])
            weights = {"supervised": 1.0, **SS_TERMS, **remedy.pop("weights", {})}
            suffix = f"-s{remedy_share}" if share_in_name else ""
            grid[f"remedy/{name}{suffix}"] = {"model": {"weights": weights, **remedy}, "share": remedy_share}
    if "oracle" in groups:
        grid["oracle/supervised"] = {"model": {"weights": {"supervised": 1.0}}, "share": remedy_share, "ss_kind": "labelled"}
    return grid


def make_config(name: str, condition: dict, args: argparse.Namespace, runs: Path | None = None) -> Path:
    """Write ``<runs>/<name>/config.yaml`` (default: ``RUNS``): the base config with the condition's edits."""
    config = yaml.safe_load(BASE.read_text())
    out = (runs or RUNS) / name
    trainer = config["trainer"]
    trainer.update(max_steps=args.steps, val_check_interval=args.val_every)
    write_outputs_to(config, out)
    model = config["model"]["init_args"]
    model.update(copy.deepcopy(condition["model"]))
    model["network"]["init_args"]["model_complexity"] = args.complexity
    data = config["data"]["init_args"]
    data.update(steps_per_epoch=args.steps, num_workers=args.workers)
    if args.excerpt:  # the training excerpts (the time shift stays a quarter of them)
        data["excerpt_seconds"] = args.excerpt
        data["train_streams"][1]["dataset"]["init_args"]["excerpt_seconds"] = args.excerpt
    for stream in data["train_streams"][1:] + data["val_streams"][1:] + data["test_streams"][1:]:
        stream["dataset"]["init_args"]["render_workers"] = args.render_workers
    labelled, ssdomain = data["train_streams"]
    labelled["batch_size"] = args.labelled_batch
    ssdomain["batch_size"] = condition["share"]
    ssdomain["kind"] = condition.get("ss_kind", ssdomain["kind"])
    data["train_streams"] = [labelled] + ([ssdomain] if condition["share"] else [])
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def command(name: str, condition: dict, args: argparse.Namespace) -> list[str]:
    """The ``mpe-ssl fit`` command of a condition, resuming from its ``last.ckpt`` when there."""
    config = make_config(name, condition, args)
    # each fit writes its checkpoints under the next free version_N: resume from the newest
    lasts = sorted(config.parent.glob("version_*/last.ckpt"), key=lambda p: int(p.parent.name[8:]))
    resume = ["--ckpt_path", str(lasts[-1])] if lasts else []
    limit = ["--trainer.max_time", invocation_limit(args.max_time, lasts[-1] if lasts else None)] if args.max_time else []
    return [sys.executable, "-m", "mpe_ssl.cli", "fit", "--config", str(config), *resume, *limit, *args.cli_args.split()]


def trained_seconds(checkpoint: Path) -> float:
    """Training seconds that Lightning's ``Timer`` had counted when ``checkpoint`` was saved (0 if none)."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    timer = state.get("callbacks", {}).get("Timer", {})
    return float(timer.get("time_elapsed", {}).get("train", 0.0))


def invocation_limit(max_time: str, checkpoint: Path | None) -> str:
    """``--trainer.max_time`` for this invocation: ``max_time`` (DD:HH:MM:SS) more than the resumed
    checkpoint had trained. Lightning restores its ``Timer``'s count with the checkpoint, so the plain
    value would end a resumed fit at once."""
    days, hours, minutes, seconds = (int(x) for x in max_time.split(":"))
    total = int(((days * 24 + hours) * 60 + minutes) * 60 + seconds + (trained_seconds(checkpoint) if checkpoint else 0))
    return f"{total // 86400:02d}:{total % 86400 // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def add_wall_time(run: Path, seconds: float, returncode: int) -> None:
    """Add an invocation's wall time to ``run/time.json`` (a resumed condition's total is every
    invocation's sum)."""
    path = run / "time.json"
    before = json.loads(path.read_text()) if path.exists() else {"seconds": 0.0, "invocations": 0}
    total = {"seconds": before["seconds"] + seconds, "returncode": returncode, "invocations": before.get("invocations", 1) + 1}
    path.write_text(json.dumps(total))


def prepare(args: argparse.Namespace) -> None:
    """Render every dataset the conditions read (labelled chorales, the SS domain's three splits)
    once, before conditions start side by side."""
    from mpe_ssl.cli import lightning_cli

    config = make_config("share/s16", conditions(["share"], [16], 16, [])["share/s16"], args)
    cli = lightning_cli(["--config", str(config)], run=False)  # the SS-domain datasets render when built
    datamodule = cli.datamodule  # the labelled chorales with as many processes as the SS domain's
    datamodule.render_config = dataclasses.replace(datamodule.render_config, workers=args.render_workers)
    datamodule.prepare_data()


def run_all(grid: dict[str, dict], args: argparse.Namespace) -> None:
    """Fit every condition, ``args.parallel`` at a time; wall times added up in ``<run>/time.json``."""
    env = {**os.environ}
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    pending, running = list(grid.items()), []
    while pending or running:
        while pending and len(running) < args.parallel:
            name, condition = pending.pop(0)
            RUNS.mkdir(parents=True, exist_ok=True)
            log = open(RUNS / f"{name.replace('/', '_')}.log", "a")
            process = subprocess.Popen(command(name, condition, args), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            running.append((name, process, log, time.time()))
            print(f"started {name}", flush=True)
        time.sleep(5)
        for item in list(running):
            name, process, log, start = item
            if process.poll() is not None:
                running.remove(item)
                log.close()
                seconds = time.time() - start
                add_wall_time(RUNS / name, seconds, process.returncode)
                print(f"finished {name}: rc {process.returncode}, {seconds:.0f} s", flush=True)


def read_curves(name: str) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(step, value)]}`` of every validation of the condition (all its csv versions)."""
    curves: dict[str, dict[int, float]] = {}
    for path in sorted((RUNS / name / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:])):
        for row in csv.DictReader(open(path)):
            for key, value in row.items():
                if key.startswith("val/") and value:
                    curves.setdefault(key, {})[int(row["step"])] = float(value)
    return {key: sorted(points.items()) for key, points in curves.items()}


def wall_cell(seconds: float) -> str:
    """A run's wall time for the table: ``running`` until its first invocation has ended."""
    return "running" if math.isnan(seconds) else f"{seconds:.0f}"


def grid_cell(on_grid: dict) -> str:
    """``labelled / ssdomain`` on-grid fractions of :func:`grid_probe` (``-`` when not probed)."""
    return " / ".join(f"{on_grid[s]:.2f}" for s in ("labelled", "ssdomain") if s in on_grid) or "-"


def conditions_run() -> list[str]:
    """Every condition with a CSV log under ``RUNS`` (whichever invocation ran it), in
    :func:`grid_order`."""
    return grid_order({p.parent.relative_to(RUNS).as_posix() for p in RUNS.glob("*/*/csv")})


def grid_order(names) -> list[str]:
    """``names`` in the grid's order (closed, share, remedy, oracle), then any other name sorted."""
    found = set(names)
    order = [n for n in conditions(GROUPS, [2, 4, 8, 16], 16, list(REMEDIES)) if n in found]
    return order + sorted(found - set(order))


def ss_share(name: str) -> int | None:
    """SS-only samples per training batch of condition ``name``, read from its ``config.yaml``
    (0: no SS-only stream; None: no config)."""
    config = RUNS / name / "config.yaml"
    if not config.exists():
        return None
    streams = yaml.safe_load(config.read_text())["data"]["init_args"]["train_streams"]
    return sum(stream["batch_size"] for stream in streams[1:])


def summarise(names: list[str]) -> None:
    """Table (markdown + json) and F1 curves of every condition run so far, to ``docs/ssmpe/faithful``.

    ``runs/`` does not outlive a checkout, so ``results.json`` is the record: each row keeps its
    validation curves (``curves``: metric -> [[step, value]]), a condition re-run here replaces
    its row, and the rows of conditions with no run folder here are kept as they were. The
    figure draws every row that has curves (rows summarised before curves were stored have none).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    DOCS.mkdir(parents=True, exist_ok=True)
    record = DOCS / "results.json"
    results = json.loads(record.read_text()) if record.exists() else {}
    for name in names:
        c = read_curves(name)
        if not c.get("val/labelled/f1"):  # not validated yet: an earlier row stays
            continue
        lab, ood = c["val/labelled/f1"], dict(c.get("val/ssdomain/f1", []))
        best_step, best_f1 = max(lab, key=lambda p: p[1])
        timing, probe = RUNS / name / "time.json", RUNS / name / "grid_probe.json"
        on_grid = json.loads(probe.read_text()) if probe.exists() else {}
        results[name] = {
            "ss_share": ss_share(name),
            "steps": lab[-1][0] + 1,
            "best_labelled_f1": best_f1, "best_step": best_step,
            "ssdomain_f1_at_best": ood.get(best_step, float("nan")),
            "final_labelled_f1": lab[-1][1], "final_ssdomain_f1": c.get("val/ssdomain/f1", [(0, float("nan"))])[-1][1],
            "final_ssdomain_blank": c.get("val/ssdomain/blank_fraction", [(0, float("nan"))])[-1][1],
            "wall_s": json.loads(timing.read_text())["seconds"] if timing.exists() else float("nan"),
            "on_grid_peaks": {stream: v["peaks"] for stream, v in on_grid.items()},
            "curves": {key: [list(point) for point in points] for key, points in c.items()},
        }
    results = {name: results[name] for name in grid_order(results)}
    curves = {name: r["curves"] for name, r in results.items() if r.get("curves")}
    # the only record once runs/ is gone: an interrupted summary leaves the old one whole
    atomic_write(record, lambda tmp: Path(tmp).write_text(json.dumps(results, indent=2)))
    lines = ["| condition | SS share | steps | best labelled val F1 (step) | SS-domain F1 there | final labelled F1 "
             "| final SS-domain F1 | SS-domain blank frames | peaks on semitone bins (labelled / SS domain) | wall (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        share = "-" if r.get("ss_share") is None else r["ss_share"]  # rows from before 2026-11-28 lack it
        lines.append(f"| {name} | {share} | {r['steps']} | {r['best_labelled_f1']:.3f} ({r['best_step']}) | {r['ssdomain_f1_at_best']:.3f} "
                     f"| {r['final_labelled_f1']:.3f} | {r['final_ssdomain_f1']:.3f} | {r['final_ssdomain_blank']:.2f} "
                     f"| {grid_cell(r['on_grid_peaks'])} | {wall_cell(r['wall_s'])} |")
    (DOCS / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if not curves:
        return
    figure, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for name, c in curves.items():
        for axis, key in zip(axes, ("val/labelled/f1", "val/ssdomain/f1")):
            if c.get(key):
                axis.plot(*zip(*c[key]), marker=".", label=name)
    axes[0].set(title="F1, labelled validation pieces", xlabel="step", ylabel="F1")
    axes[1].set(title="F1, SS-domain validation pieces", xlabel="step")
    axes[1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(DOCS / "curves.png", dpi=90)
    plt.close(figure)


def on_grid_fraction(cells: "torch.Tensor") -> float:
    """Fraction of the active cells of a ``(bins, frames)`` bool map whose bin is a semitone's
    (bin ``k`` is MIDI ``21 + k / 5``: a multiple of 5); 0.2 for pitches spread evenly
    between semitones, 1.0 for a model locked to the semitone grid."""
    bins = cells.nonzero()[:, 0]
    return float((bins % 5 == 0).float().mean()) if len(bins) else float("nan")


def grid_probe(name: str, threshold: float = 0.5) -> dict:
    """Is the model of condition ``name`` (its ``best.ckpt``) locked to the semitone grid? Per
    validation stream: the on-grid fraction of its output peaks (local maxima along pitch at
    or above ``threshold``) and of the true pitches' nearest bins (issue 12's first cause: a
    model trained on in-tune chorales put 99-100 % of its peaks on semitone bins)."""
    import torch

    from mpe_ssl.cli import lightning_cli
    from mpe_ssl.systems.system import load_system
    from mpe_ssl.transcribe import transcribe_audio

    config = RUNS / name / "config.yaml"
    checkpoint = sorted((RUNS / name).glob("version_*/best.ckpt"), key=lambda p: int(p.parent.name[8:]))[-1]
    system = load_system(str(checkpoint))
    datamodule = lightning_cli(["--config", str(config)], run=False).datamodule
    datamodule.setup("validate")
    result = {}
    for stream, dataset in zip(datamodule.val_streams, datamodule.datasets["val"]):
        peaks, truth = [], []
        for i in range(len(dataset)):
            item = dataset[i]
            with torch.inference_mode():
                salience = transcribe_audio(system, item["audio"].numpy())
            padded = torch.nn.functional.pad(salience, (0, 0, 1, 1))
            peaks.append((salience >= threshold) & (salience >= padded[:-2]) & (salience > padded[2:]))
            truth.append(item["targets"][:, : salience.shape[1]] > 0)
        result[stream] = {"peaks": on_grid_fraction(torch.cat(peaks, 1)), "truth": on_grid_fraction(torch.cat(truth, 1))}
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="+", default=["closed", "share", "remedy"], choices=GROUPS)
    parser.add_argument("--shares", nargs="+", type=int, default=[2, 4, 8, 16])
    parser.add_argument("--remedies", nargs="+", default=list(REMEDIES), choices=list(REMEDIES))
    parser.add_argument("--remedy-share", type=int, default=16)
    parser.add_argument(
        "--share-in-name", action="store_true", help="name the remedies remedy/<name>-s<K> (one remedy at several shares)"
    )
    parser.add_argument("--only", nargs="+", default=None, help="run only these condition names")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--complexity", type=int, default=3)
    parser.add_argument("--labelled-batch", type=int, default=8)
    parser.add_argument("--excerpt", type=float, default=None, help="training excerpt seconds (default: the config's 4)")
    parser.add_argument("--tag", default=None, help="keep these runs apart: runs/ssmpe_faithful/TAG, docs/ssmpe/faithful/TAG")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers per run")
    parser.add_argument("--parallel", type=int, default=1, help="conditions fitted at once")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per run (OMP_NUM_THREADS)")
    parser.add_argument("--render-workers", type=int, default=1, help="processes of the SS domain's renders")
    parser.add_argument("--max-time", default=None, help="stop each fit after this long (DD:HH:MM:SS); rerun to go on")
    parser.add_argument("--cli-args", default="", help="more mpe-ssl fit arguments, e.g. '--trainer.precision bf16-mixed'")
    parser.add_argument("--prepare-only", action="store_true", help="render the data and stop")
    parser.add_argument("--summarise-only", action="store_true")
    parser.add_argument("--grid-probe", action="store_true", help="print the on-grid fraction of each condition's peaks")
    return parser


def main(argv: list[str] | None = None) -> None:
    global RUNS, DOCS
    args = build_parser().parse_args(argv)
    if args.tag:
        RUNS, DOCS = RUNS / args.tag, DOCS / args.tag
    grid = conditions(args.groups, args.shares, args.remedy_share, args.remedies, args.share_in_name)
    if args.only:
        grid = {name: c for name, c in grid.items() if name in args.only}
    if args.grid_probe:
        for name in grid:
            if list((RUNS / name).glob("version_*/best.ckpt")):
                probe = grid_probe(name)
                (RUNS / name / "grid_probe.json").write_text(json.dumps(probe))
                print(name, json.dumps(probe), flush=True)
        return
    if not args.summarise_only:
        prepare(args)
        if args.prepare_only:
            return
        run_all(grid, args)
    summarise(conditions_run())  # the whole tag's table, not only this invocation's groups


if __name__ == "__main__":
    main()
