"""Score-informed source separation of one recording: ``mpe-ssl separate AUDIO --score MIDI``.

The recording's magnitude STFT ``V`` and its score's weak labels ``L`` (one onset unit and
``P - 1`` sustain units per instrument-pitch class, ``±tolerance`` seconds around each note:
:mod:`mpe_ssl.data.score`) go to one of two models, fitted to this recording alone on the
full batch, as in Ewert & Sandler (2017):

* ``nmf``: score-informed NMF (:mod:`mpe_ssl.models.nmf`): activations zero outside ``L``,
  harmonic sustain templates, flat onset templates;
* ``ae``: the structured autoencoder (:class:`~mpe_ssl.systems.ScoreInformedAE`) trained
  first with structured dropout, then with the activity penalty; ``--harmonic-prior``
  (:data:`HARMONIC_PRIOR`, not in the paper) makes its synthesis network one linear
  non-negative layer that holds the templates of score-informed NMF's fit on the recording,
  so that only the analysis network starts from scratch: ahead of NMF on 7 of 8 test pieces
  (docs/separation/README.md), where the paper's network from scratch stays far behind.

Each source is a group of notes; its magnitude estimate keeps only its notes' units
(``L_s``), and the sources share the mixture's STFT by soft masks before the inverse STFT.
On the command line the group is chosen by ``--keep`` (part, pitch range, note numbers) and
the output is the kept notes and the rest, as two WAV files.

With ``--ckpt`` instead of ``--score``, a trained :class:`~mpe_ssl.systems.MAJL` separates
its target part from any number of recordings (:func:`separate_with_majl`) and tracks the
target's pitch: ``NAME.target.wav``, ``NAME.accompaniment.wav`` (16 kHz; they sum to the
resampled mono input) and ``NAME.f0.csv`` (time_s, hz — 0 where unvoiced —, confidence).
A model with one output per part (``sources`` > 1, its ``part_names``) writes
``NAME.<part>.wav`` and ``NAME.<part>.f0.csv`` for each part instead.
A file that cannot be read gets a one-line error and the others go on.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from mpe_ssl.atomic import atomic_write
from mpe_ssl.audio.io import load_audio
from mpe_ssl.audio.masking import masked_sources
from mpe_ssl.data.score import KeepRule, Note, UnitLayout, load_score, score_end, weak_labels
from mpe_ssl.errors import MpeSslError
from mpe_ssl.formats import write_f0_csv
from mpe_ssl.grid import SAMPLE_RATE
from mpe_ssl.models import StructuredAutoencoder, harmonic_templates, score_informed_nmf
from mpe_ssl.models.structured_ae import REPRESENTATIONS
from mpe_ssl.systems import load_system
from mpe_ssl.systems.score_informed import ScoreInformedAE, default_frontend

METHODS = ("nmf", "ae")
#: ``--harmonic-prior`` (not in the paper; docs/separation): ``f`` one linear non-negative
#: layer holding the templates of score-informed NMF (harmonic combs refined by 50
#: multiplicative updates on the recording), three units per class (one onset, two sustain:
#: the paper's P = 3), a softplus representation; ``h`` sees 2 context frames each side of the
#: lowest 256 bins; 300 steps; a temporal-continuity cost (weight 100) on the score-masked
#: representation (chosen on val pieces: docs/separation/README.md). Without a prior the units
#: of a from-scratch ``f`` never become pitch-specific.
HARMONIC_PRIOR = {"units_per_class": 3, "synthesis_layers": 1, "harmonic_prior": True, "prior_nmf_iterations": 50,
                  "representation": "softplus", "context": 2, "input_bins": 256, "iterations": 300,
                  "continuity_weight": 100.0}


@dataclass
class SeparationSettings:
    """How a recording is separated (defaults: the settings of ``docs/separation``).

    ``units_per_class``, ``free_units``, ``tolerance``: the weak labels (P, free units,
    seconds). NMF: ``nmf_iterations`` multiplicative updates (25, chosen on val: more overfit
    the labels' slack, 100 lose 0.3 dB), ``nmf_units_per_class`` (3, NMF's best on val: 0.17 dB
    above 2 and 0.13 above 4), ``continuity_weight`` (AE: a temporal-continuity cost on the
    score-masked representation, :func:`~mpe_ssl.systems.score_informed.frame_to_frame_change`). ``mask_power``: the soft
    masks share each bin in proportion to the estimates to this power (2: the Wiener filter,
    0.5 dB above magnitude ratios for every method on val; docs/separation).
    AE: ``iterations`` full-batch Adam steps at ``lr``, the first ``dropout_fraction`` of
    them with structured dropout, the rest with the activity penalty at ``activity_weight``;
    ``hidden`` units per hidden layer, ``context`` input frames each side,
    ``nonnegative_synthesis``, ``input_compression`` (the analysis network sees
    ``log(1 + c V)`` of the mean-normalised ``V``; the paper feeds ``V``),
    ``input_bins`` (the analysis network sees only the lowest bins; None: all),
    ``representation`` (``relu`` as the paper, or ``softplus``), ``synthesis_layers``
    (the paper: 2) and ``harmonic_prior``: ``f`` one linear non-negative layer started from
    NMF's initial templates (:func:`~mpe_ssl.models.harmonic_templates`: each sustain unit a
    harmonic comb of its pitch, each onset unit flat), so that every unit starts tied to its
    class's pitch (``prior_nmf_iterations`` > 0: the templates of score-informed NMF after
    that many iterations on the recording instead; ``freeze_templates``: they stay as
    started and only ``h`` learns); ``lr_decay``: the step size falls to 0
    along a cosine over the fit.
    """

    method: str = "ae"
    tolerance: float = 0.5
    units_per_class: int = 3
    free_units: int = 0
    nmf_units_per_class: int = 3
    nmf_iterations: int = 25
    iterations: int = 400
    dropout_fraction: float = 0.5
    activity_weight: float = 1.0
    continuity_weight: float = 0.0
    lr: float = 1e-3
    hidden: int = 512
    context: int = 0
    nonnegative_synthesis: bool = True
    input_compression: float = 1.0
    input_bins: int | None = None
    representation: str = "relu"
    synthesis_layers: int = 2
    harmonic_prior: bool = False
    prior_nmf_iterations: int = 0
    freeze_templates: bool = False
    lr_decay: bool = False
    mask_power: float = 2.0
    #: AE only: start from this ScoreInformedAE checkpoint (trained over a dataset with
    #: ``mpe-ssl fit --config separation``) and use its units' layout; None: from scratch
    pretrained: str | None = None
    seed: int = 0
    device: str = "cpu"
    #: filled by :func:`separate_sources`: seconds, iterations, final loss
    report: dict = field(default_factory=dict)

    def check(self) -> None:
        if self.method not in METHODS:
            raise MpeSslError(f"method: {self.method!r} is not one of {', '.join(METHODS)}")
        if self.tolerance < 0:
            raise MpeSslError(f"tolerance: {self.tolerance} must be >= 0 seconds")
        for name in ("iterations", "nmf_iterations", "hidden"):
            if getattr(self, name) < 1:
                raise MpeSslError(f"{name}: {getattr(self, name)} must be >= 1")
        if not 0 <= self.dropout_fraction <= 1:
            raise MpeSslError(f"dropout_fraction: {self.dropout_fraction} must be in [0, 1]")
        if self.representation not in REPRESENTATIONS:
            raise MpeSslError(f"representation: {self.representation!r} is not one of {', '.join(REPRESENTATIONS)}")
        if self.synthesis_layers < 1:
            raise MpeSslError(f"synthesis_layers: {self.synthesis_layers} must be >= 1")
        if self.input_bins is not None and self.input_bins < 1:
            raise MpeSslError(f"input_bins: {self.input_bins} must be >= 1 (or null: every bin)")
        if self.prior_nmf_iterations < 0:
            raise MpeSslError(f"prior_nmf_iterations: {self.prior_nmf_iterations} must be >= 0")
        if self.harmonic_prior and self.synthesis_layers != 1:
            raise MpeSslError(f"harmonic_prior: needs synthesis_layers 1 (a linear f that holds the templates), "
                              f"not {self.synthesis_layers}")
        if self.harmonic_prior and self.pretrained:
            raise MpeSslError("harmonic_prior: starts f from templates, so it cannot also start from pretrained")
        for name in ("harmonic_prior", "pretrained", "continuity_weight"):
            if getattr(self, name) and self.method != "ae":
                raise MpeSslError(f"{name}: a setting of method 'ae', not {self.method!r}")
        for name in ("prior_nmf_iterations", "freeze_templates"):
            if getattr(self, name) and not self.harmonic_prior:
                raise MpeSslError(f"{name}: a setting of the harmonic prior, which is off (harmonic_prior: false)")


class _OnePiece(Dataset):
    """The whole recording as one full-batch item, ``steps`` times."""

    def __init__(self, item: dict, steps: int) -> None:
        self.item, self.steps = item, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> dict:
        return self.item


def source_labels(notes: list[Note], groups: list[np.ndarray], layout: UnitLayout, frames: int,
                  hop_seconds: float, tolerance: float) -> torch.Tensor:
    """``(sources, units, frames)``: per group of notes (bool per note) the weak labels of
    its notes only, free units off."""
    return torch.stack([
        weak_labels([n for n, keep in zip(notes, group) if keep], layout, frames, hop_seconds, tolerance, free=False)
        for group in groups
    ])


def load_pretrained(path: str) -> ScoreInformedAE:
    """A dataset-trained :class:`ScoreInformedAE` with its unit layout (one-line errors)."""
    system = load_system(path)
    if not isinstance(system, ScoreInformedAE) or system.layout is None:
        raise MpeSslError(f"{path}: not a score-informed autoencoder trained over a dataset (no unit layout)")
    return system


def initial_templates(layout: UnitLayout, seed: int = 0) -> torch.Tensor:
    """NMF's initial templates ``W0 (bins, units)`` of ``layout`` at the default STFT (each
    column sums to 1; :func:`~mpe_ssl.models.harmonic_templates`)."""
    stft = default_frontend()
    return harmonic_templates(layout.unit_pitches(), layout.unit_is_onset(), stft.n_fft, stft.sample_rate, seed=seed)


def prior_templates(V: torch.Tensor, L: torch.Tensor, layout: UnitLayout, settings: SeparationSettings) -> torch.Tensor:
    """The harmonic prior's one-layer ``f``: ``W (bins, units)``, NMF's initial templates of
    ``layout`` or, with ``settings.prior_nmf_iterations``, those of score-informed NMF on
    ``V (bins, frames)`` and ``L (units, frames)`` after that many updates; each column scaled
    to sum to ``bins / 10`` (about ten units at 1 then give a frame of the mean-normalised
    ``V``'s level)."""
    W = initial_templates(layout, settings.seed).to(V.device)
    if W.shape[0] != V.shape[0]:
        raise MpeSslError(f"harmonic_prior: the spectrogram has {V.shape[0]} bins, not the STFT's {W.shape[0]}")
    if settings.prior_nmf_iterations:
        W, _ = score_informed_nmf(V, L, W, settings.prior_nmf_iterations, seed=settings.seed)  # columns sum to 1
    return W * (V.shape[0] / 10)


def fit_autoencoder(V: torch.Tensor, L: torch.Tensor, settings: SeparationSettings,
                    start: ScoreInformedAE | None = None, callbacks: list | tuple = (),
                    track_objective: bool = False, layout: UnitLayout | None = None) -> ScoreInformedAE:
    """A :class:`ScoreInformedAE` trained on one spectrogram ``V (bins, frames)`` and its
    labels ``L (units, frames)`` for ``settings.iterations`` full-batch steps, from scratch
    or from ``start``'s network (fine-tuning; the stage starts again at ``dropout``);
    ``layout`` (the units of ``L``) is needed for ``settings.harmonic_prior``.
    ``callbacks`` go to the Trainer; ``track_objective``: see :class:`ScoreInformedAE`."""
    import logging
    import warnings

    from lightning.pytorch import Trainer

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no banner per recording
    warnings.filterwarnings("ignore", message=".*(val_dataloader|LeafSpec|litlogger).*")
    torch.manual_seed(settings.seed)
    if start is not None:
        network = start.network.train()
    else:
        network = StructuredAutoencoder(V.shape[0], L.shape[0], hidden=settings.hidden, context=settings.context,
                                        nonnegative_synthesis=settings.nonnegative_synthesis,
                                        input_compression=settings.input_compression,
                                        synthesis_layers=settings.synthesis_layers, input_bins=settings.input_bins,
                                        representation=settings.representation)
        if settings.harmonic_prior:
            if layout is None:
                raise MpeSslError("harmonic_prior: the fit needs the score's unit layout")
            network.load_templates(prior_templates(V, L, layout, settings))
            network.synthesis.requires_grad_(not settings.freeze_templates)
    schedule = (functools.partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=settings.iterations)
                if settings.lr_decay else None)
    system = ScoreInformedAE(network, dropout_steps=round(settings.iterations * settings.dropout_fraction),
                             activity_weight=settings.activity_weight, continuity_weight=settings.continuity_weight,
                             lr=settings.lr, track_objective=track_objective,
                             lr_scheduler=schedule)
    accelerator = "gpu" if settings.device.startswith("cuda") else "cpu"
    trainer = Trainer(max_steps=settings.iterations, accelerator=accelerator, devices=1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, log_every_n_steps=max(settings.iterations, 1),
                      callbacks=list(callbacks))
    item = {"features": V, "score": L, "stream": "labelled"}
    trainer.fit(system, DataLoader(_OnePiece(item, settings.iterations), batch_size=1))
    settings.report["final_loss"] = float(trainer.callback_metrics.get("train/labelled/loss", float("nan")))
    return system.eval()


