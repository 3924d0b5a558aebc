"""Why the structured autoencoder separates poorly (docs/separation/README.md, "Further checks").

For test pieces of the piano task (first 30 s), fits the AE of a method of
``separation_experiments.py`` once per piece and reports:

- ``estimates``: NSDR of three ways to read the source magnitudes from the fitted model:
  ``f(L_s ⊙ h)``, the same minus ``f(0)`` (the default), and ``f(L ⊙ h) − f((L − L_s) ⊙ h)``;
- ``plain``: the same network as a plain autoencoder (every unit allowed: L all ones), its
  generalised KL per frame and the share of output bins that are zero on every frame;
- ``softplus``: the separation with a softplus output layer instead of the ReLU;
- ``labels``: no audio model, the reference of the others: each source's share of a frame in
  proportion to the units its notes may use there (a mask constant over frequency), and the
  divergence of the mean spectrum (times each frame's gain) from ``V``;
- ``units``: whether the fitted units are pitch-specific (:func:`unit_specificity`), against
  score-informed NMF's activations;
- ``method``: a method of ``separation_experiments.py`` as ``mpe-ssl separate`` runs it
  (``--concat K``: K pieces end to end, as long as the paper's recordings);
- ``template_start``: a harmonic prior in ``f``: a single linear non-negative synthesis layer
  started from NMF's initial harmonic templates ``W0``, ``h`` from scratch; unit specificity,
  divergence and NSDR after the usual fit;
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
import torch.nn.utils.parametrize  # noqa: F401

sys.path.insert(0, str(Path(__file__).parent))
import separation_experiments as experiments  # noqa: E402

import mpe_ssl.separate as separate  # noqa: E402
from mpe_ssl.models import score_informed_nmf  # noqa: E402
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


#: nmf_start, template_start: keep the synthesis layer fixed during the fit (--freeze-synthesis)
FREEZE_SYNTHESIS = False
#: template_start: train the templates only where W0 is non-zero (--template-support)
TEMPLATE_SUPPORT = False


class BinGain(StructuredAutoencoder):
    """The structured autoencoder whose output is multiplied by a fixed per-bin gain: each bin's
    mean magnitude over the piece (:data:`BIN_GAIN`, set from ``V`` before the fit), so that
    ``f`` models each bin relative to its own level (V's bins span about three orders of
    magnitude, which Adam's fixed-size steps reach slowly)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("bin_gain", BIN_GAIN.clone())

    def decode(self, representation: torch.Tensor) -> torch.Tensor:
        return super().decode(representation) * self.bin_gain[None, :, None]


class SoftplusRepresentation(StructuredAutoencoder):
    """The structured autoencoder with a softplus representation instead of the ReLU: no unit
    can die (a ReLU unit whose input is negative on every frame gets no gradient again)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.analysis[-1] = torch.nn.Softplus()


#: BinGain's gain for the piece being fitted: (bins,)
BIN_GAIN = torch.ones(1)


class _Exp(torch.nn.Module):
    """A weight as ``exp(θ)``: non-negative, and Adam's steps on θ change it by a factor (about
    ``e^±lr``) rather than by ``±lr``, whatever its scale."""

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return theta.exp()

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.clamp_min(1e-12).log()


class ExpSynthesis(StructuredAutoencoder):
    """The structured autoencoder with ``f``'s weight matrices parametrised as ``exp(θ)`` instead
    of clipped to >= 0 after each step (``nonnegative_synthesis`` is taken as asked for)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["nonnegative_synthesis"] = True  # its non-negative init
        super().__init__(*args, **kwargs)
        self.nonnegative_synthesis = False  # no clipping: exp(θ) is >= 0
        for layer in self.synthesis:
            if isinstance(layer, torch.nn.Linear):
                torch.nn.utils.parametrize.register_parametrization(layer, "weight", _Exp())


def nsdr(piece: dict, sources: np.ndarray) -> float:
    return float(np.nanmean(bss_eval(piece["references"], sources, piece["sr"], mixture=piece["mix"])["nsdr"]))


