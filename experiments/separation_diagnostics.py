"""Why the structured autoencoder separates poorly (docs/separation/README.md, "Further checks").

For test pieces of the piano task (first 30 s), fits the AE of a method of
``separation_experiments.py`` once per piece and reports:

- ``estimates``: NSDR of three ways to read the source magnitudes from the fitted model:
  ``f(L_s ⊙ h)``, the same minus ``f(0)`` (the default), and ``f(L ⊙ h) − f((L − L_s) ⊙ h)``;
- ``plain``: the same network as a plain autoencoder (every unit allowed: L all ones), its
  generalised KL per frame and the share of output bins that are zero on every frame;
- ``softplus``: the separation with a softplus output layer instead of the ReLU;
- ``nmf_start``: the AE started from score-informed NMF (P = 2 units per class as NMF's, a
  linear non-negative synthesis layer holding NMF's templates W, the analysis network first
  regressed on NMF's activations H), NSDR before and after the usual dropout/penalty fit.

Usage:
    python experiments/separation_diagnostics.py estimates --pieces 0 1
    python experiments/separation_diagnostics.py plain --pieces 1 [--overrides '{"nonnegative_synthesis": false}']
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import separation_experiments as experiments  # noqa: E402

import mpe_ssl.separate as separate  # noqa: E402
from mpe_ssl.models import harmonic_templates, score_informed_nmf  # noqa: E402
import mpe_ssl.systems.score_informed as score_informed  # noqa: E402
from mpe_ssl.data.score import UnitLayout  # noqa: E402
from mpe_ssl.losses import generalized_kl  # noqa: E402
from mpe_ssl.metrics.separation import bss_eval  # noqa: E402
from mpe_ssl.models import StructuredAutoencoder  # noqa: E402


class SoftplusOutput(StructuredAutoencoder):
    """The structured autoencoder with a softplus output layer (never a dead output bin)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.synthesis[-1] = torch.nn.Softplus()


def nsdr(piece: dict, sources: np.ndarray) -> float:
    return float(np.nanmean(bss_eval(piece["references"], sources, piece["sr"], mixture=piece["mix"])["nsdr"]))


def nmf_started_network(V: torch.Tensor, L: torch.Tensor, layout: UnitLayout, settings, stft,
                        steps: int = 300) -> StructuredAutoencoder:
    """A structured AE whose linear synthesis layer is NMF's ``W`` and whose analysis network
    was regressed (Adam, ``steps``) on NMF's ``H`` of the mean-normalised ``V``."""
    torch.manual_seed(settings.seed)
    W0 = harmonic_templates(layout.unit_pitches(), layout.unit_is_onset(), stft.n_fft, stft.sample_rate,
                            seed=settings.seed)
    W, H = score_informed_nmf(V, L, W0, settings.nmf_iterations, seed=settings.seed)
    H = H / V.mean()  # the AE models V / mean(V)
    network = StructuredAutoencoder(V.shape[0], L.shape[0], hidden=settings.hidden, synthesis_layers=1,
                                    context=settings.context, nonnegative_synthesis=True,
                                    input_compression=settings.input_compression)
    with torch.no_grad():
        network.synthesis[0].weight.copy_(W)
        network.synthesis[0].bias.zero_()
    optimizer = torch.optim.Adam(network.analysis.parameters(), lr=1e-3)
    Vn = V / V.mean()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(torch.log1p(network.encode(Vn[None])[0]), torch.log1p(H))
        loss.backward()
        optimizer.step()
    return network


def diagnose(mode: str, piece: dict, settings: separate.SeparationSettings) -> dict:
    notes = piece["notes"]
    groups = experiments.piece_groups(piece, notes)
    if mode == "softplus":
        separate.StructuredAutoencoder = SoftplusOutput
        return {"nsdr": nsdr(piece, separate.separate_sources(piece["mix"], notes, groups, settings)),
                "final_loss": settings.report["final_loss"]}
    stft, mixture, V, layout, L, per_source = separate.score_setup(piece["mix"], notes, groups, settings)
    if mode == "plain":
        L = torch.ones_like(L)
    start = None
    if mode == "nmf_start":
        network = nmf_started_network(V, L, layout, settings, stft)
        with torch.no_grad():
            r = network.encode((V / V.mean())[None])
            started = torch.cat([network.decode(r * s) for s in per_source])
        before = nsdr(piece, separate.masked_sources(mixture, started, stft, settings.mask_power).numpy())
        start = SimpleNamespace(network=network)
    system = separate.fit_autoencoder(V, L, settings, start)
    with torch.no_grad():
        Vn = system.spectrogram({"features": V.unsqueeze(0)})
        representation = system.network.encode(Vn)
        full = system.network.decode(representation * L)
        result = {"divergence_per_frame": float(generalized_kl(Vn, full)),
                  "dead_output_bins": float((full.amax(dim=-1) == 0).float().mean())}
        if mode == "plain":
            return result
        if mode == "nmf_start":
            result["nsdr_started"] = before
        f = system.network.decode
        masked = torch.cat([f(representation * s) for s in per_source])
        ways = {"masked": masked,
                "masked_minus_f0": (masked - f(torch.zeros_like(representation))).clamp_min(0.0),
                "removal": torch.cat([(full - f(representation * (L * (1 - s)))).clamp_min(0.0) for s in per_source])}
    for name, estimates in ways.items():
        result[f"nsdr_{name}"] = nsdr(piece, separate.masked_sources(mixture, estimates, stft, settings.mask_power).numpy())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("estimates", "plain", "softplus", "nmf_start"))
    parser.add_argument("--pieces", nargs="+", type=int, default=[0, 1], help="indices among the 8 test pieces")
    parser.add_argument("--method", default="ae_nonneg_ctx", choices=[m for m in experiments.METHODS if m.startswith("ae")])
    parser.add_argument("--overrides", default="{}", help="JSON of SeparationSettings fields")
    parser.add_argument("--eps", type=float, default=None,
                        help="the ε of the generalised KL that the AE is trained on (default: the library's, 1e-8)")
    parser.add_argument("--raw", action="store_true",
                        help="train on the raw |STFT| (as the paper) instead of V divided by its mean")
    args = parser.parse_args()
    if args.raw:
        separate.ScoreInformedAE = functools.partial(score_informed.ScoreInformedAE, normalize=False)
    if args.eps is not None:  # V is normalised to mean 1: ε = 1e-8 makes -V/(V̂+ε) huge where V̂ is near 0
        score_informed.generalized_kl = functools.partial(generalized_kl, eps=args.eps)
    torch.set_num_threads(1)
    pieces = experiments.load_pieces("piano", "test", 8, 30.0)
    for index in args.pieces:
        settings = separate.SeparationSettings(**{**experiments.METHODS[args.method], **json.loads(args.overrides)})
        print(json.dumps({"piece": pieces[index]["id"], "mode": args.mode, **diagnose(args.mode, pieces[index], settings)}),
              flush=True)


if __name__ == "__main__":
    main()
