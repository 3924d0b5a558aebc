"""Which objective pulls the model toward blank predictions, and how hard: one-step probes.

For each loss term L alone (and with the self-supervised targets detached or not), at the
weights of a trained checkpoint and on one fixed batch of labelled + unlabelled excerpts:

    g = grad_theta L                                   (all autoencoder parameters)
    theta' = theta - eps * g / ||g||                   (a unit step along the term's descent)
    pull(stream) = mean sigmoid(F_theta'(X_s)) - mean sigmoid(F_theta(X_s))

on each stream's excerpts X_s (untransformed). A negative pull means one step of that term
alone lowers the predicted salience there, i.e. heads for the blank solution; ``||g||`` says how
hard the term pushes in a training step (before the optimiser's normalisation). Writes a
markdown table to ``docs/ssmpe/pull.md`` and the numbers to ``docs/ssmpe/pull.json``.

Usage:
    python experiments/ssmpe_pull.py --checkpoint runs/demo/best.ckpt --config runs/ssmpe/degeneration/n64-grid/config.yaml
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch
import yaml

from mpe_ssl.cli import lightning_cli
from mpe_ssl.data.drums import DrumBank
from mpe_ssl.systems import SelfSupervisedMPE, load_system

ROOT = Path(__file__).resolve().parents[1]
PROBED = {
    "supervised": {"supervised": 1.0},
    "timbre": {"timbre": 1.0},
    "percussion": {"percussion": 1.0},
    "geometric": {"geometric": 1.0},
    "energy (EG)": {"energy": 1.0},
    "sparsity": {"sparsity": 1.0},
    "intl": {"intl": 1.0},
}
#: the terms whose target is the model's own prediction, i.e. what stop-gradient detaches
DETACHABLE = ("timbre", "percussion", "geometric")


def one_batch(config: Path) -> tuple[dict, DrumBank | None]:
    """The first training batch of the config's data module, ``{stream: batch}``, and its drums.

    A run's saved config.yaml also holds ``ckpt_path`` (a ``fit`` option), dropped here.
    """
    settings = yaml.safe_load(config.read_text())
    settings.pop("ckpt_path", None)
    data = lightning_cli(["--config", yaml.safe_dump(settings)], run=False).datamodule
    data.prepare_data()
    data.setup("fit")
    return {name: next(iter(loader)) for name, loader in data.train_dataloader().items()}, data.drum_bank


@torch.no_grad()
def mean_salience(system: SelfSupervisedMPE, batch: dict) -> dict[str, float]:
    return {name: float(system.salience(part["audio"]).mean()) for name, part in batch.items()}


def probe(checkpoint: str, batch: dict, drums: DrumBank | None, weights: dict, stop_gradient: bool, eps: float,
          seed: int, **options) -> dict:
    trained = load_system(checkpoint)
    system = SelfSupervisedMPE(weights=weights, stop_gradient=stop_gradient, frontend=trained.frontend,
                               network=trained.network, activation_checkpointing=True, **options)
    system.drum_bank = drums
    system.train()
    before = mean_salience(system, batch)
    torch.manual_seed(seed)
    loss = system.training_step(batch, 0)
    params = [p for p in system.network.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= eps * g / norm.clamp(min=1e-12)
    after = mean_salience(system, batch)
    return {"loss": float(loss), "grad_norm": float(norm), "before": before,
            "pull": {s: after[s] - before[s] for s in before}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--config", required=True, help="a two-stream experiment config (its data module)")
    parser.add_argument("--eps", type=float, default=0.05, help="length of the unit step in parameter space")
    parser.add_argument("--out", default=str(ROOT / "docs" / "ssmpe"))
    parser.add_argument("--terms", nargs="+", default=list(PROBED), help="probe only these terms")
    parser.add_argument("--option", nargs="*", default=[], metavar="KEY=VALUE",
                        help="SelfSupervisedMPE arguments, e.g. max_shift_frames=9 max_stretch=1.0")
    parser.add_argument("--tag", default="", help="suffix of the output files")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*self.log.*")
    options = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.option)}
    batch, drums = one_batch(Path(args.config))
    results = {}
    for label, weights in PROBED.items():
        if label not in args.terms:
            continue
        for stop in (False, True):
            if stop and label not in DETACHABLE:
                continue
            key = f"{label}{' (stop-gradient)' if stop else ''}"
            results[key] = probe(args.checkpoint, batch, drums, weights, stop, args.eps, seed=0, **options)
            print(key, json.dumps(results[key]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"pull{args.tag}.json").write_text(json.dumps(results, indent=2))
    streams = list(next(iter(results.values()))["pull"])
    lines = ["| term | loss | grad norm | " + " | ".join(f"pull on {s} (x1e-3)" for s in streams) + " |",
             "|---|---|---|" + "---|" * len(streams)]
    for key, r in results.items():
        lines.append(f"| {key} | {r['loss']:.3g} | {r['grad_norm']:.3g} | "
                     + " | ".join(f"{1e3 * r['pull'][s]:+.2f}" for s in streams) + " |")
    before = next(iter(results.values()))["before"]
    lines.append("")
    lines.append("Mean salience before the step: " + ", ".join(f"{s} {v:.4f}" for s, v in before.items()) + ".")
    (out / f"pull{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