def score_setup(audio: np.ndarray, notes: list[Note], groups: list[np.ndarray], settings: SeparationSettings,
                layout: UnitLayout | None = None) -> tuple:
    """What every method starts from, on ``settings.device``: ``(stft, mixture (samples,),
    V (bins, frames), layout, L (units, frames), per_source (sources, units, frames))``, the
    layout ``P`` units per class of the method (NMF's or the AE's) unless one is given."""
    device = torch.device(settings.device)
    stft = default_frontend().to(device)
    mixture = torch.as_tensor(audio, dtype=torch.float32, device=device)
    V = stft.magnitude(mixture.reshape(1, -1))[0]
    frames, hop_seconds = V.shape[-1], stft.hop_length / stft.sample_rate
    if layout is None:
        P = settings.units_per_class if settings.method == "ae" else settings.nmf_units_per_class
        layout = UnitLayout.from_notes(notes, units_per_class=P, free_units=settings.free_units)
    L = weak_labels(notes, layout, frames, hop_seconds, settings.tolerance).to(device)
    per_source = source_labels(notes, groups, layout, frames, hop_seconds, settings.tolerance).to(device)
    return stft, mixture, V, layout, L, per_source


def separate_sources(audio: np.ndarray, notes: list[Note], groups: list[np.ndarray],
                     settings: SeparationSettings | None = None) -> np.ndarray:
    """Separate a recording into groups of its score's notes.

    Args:
        audio: ``(samples,)`` mono at the grid's sample rate.
        notes: the score, aligned (or roughly aligned) to the audio.
        groups: one bool array per source over ``notes``: the notes of that source.
        settings: method and its settings (default :class:`SeparationSettings`).

    Returns:
        ``(sources, samples)`` float32 waveforms that sum to the mixture.
    """
    settings = settings or SeparationSettings()
    settings.check()
    started = time.perf_counter()
    device = torch.device(settings.device)
    start = load_pretrained(settings.pretrained) if settings.method == "ae" and settings.pretrained else None
    stft, mixture, V, layout, L, per_source = score_setup(audio, notes, groups, settings,
                                                          None if start is None else start.layout)
    if settings.method == "nmf":
        W, H = score_informed_nmf(V, L, initial_templates(layout, settings.seed).to(device), settings.nmf_iterations,
                                  seed=settings.seed)
        estimates = torch.stack([W @ (H * labels) for labels in per_source])
    else:
        system = fit_autoencoder(V, L, settings, start, layout=layout).to(device)
        estimates = system.source_magnitudes(V, per_source)
    sources = masked_sources(mixture, estimates, stft, settings.mask_power)
    settings.report["seconds"] = time.perf_counter() - started
    return sources.cpu().numpy()