def template_network(V: torch.Tensor, L: torch.Tensor, settings, W: torch.Tensor) -> StructuredAutoencoder:
    """A structured AE (``separate.StructuredAutoencoder``, as patched by the options) whose
    synthesis network is one linear non-negative layer holding the templates ``W (bins, units)``,
    no bias; with ``--freeze-synthesis`` that layer does not train."""
    network = separate.StructuredAutoencoder(V.shape[0], L.shape[0], hidden=settings.hidden, synthesis_layers=1,
                                             context=settings.context, nonnegative_synthesis=True,
                                             input_compression=settings.input_compression)
    if torch.nn.utils.parametrize.is_parametrized(network.synthesis[0], "weight"):
        with torch.no_grad():
            network.synthesis[0].weight = W  # through the parametrisation
            network.synthesis[0].bias.zero_()
    else:
        network.load_templates(W)
    if FREEZE_SYNTHESIS:
        for parameter in network.synthesis.parameters():
            parameter.requires_grad_(False)
    return network


def nmf_started_network(V: torch.Tensor, L: torch.Tensor, layout: UnitLayout, settings, stft,
                        steps: int = 300) -> StructuredAutoencoder:
    """A structured AE whose linear synthesis layer is NMF's ``W`` (:func:`template_network`) and
    whose analysis network was regressed (Adam, ``steps``) on NMF's ``H`` of the mean-normalised ``V``."""
    torch.manual_seed(settings.seed)
    W, H = score_informed_nmf(V, L, separate.initial_templates(layout, settings.seed), settings.nmf_iterations,
                              seed=settings.seed)
    H = H / V.mean()  # the AE models V / mean(V)
    network = template_network(V, L, settings, W)
    optimizer = torch.optim.Adam(network.analysis.parameters(), lr=1e-3)
    Vn = V / V.mean()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(torch.log1p(network.encode(Vn[None])[0]), torch.log1p(H))
        loss.backward()
        optimizer.step()
    return network


def concatenated(pieces: list[dict]) -> dict:
    """One piece made of ``pieces`` end to end: mixtures, references and notes (shifted)."""
    from dataclasses import replace

    notes, offset = [], 0.0
    for piece in pieces:
        notes += [replace(n, onset=n.onset + offset, offset=n.offset + offset) for n in piece["notes"]]
        offset += len(piece["mix"]) / piece["sr"]
    return {**pieces[0], "id": "+".join(p["id"] for p in pieces), "mix": np.concatenate([p["mix"] for p in pieces]),
            "references": np.concatenate([p["references"] for p in pieces], axis=1), "notes": notes}


def _class_activity(per_unit: torch.Tensor, layout: UnitLayout) -> torch.Tensor:
    """``(classes, frames)``: the sum of each class's ``P`` units of ``(units, frames)``."""
    P, classes = layout.units_per_class, len(layout.classes)
    return per_unit[: classes * P].reshape(classes, P, -1).sum(dim=1)


def _specificity(activity: torch.Tensor, present: torch.Tensor, allowed: torch.Tensor) -> float:
    """Mean over classes of: the Pearson correlation of the class's activity with its own exact
    presence, minus the mean correlation with the presence of the other classes, over the frames
    where the class may be active (its weak label); 0 for units that only track loudness."""
    scores = []
    for k in range(activity.shape[0]):
        frames = allowed[k] > 0
        if frames.sum() < 10 or present[k, frames].std() == 0:
            continue
        x = activity[k, frames]
        if x.std() == 0:
            scores.append(0.0)
            continue
        corr = [float(torch.corrcoef(torch.stack([x, present[j, frames]]))[0, 1])
                for j in range(present.shape[0]) if present[j, frames].std() > 0]
        own = float(torch.corrcoef(torch.stack([x, present[k, frames]]))[0, 1])
        others = [c for j, c in zip([j for j in range(present.shape[0]) if present[j, frames].std() > 0], corr) if j != k]
        scores.append(own - (float(np.mean(others)) if others else 0.0))
    return float(np.mean(scores))


