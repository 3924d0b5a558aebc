"""Score-informed separation by a weak-label autoencoder (Ewert & Sandler, ICASSP 2017).

``ScoreInformedAE`` trains a :class:`~mpe_ssl.models.StructuredAutoencoder` to reconstruct
the magnitude STFT ``V`` of its input under the score's weak labels ``L`` (batch key
``score``, ``(batch, units, frames)`` on the STFT's frames, see :mod:`mpe_ssl.data.score`),
in two stages:

* ``dropout`` (objective 3 of the paper): ``d(V, f(L ⊙ h(V)))``: the units the score rules
  out are zeroed before synthesis (structured dropout);
* ``penalty`` (objective 2): ``d(V, f(h(V))) + λ ‖(1 − L) ⊙ h(V)‖²`` per frame: the network
  must switch those units off itself.

``d`` is the generalised KL divergence per frame (:func:`~mpe_ssl.losses.generalized_kl`).
The stage moves from ``dropout`` to ``penalty`` at ``dropout_steps`` (a step count from the
config) or when :class:`~mpe_ssl.callbacks.ActivityPenaltySwitch` says so; the stage is
saved in checkpoints. Each item's spectrogram is divided by its mean first (``normalize``),
so one learning rate fits any recording's level (by the mean, not the maximum: a synthesis
network that starts far above its target switches every representation unit off for good).

Separation (:meth:`ScoreInformedAE.source_magnitudes`): per source ``s`` a label matrix
``L_s`` that keeps only its notes; ``Ṽ_s = f(L_s ⊙ h(V))``, minus ``f(0)`` (what the
synthesis network outputs with no unit active: its sigmoid hidden layers are never 0); the
sources then share the mixture by soft masks (:mod:`mpe_ssl.audio.masking`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torchmetrics import MeanMetric, Metric

from mpe_ssl.audio.stft import STFT
from mpe_ssl.batch import KINDS
from mpe_ssl.data.score import UnitLayout
from mpe_ssl.errors import MpeSslError
from mpe_ssl.losses import generalized_kl
from mpe_ssl.models import StructuredAutoencoder
from mpe_ssl.systems.system import System

INPUT = ("audio", "features")
STAGES = ("dropout", "penalty")


def default_frontend() -> STFT:
    """The paper's STFT at the grid's 22050 Hz: Hann window of 2048 (93 ms), hop 512 (23 ms)."""
    return STFT(n_fft=2048, hop_length=512, sample_rate=22050)


def activity_outside(representation: Tensor, labels: Tensor) -> Tensor:
    """``‖(1 − L) ⊙ R‖²`` per frame, averaged over batch and frames.

    Args:
        representation: ``R (batch, units, frames)``.
        labels: ``L (batch, units, frames)`` in {0, 1}.
    """
    return ((1.0 - labels) * representation).pow(2).sum(dim=-2).mean()


def frame_to_frame_change(representation: Tensor) -> Tensor:
    """``‖R[:, :, t] − R[:, :, t−1]‖²`` per frame, averaged over batch and frames (a temporal
    continuity cost; 0 for ``frames`` < 2).

    Args:
        representation: ``R (batch, units, frames)``.
    """
    if representation.shape[-1] < 2:
        return representation.new_zeros(())
    return representation.diff(dim=-1).pow(2).sum(dim=-2).mean()


class ScoreInformedAE(System):
    """Structured autoencoder trained on a recording and its score's weak labels.

    Args:
        network: the autoencoder; its ``n_bins`` must be the frontend's and its ``n_units``
            the weak labels' (``UnitLayout.n_units``).
        frontend: complex STFT of the audio; its magnitude is ``V``.
        stage: the stage training starts in, ``dropout`` or ``penalty``.
        dropout_steps: switch from ``dropout`` to ``penalty`` at this global step (None:
            only a callback switches).
        activity_weight: λ of the activity penalty.
        continuity_weight: weight of a temporal-continuity cost on the score-masked
            representation ``L ⊙ h(V)`` (:func:`frame_to_frame_change`; not in the paper; 0: off).
        lr: Adam's step size (the paper: a tenth of the default, 1e-4).
        normalize: divide each item's ``V`` by its mean.
        track_objective: also log the penalty objective during the dropout stage (one more
            synthesis pass per step; for comparing the two training schemes).
        subtract_baseline: remove ``f(0)`` from each source's magnitude in separation.
    """

    train_needs = {"labelled": (INPUT, "score")}
    eval_needs = {kind: (INPUT, "score") for kind in KINDS}
    headline_metric = "divergence"

    def __init__(
        self,
        network: StructuredAutoencoder,
        frontend: STFT | None = None,
        stage: str = "dropout",
        dropout_steps: int | None = None,
        activity_weight: float = 1.0,
        continuity_weight: float = 0.0,
        lr: float = 1e-4,
        normalize: bool = True,
        track_objective: bool = False,
        subtract_baseline: bool = True,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: str = "step",
    ) -> None:
        super().__init__(optimizer, lr_scheduler, lr_scheduler_interval)
        if stage not in STAGES:
            raise MpeSslError(f"stage: {stage!r} is not one of {', '.join(STAGES)}")
        if dropout_steps is not None and dropout_steps < 0:
            raise MpeSslError(f"dropout_steps: {dropout_steps} must be >= 0 (or null)")
        if activity_weight < 0:
            raise MpeSslError(f"activity_weight: {activity_weight} must be >= 0")
        if continuity_weight < 0:
            raise MpeSslError(f"continuity_weight: {continuity_weight} must be >= 0")
        if lr <= 0:
            raise MpeSslError(f"lr: {lr} must be > 0")
        self.network = network
        self.frontend = frontend if frontend is not None else default_frontend()
        if self.frontend.n_bins != network.n_bins:
            raise MpeSslError(f"network.n_bins: {network.n_bins} is not the frontend's {self.frontend.n_bins} bins")
        self.stage = stage
        #: the units' classes, from the datamodule (``score_layout``) or a checkpoint; a
        #: model trained over a dataset carries it so that one recording can reuse its units
        self.layout: UnitLayout | None = None

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        layout = getattr(datamodule, "score_layout", None)
        if layout is not None:
            if layout.n_units != self.network.n_units:
                raise MpeSslError(
                    f"network.n_units: {self.network.n_units} is not the {layout.n_units} units of the data's "
                    f"score_labels ({len(layout.classes)} classes x {layout.units_per_class} + {layout.free_units} free)"
                )
            self.layout = layout

    # ------------------------------------------------------------- inputs
    def spectrogram(self, batch: Mapping) -> Tensor:
        """``V (batch, bins, frames)``: ``features`` if given, else ``|STFT(audio)|``, normalised."""
        V = batch["features"] if "features" in batch else self.frontend.magnitude(batch["audio"])
        if self.hparams.normalize:
            V = V / V.mean(dim=(-2, -1), keepdim=True).clamp_min(1e-8)
        return V

    def labels(self, batch: Mapping, frames: int) -> Tensor:
        """``L (batch, units, frames)`` from the batch's ``score``, checked against the network."""
        score = batch["score"].to(self.device, torch.float32)
        units = self.network.n_units
        if score.dim() != 3 or score.shape[1] != units or score.shape[2] != frames:
            raise MpeSslError(
                f"score: shape {tuple(score.shape)} does not match (batch, {units} units, {frames} frames) "
                f"of the network and the audio's STFT"
            )
        return score

    # ------------------------------------------------------------- training
    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        steps = self.hparams.dropout_steps
        if self.stage == "dropout" and steps is not None and self.global_step >= steps:
            self.stage = "penalty"

    def stage_loss(self, V: Tensor, L: Tensor) -> dict[str, Tensor]:
        """The current stage's ``loss`` and its parts (``divergence``, ``activity``; ``continuity``
        when weighted)."""
        reconstruction, representation = self.network(V, L if self.stage == "dropout" else None)
        parts = {"divergence": generalized_kl(V, reconstruction), "activity": activity_outside(representation, L)}
        if self.stage == "dropout":
            parts["loss"] = parts["divergence"]
            if self.hparams.track_objective:
                with torch.no_grad():
                    free = generalized_kl(V, self.network.decode(representation))
                parts["objective"] = free + self.hparams.activity_weight * parts["activity"].detach()
        else:
            parts["loss"] = parts["divergence"] + self.hparams.activity_weight * parts["activity"]
            parts["objective"] = parts["loss"].detach()
        if self.hparams.continuity_weight:
            parts["continuity"] = frame_to_frame_change(L * representation)
            parts["loss"] = parts["loss"] + self.hparams.continuity_weight * parts["continuity"]
        return parts

    def training_loss(self, streams: dict[str, dict]) -> Tensor:
        total = 0.0
        for name, batch in streams.items():
            V = self.spectrogram(batch)
            parts = self.stage_loss(V, self.labels(batch, V.shape[-1]))
            size = V.shape[0]
            self.log_dict({f"train/{name}/{key}": value.detach() for key, value in parts.items()}, batch_size=size)
            total = total + parts["loss"]
        self.log("train/penalty_stage", float(self.stage == "penalty"))
        return total

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.network.project()

    def parameter_groups(self) -> list[dict]:
        return [{"params": list(self.network.parameters()), "lr": self.hparams.lr}]

    # ------------------------------------------------------------- evaluation
    def make_metrics(self, kind: str) -> dict[str, Metric]:
        return {"divergence": MeanMetric(), "leak": MeanMetric()}

    def update_metrics(self, metrics: Mapping[str, Metric], batch: dict) -> None:
        V = self.spectrogram(batch)
        L = self.labels(batch, V.shape[-1])
        reconstruction, representation = self.network(V, L)
        metrics["divergence"].update(generalized_kl(V, reconstruction), weight=V.shape[0])
        energy = representation.pow(2).sum().clamp_min(1e-12)
        metrics["leak"].update(((1.0 - L) * representation).pow(2).sum() / energy, weight=V.shape[0])

    # ------------------------------------------------------------- separation
    @torch.no_grad()
    def source_magnitudes(self, spectrogram: Tensor, source_labels: Tensor) -> Tensor:
        """Magnitude estimates ``Ṽ_s (sources, bins, frames)`` of one recording's sources.

        Args:
            spectrogram: ``V (bins, frames)`` (normalised as in training or not: the
                estimates are only used as ratios).
            source_labels: ``(sources, units, frames)``: per source the weak labels of its
                notes only.
        """
        V = self.spectrogram({"features": spectrogram.unsqueeze(0)})
        representation = self.network.encode(V)
        estimates = self.network.decode(representation * source_labels.to(V))
        if self.hparams.subtract_baseline:
            baseline = self.network.decode(torch.zeros_like(representation))
            estimates = (estimates - baseline).clamp_min(0.0)
        return estimates

    # ------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["score_informed_stage"] = self.stage
        if self.layout is not None:
            checkpoint["score_layout"] = {"classes": [list(c) for c in self.layout.classes],
                                          "units_per_class": self.layout.units_per_class,
                                          "free_units": self.layout.free_units}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.stage = checkpoint.get("score_informed_stage", self.stage)
        layout = checkpoint.get("score_layout")
        if layout is not None:
            self.layout = UnitLayout(tuple(tuple(c) for c in layout["classes"]), layout["units_per_class"],
                                     layout["free_units"])