# ----------------------------------------------------------------- command line

def check_score_fits(notes: list[Note], seconds: float, score_path: str, tolerance: float) -> None:
    """One-line error when the score cannot belong to a recording of ``seconds``."""
    end = score_end(notes)
    if end > seconds + max(tolerance, 1.0):
        raise MpeSslError(f"{score_path}: the score ends at {end:.1f} s, after the audio's {seconds:.1f} s; "
                          "is it the score of this recording?")
    if end < 0.5 * seconds:
        raise MpeSslError(f"{score_path}: the score covers {end:.1f} s of the audio's {seconds:.1f} s; "
                          "is it the score of this recording?")


# ------------------------------------------------------------------------------ MAJL (--ckpt)
def separate_with_majl(system, audio: np.ndarray, chunk_seconds: float = 20.0, context_seconds: float = 1.0
                       ) -> dict[str, np.ndarray]:
    """Target, accompaniment and the target's pitch of a 16 kHz mono recording.

    The separator runs on chunks of ``chunk_seconds`` with ``context_seconds`` of audio each
    side (:meth:`~mpe_ssl.systems.MAJL.separate_long`), so memory does not grow with the file;
    the pitch network sees every 20 ms frame of the whole separated target
    (:meth:`~mpe_ssl.systems.MAJL.pitch_logits_long`).

    Returns ``target`` and ``accompaniment`` ``(samples,)`` float32 (summing to ``audio``),
    and per frame ``times`` (s), ``hz`` (0 where unvoiced) and ``confidence``. A model of
    ``K > 1`` parts returns ``parts`` (its ``part_names``), ``sources`` ``(K, samples)``,
    ``times`` ``(frames,)``, ``hz`` and ``confidence`` ``(K, frames)``.
    """
    from mpe_ssl.data.majl import HOP_LENGTH, SAMPLE_RATE as MAJL_RATE
    from mpe_ssl.models.crepe import decode_pitch

    sources = system.separate_parts_long(torch.from_numpy(np.ascontiguousarray(audio)), chunk_seconds, context_seconds)
    logits = torch.stack([system.pitch_logits_long(source) for source in sources])  # (K, frames, 360)
    hz, confidence, voiced = decode_pitch(logits, system.voicing_threshold)
    result = {
        "times": np.arange(logits.shape[1]) * HOP_LENGTH / MAJL_RATE,
        "hz": torch.where(voiced, hz, torch.zeros_like(hz)).numpy(),
        "confidence": confidence.numpy(),
    }
    if system.num_parts > 1:
        return {"parts": system.part_names, "sources": sources.numpy(), **result}
    target = sources[0].numpy()
    return {"target": target, "accompaniment": (audio - target).astype(np.float32), **result,
            "hz": result["hz"][0], "confidence": result["confidence"][0]}