def unit_specificity(system, V, L, layout, notes, stft, settings) -> dict:
    """:func:`_specificity` of the fitted AE's representation and, for reference, of
    score-informed NMF's activations (P = 2) on the same piece."""
    from mpe_ssl.data.score import weak_labels

    hop = stft.hop_length / stft.sample_rate
    with torch.no_grad():
        representation = system.network.encode(system.spectrogram({"features": V.unsqueeze(0)}))[0] * L
    exact = _class_activity(weak_labels(notes, layout, V.shape[-1], hop, 0.0, free=False), layout).clamp_max(1.0)
    allowed = _class_activity(L, layout).clamp_max(1.0)
    result = {"ae_specificity": _specificity(_class_activity(representation, layout), exact, allowed),
              "ae_units_ever_active": float((representation.amax(dim=-1) > 0).float().mean())}
    nmf_layout = UnitLayout.from_notes(notes, units_per_class=settings.nmf_units_per_class, free_units=0)
    nmf_L = weak_labels(notes, nmf_layout, V.shape[-1], hop, settings.tolerance)
    _, H = score_informed_nmf(V, nmf_L, separate.initial_templates(nmf_layout, settings.seed), settings.nmf_iterations,
                              seed=settings.seed)
    nmf_exact = _class_activity(weak_labels(notes, nmf_layout, V.shape[-1], hop, 0.0, free=False), nmf_layout)
    result["nmf_specificity"] = _specificity(_class_activity(H, nmf_layout), nmf_exact.clamp_max(1.0),
                                             _class_activity(nmf_L, nmf_layout).clamp_max(1.0))
    return result