def separate_files_with_majl(paths: list[str], ckpt: str, out: Path, device: str) -> int:
    """``mpe-ssl separate AUDIO... --ckpt MAJL.ckpt``: 0 when every file was separated, else 1."""
    from mpe_ssl.data.majl import SAMPLE_RATE as MAJL_RATE
    from mpe_ssl.systems import MAJL

    system = load_system(ckpt, map_location=device)
    if not isinstance(system, MAJL):
        raise MpeSslError(f"--ckpt {ckpt}: a {type(system).__name__} checkpoint, not a MAJL one")
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in paths:
        try:
            audio = load_audio(path, sample_rate=MAJL_RATE)
            result = separate_with_majl(system, audio)
        except MpeSslError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        name = Path(path).stem
        if "parts" in result:  # NAME.<part>.wav and NAME.<part>.f0.csv per part
            waves = dict(zip(result["parts"], result["sources"]))
            pitches = [(f"{name}.{part}.f0.csv", result["hz"][k], result["confidence"][k])
                       for k, part in enumerate(result["parts"])]
        else:
            waves = {label: result[label] for label in ("target", "accompaniment")}
            pitches = [(f"{name}.f0.csv", result["hz"], result["confidence"])]
        for label, wave in waves.items():
            wav = out / f"{name}.{label}.wav"
            atomic_write(wav, lambda tmp, x=wave: sf.write(tmp, x, MAJL_RATE, format="WAV", subtype="FLOAT"))
            print(wav)
        for csv, hz, confidence in pitches:
            write_f0_csv(out / csv, result["times"], hz, confidence)
            print(out / csv)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mpe-ssl separate",
        description="Separate a group of notes out of a recording, given its score (MIDI); or, with --ckpt, "
                    "the target part of recordings with a trained MAJL model.",
        epilog="With --score: writes OUT/NAME.kept.wav (the kept notes) and OUT/NAME.rest.wav (everything else), "
               f"mono at {SAMPLE_RATE} Hz; the two sum to the (resampled, mono) input. With --ckpt: "
               "OUT/NAME.target.wav, OUT/NAME.accompaniment.wav (16 kHz) and OUT/NAME.f0.csv "
               "(time_s, hz, confidence) per input; with a model of one output per part, "
               "OUT/NAME.PART.wav and OUT/NAME.PART.f0.csv per part.",
    )
    parser.add_argument("audio", nargs="+",
                        help="the recording (any format soundfile reads; any rate, any channels); several with --ckpt")
    parser.add_argument("--ckpt", default=None, help="a MAJL checkpoint (mpe-ssl fit --config experiments/majl.yaml)")
    parser.add_argument("--score", default=None, help="its score: a MIDI file (or a rendered piece's notes.csv)")
    parser.add_argument("--keep", action="append", default=[], metavar="KEY=VALUE",
                        help="notes to keep: part=Soprano,Alto | part=0,1 | pitch=60-72 | pitch=C4-C5 | "
                             "notes=0-10,15; repeat to require several")
    parser.add_argument("--method", choices=METHODS, default="ae", help="structured autoencoder or NMF (default ae)")
    parser.add_argument("--out", default="separated", help="output folder (default ./separated)")
    parser.add_argument("--tolerance", type=float, default=0.5, help="score timing tolerance in seconds (default 0.5)")
    parser.add_argument("--iterations", type=int, default=None, help="training steps (default: the method's)")
    parser.add_argument("--harmonic-prior", action="store_true",
                        help="ae: a linear synthesis network that starts from the templates of score-informed NMF "
                             "on this recording, 2 units per class (not in the paper; ahead of NMF, where the "
                             "paper's network from scratch is far behind)")
    parser.add_argument("--pretrained", default=None, metavar="CKPT",
                        help="ae: start from a model trained over a dataset (mpe-ssl fit --config separation)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise MpeSslError(f"--out {out}: exists and is not a folder")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise MpeSslError(f"--device {args.device}: no CUDA device is available here")
    if args.ckpt is not None:
        if args.score is not None or args.keep:
            raise MpeSslError("--ckpt separates with a MAJL model: it takes no --score or --keep")
        return separate_files_with_majl(args.audio, args.ckpt, out, args.device)
    if args.score is None or not args.keep:
        raise MpeSslError("give --score MIDI and --keep KEY=VALUE (score-informed), or --ckpt MAJL.ckpt")
    if len(args.audio) != 1:
        raise MpeSslError(f"--score separates one recording at a time, not {len(args.audio)}")
    args.audio = args.audio[0]
    rule = KeepRule.parse(args.keep)
    if args.harmonic_prior and (args.method != "ae" or args.pretrained):
        raise MpeSslError("--harmonic-prior: only for --method ae fitted from scratch (no --pretrained)")
    settings = SeparationSettings(method=args.method, tolerance=args.tolerance, device=args.device,
                                  pretrained=args.pretrained, **(HARMONIC_PRIOR if args.harmonic_prior else {}))
    if args.iterations is not None:
        setattr(settings, "iterations" if args.method == "ae" else "nmf_iterations", args.iterations)
    settings.check()
    notes = load_score(args.score)
    kept = rule.select(notes)
    audio = load_audio(args.audio)
    check_score_fits(notes, len(audio) / SAMPLE_RATE, args.score, args.tolerance)
    sources = separate_sources(audio, notes, [kept, ~kept], settings)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(args.audio).stem
    for label, source in zip(("kept", "rest"), sources):
        path = out / f"{name}.{label}.wav"
        atomic_write(path, lambda tmp, s=source: sf.write(tmp, s, SAMPLE_RATE, format="WAV", subtype="FLOAT"))
        print(path)
    print(f"{int(kept.sum())} of {len(notes)} notes kept; {settings.method} in {settings.report['seconds']:.1f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