def diagnose(mode: str, piece: dict, settings: separate.SeparationSettings) -> dict:
    notes = piece["notes"]
    groups = experiments.piece_groups(piece, notes)
    if mode == "method":  # the method as `mpe-ssl separate` runs it
        import time

        started = time.perf_counter()
        estimates = separate.separate_sources(piece["mix"], notes, groups, settings)
        return {"seconds": len(piece["mix"]) / piece["sr"], "nsdr": nsdr(piece, estimates),
                "fit_s": time.perf_counter() - started}
    if mode == "softplus":
        separate.StructuredAutoencoder = SoftplusOutput
        return {"nsdr": nsdr(piece, separate.separate_sources(piece["mix"], notes, groups, settings)),
                "final_loss": settings.report["final_loss"]}
    stft, mixture, V, layout, L, per_source = separate.score_setup(piece["mix"], notes, groups, settings)
    global BIN_GAIN
    BIN_GAIN = (V / V.mean()).mean(dim=-1).clamp_min(1e-3)  # for --bin-gain
    if mode == "labels":  # no audio model: each source's share of a frame = its units allowed there
        estimates = per_source.sum(dim=1, keepdim=True) * V.mean(dim=-1, keepdim=True)[None]
        Vn = V / V.mean()
        constant = Vn.mean(dim=-1, keepdim=True).expand_as(Vn)[None]
        gain = Vn.sum(dim=0) / constant[0].sum(dim=0)
        return {"nsdr": nsdr(piece, separate.masked_sources(mixture, estimates, stft, settings.mask_power).numpy()),
                "divergence_mean_spectrum": float(generalized_kl(Vn[None], constant)),
                "divergence_mean_spectrum_frame_gain": float(generalized_kl(Vn[None], constant * gain))}
    if mode == "units":  # are the fitted units pitch-specific? (each class against the exact score)
        return unit_specificity(separate.fit_autoencoder(V, L, settings), V, L, layout, notes, stft, settings)
    if mode == "plain":
        L = torch.ones_like(L)
    start = None
    if mode == "template_start":  # f = NMF's initial harmonic templates W0 (linear, non-negative), h from scratch
        torch.manual_seed(settings.seed)
        W0 = separate.initial_templates(layout, settings.seed)
        # columns scaled to sum to V's level: ~10 active units at 1 give a frame's sum of V / mean(V)
        network = template_network(V, L, settings, W0 * (V.shape[0] / 10))
        if TEMPLATE_SUPPORT:  # W stays zero where W0 is (between partials), as under NMF's multiplicative updates
            support = (W0 > 0).to(W0.dtype)
            network.synthesis[0].weight.register_hook(lambda grad: grad * support)
        start = SimpleNamespace(network=network)
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
        if mode == "template_start":
            result.update(unit_specificity(system, V, L, layout, notes, stft, settings))
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
    parser.add_argument("mode", choices=("estimates", "plain", "softplus", "nmf_start", "method", "labels", "units",
                                         "template_start"))
    parser.add_argument("--pieces", nargs="+", type=int, default=[0, 1], help="indices among the split's 8 pieces")
    parser.add_argument("--split", default="test", choices=("val", "test"), help="val: for choosing settings")
    parser.add_argument("--method", default="ae_nonneg_ctx", choices=[m for m in experiments.METHODS if m != "ae_pretrained"])
    parser.add_argument("--excerpt", type=float, default=30.0, help="seconds of each piece (the protocol's 30)")
    parser.add_argument("--concat", type=int, default=1,
                        help="pieces end to end per fitted piece (the paper's recordings are 30-300 s long)")
    parser.add_argument("--overrides", default="{}", help="JSON of SeparationSettings fields")
    parser.add_argument("--eps", type=float, default=None,
                        help="the ε of the generalised KL that the AE is trained on (default: the library's, 1e-8)")
    parser.add_argument("--raw", action="store_true",
                        help="train on the raw |STFT| (as the paper) instead of V divided by its mean")
    parser.add_argument("--lbfgs", type=int, default=0, metavar="N",
                        help="train with full-batch L-BFGS (strong Wolfe line search, N iterations per step, "
                             "lr 1) instead of Adam: a quasi-Newton method for the deterministic full-batch objective")
    parser.add_argument("--exp-synthesis", action="store_true",
                        help="f's weights as exp(θ) (non-negative, multiplicative Adam steps) instead of clipped")
    parser.add_argument("--template-support", action="store_true",
                        help="template_start: the templates change only where W0 is non-zero (its partials)")
    parser.add_argument("--freeze-synthesis", action="store_true",
                        help="nmf_start: fit the analysis network only, NMF's templates fixed")
    parser.add_argument("--bin-gain", action="store_true",
                        help="f's output times each bin's mean magnitude (f models each bin relative to its level)")
    parser.add_argument("--softplus-representation", action="store_true",
                        help="a softplus representation instead of the ReLU (no dead units)")
    args = parser.parse_args()
    if args.softplus_representation:
        separate.StructuredAutoencoder = SoftplusRepresentation
    if args.bin_gain:
        separate.StructuredAutoencoder = BinGain
    global FREEZE_SYNTHESIS, TEMPLATE_SUPPORT
    FREEZE_SYNTHESIS, TEMPLATE_SUPPORT = args.freeze_synthesis, args.template_support
    if args.exp_synthesis:
        separate.StructuredAutoencoder = ExpSynthesis
    if args.lbfgs:
        lbfgs = functools.partial(torch.optim.LBFGS, max_iter=args.lbfgs, history_size=20,
                                  line_search_fn="strong_wolfe")
        separate.ScoreInformedAE = functools.partial(separate.ScoreInformedAE, optimizer=lbfgs)
    if args.raw:
        separate.ScoreInformedAE = functools.partial(score_informed.ScoreInformedAE, normalize=False)
    if args.eps is not None:  # V is normalised to mean 1: ε = 1e-8 makes -V/(V̂+ε) huge where V̂ is near 0
        score_informed.generalized_kl = functools.partial(generalized_kl, eps=args.eps)
    torch.set_num_threads(1)
    pieces = experiments.load_pieces("piano", args.split, 8, args.excerpt)
    if args.concat > 1:
        pieces = [concatenated(pieces[i : i + args.concat]) for i in range(0, len(pieces) - args.concat + 1, args.concat)]
    for index in args.pieces:
        settings = separate.SeparationSettings(**{**experiments.METHODS[args.method], **json.loads(args.overrides)})
        print(json.dumps({"piece": pieces[index]["id"], "mode": args.mode, "method": args.method,
                          "overrides": json.loads(args.overrides),
                          **diagnose(args.mode, pieces[index], settings)}), flush=True)


if __name__ == "__main__":
    main()
