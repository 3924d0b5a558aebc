"""Self-supervised MPE: invariance, equivariance and energy objectives beside the supervised loss.

One training step, shapes ``(batch, ...)`` over the samples of every stream together::

    audio -> HCQT X (B, 6, 440, T) -> F -> logits z (B, 440, T)
    supervised      B(z, blur(labels))                      labelled + pseudo samples
    timbre          B(F(eq(X)), sigmoid(z))                 self-supervised streams
    percussion      B(F(HCQT(audio + v * drums)), sigmoid(z))
    geometric       B(F(T(X)), T(sigmoid(z))) under T's mask
    support/harmonic/energy/sparsity from X itself          energy streams
    intl            INTL(latents of X, latents of a view)   intl streams (frames as samples)

The view terms' target ``sigmoid(z)`` is the online network's own prediction (the paper), or
with ``target_network="ema"`` that of a teacher whose weights are an exponential moving
average of the network's (mean-teacher / BYOL style; no gradient); ``target_confidence``
keeps only the target entries near 0 or 1; ``balanced_terms`` rescale chosen terms to the
supervised term's magnitude each step. These three are remedies for the blank-prediction
collapse, beside ``stop_gradient`` and INTL; none is in the paper.

Each term is computed per stream (by stream *name*: two unlabelled sources are two streams)
and logged as ``train/<stream>/<term>``; the term's value in the total is the sample-weighted
mean over the streams it applies to. A term's stream list may name streams or kinds
(``labelled``, ``pseudo``, ``unlabelled``). Random transforms draw from a generator seeded by
``(transform_seed, global rank, global step)``, so DDP ranks see different transforms and a
rerun sees the same ones. The drum loops of the percussion view come from the datamodule
(``MixedStreamDataModule(drums=...)``), or are set on ``drum_bank`` by hand.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.checkpoint import checkpoint

from mpe_ssl.data.drums import DrumBank
from mpe_ssl.batch import KINDS, stream_kind
from mpe_ssl.errors import MpeSslError
from mpe_ssl.losses import (
    energy_loss,
    equivariance_loss,
    first_harmonic,
    harmonic_loss,
    harmonic_salience,
    intl_loss,
    invariance_loss,
    sparsity_loss,
    supervised_loss,
    support_loss,
)
from mpe_ssl.systems.mpe import MPESystem
from mpe_ssl.transforms import random_equalization, random_geometric, random_percussion

SUPERVISED_KINDS = ("labelled", "pseudo")


@dataclass
class _Step:
    """What the terms of one training step read; ``views`` caches transformed views."""

    parts: list[dict]
    names: list[str]  # stream name of each sample
    kinds: dict[str, str]  # stream name -> kind
    groups: dict[str, torch.Tensor]  # stream name -> sample indices
    audio: torch.Tensor | None  # (batch, samples); None when the batch brought features
    features: torch.Tensor  # (batch, harmonics, bins, frames)
    logits: torch.Tensor  # (batch, bins, frames)
    latents: torch.Tensor  # (batch, D, frames)
    generator: torch.Generator
    views: dict = field(default_factory=dict)
TERMS = ("supervised", "timbre", "percussion", "geometric", "support", "harmonic", "energy", "sparsity", "intl")


def _copy_escape_step_to_host(module: "SelfSupervisedMPE", incompatible_keys) -> None:
    """After ``load_state_dict`` (a resumed fit, a loaded checkpoint): refresh the host copy
    of the ``escape_step`` buffer that ``stream_weight`` reads."""
    module._escape_at = int(module.escape_step)


class SelfSupervisedMPE(MPESystem):
    """Supervised loss plus any weighted subset of the self-supervised objectives.

    Args:
        weights: weight of each term of ``TERMS``; a term with weight 0 (or absent) is not
            computed. Default: supervised only.
        self_supervised_streams: streams (names or kinds) the invariance/equivariance terms
            apply to (the paper: every sample).
        energy_streams: streams (names or kinds) the support/harmonic/energy/sparsity terms
            apply to. In every stream selector (these two, ``intl_streams``,
            ``stream_weights``) a name that is neither a kind nor a training stream's name
            stops the fit at setup with a one-line error (a typo would select nothing).
        stop_gradient: detach the self-supervised targets ``sigmoid(z)`` (the reference code
            does not).
        equalization: ``parabolic`` (v0.2.0) or ``gaussian`` (earlier) EQ curves.
        eq_pointiness: depth factor ``p`` of the parabolic curves (reference: 2).
        eq_max_gain / eq_max_width: largest boost/cut and largest width in bins of the
            Gaussian curves (default width: a tenth of the curve).
        max_shift_bins: largest vertical shift, in bins.
        max_shift_frames: largest time shift in frames; None: ``max_shift_fraction`` of the
            excerpt's frames (the reference's 86 of 344 frames is a quarter), so 1 s and 4 s
            excerpts keep the same proportions.
        max_shift_fraction: see ``max_shift_frames``.
        max_stretch: time stretch factors lie in ``[1 / max_stretch, max_stretch]``.
        shift_step_bins: vertical shifts are multiples of this many bins (5 = whole
            semitones at 60 bins per octave; 1 = any bin, the reference).
        max_volume: largest drum volume of the percussion overlay.
        intl_streams: streams (names or kinds) whose latent frames the INTL term whitens (the
            anti-collapse regulariser of the INTL paper, applied to the network's latent).
        intl_view: the second view of INTL: ``timbre`` (EQ) or ``percussion`` (drums added).
        intl_iterations: Newton iterations T of IterNorm.
        intl_beta: trace-loss weight of INTL; None: ``0.01 (log2(global batch) - 3)``.
        intl_axis: ``feature`` (whiten the latent dimensions) or ``sample``.
        intl_frames: frames drawn at random per step for INTL (None: all; bounds the cost).
        transform_seed: base seed of the random transforms.
        blur_sigma: blur of the supervised targets, in bins.
        activation_checkpointing: keep only the inputs of each network pass (the sample and
            its views) and recompute its activations in the backward pass: one pass's
            activations in memory at a time instead of four, for about a third more compute;
            the same numbers either way.
        target_network: whose prediction is the target of the view terms: ``online`` (the
            network itself, the paper) or ``ema`` (a teacher copy of the network, updated
            after every optimiser step as ``teacher = d teacher + (1 - d) network``; its
            targets carry no gradient). The teacher is saved in checkpoints (exact resume).
        ema_decay: ``d`` of the EMA teacher, in [0, 1).
        ema_warmup: ramp the decay up as in the mean teacher, ``min(d, 1 - 1 / (t + 1))``
            after optimiser step ``t`` (1, 2, ...): the teacher keeps up with a network that
            changes fast early in training; False: ``d`` from the first step.
        target_confidence: when given (in (0.5, 1]), the view terms count only the target
            entries with ``max(y, 1 - y) >= target_confidence``; None: every entry (the paper).
        balanced_terms: terms whose value is rescaled each step to the supervised term's
            magnitude, ``w * L * (L_sup / L).detach()``: their gradient direction is kept, their
            scale follows the supervised loss's (e.g. ``[energy, sparsity]``, whose raw scale
            differs from the BCE terms' by orders of magnitude). No effect on a batch without
            supervised samples.
        stream_weights: a factor per stream (name or kind; others 1) on its samples in every
            term they take part in: ``term = sum_s w_s n_s L_s / sum_s n_s`` over the term's
            streams ``s`` (``n_s`` samples, mean loss ``L_s``). E.g. ``{unlabelled: 4}`` pushes
            the view terms on the SS-only samples 4x harder without taking weight from the
            labelled ones (ours; the paper weights every sample alike).
        stream_weight_ramp: ``(start, end)`` optimiser steps: every stream weight ``w`` is 1
            before ``start``, rises linearly to ``w`` at ``end`` and stays there (e.g. let the
            model leave the blank start under the plain weights first); None: ``w`` throughout.
        stream_weight_ramp_from_escape: when given (in (0, 1)), ``stream_weight_ramp``'s steps
            count from the *escape from blank* instead of from step 0: the first training step
            at which, of the supervised samples' frames that hold a true note, fewer than this
            fraction are predicted blank (no bin's sigmoid above 0.5; pooled over DDP ranks).
            Until then every weight is 1. The escape step is a buffer (``escape_step``, -1
            before it), so checkpoints keep it; the fraction is logged as
            ``train/supervised_blank_fraction``. Needs the ramp and the supervised term.
        **kwargs: see :class:`MPESystem`.
    """

    def __init__(
        self,
        weights: dict[str, float] | None = None,
        self_supervised_streams: Sequence[str] = ("labelled", "pseudo", "unlabelled"),
        energy_streams: Sequence[str] = ("labelled", "pseudo", "unlabelled"),
        stop_gradient: bool = False,
        equalization: str = "parabolic",
        eq_pointiness: float = 2.0,
        eq_max_gain: float = 0.375,
        eq_max_width: float | None = None,
        max_shift_bins: int = 60,
        max_shift_frames: int | None = None,
        max_shift_fraction: float = 0.25,
        max_stretch: float = 2.0,
        shift_step_bins: int = 1,
        max_volume: float = 1.0,
        intl_streams: Sequence[str] = ("unlabelled",),
        intl_view: str = "timbre",
        intl_iterations: int = 4,
        intl_beta: float | None = None,
        intl_axis: str = "feature",
        intl_frames: int | None = 1024,
        transform_seed: int = 0,
        blur_sigma: float = 1.0,
        activation_checkpointing: bool = False,
        target_network: str = "online",
        ema_decay: float = 0.99,
        ema_warmup: bool = False,
        target_confidence: float | None = None,
        balanced_terms: Sequence[str] = (),
        stream_weights: dict[str, float] | None = None,
        stream_weight_ramp: Sequence[int] | None = None,
        stream_weight_ramp_from_escape: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        weights = {"supervised": 1.0} if weights is None else dict(weights)
        unknown = sorted(set(weights) - set(TERMS))
        if unknown:
            raise MpeSslError(f"weights: unknown term(s) {unknown}; expected some of {list(TERMS)}")
        self.weights = {term: float(w) for term, w in weights.items() if w}
        self.stream_weights = {str(s): float(w) for s, w in (stream_weights or {}).items()}
        negative = {s: w for s, w in self.stream_weights.items() if not w >= 0}
        if negative:
            raise MpeSslError(f"stream_weights: {negative} must be >= 0")
        self.stream_weight_ramp = None if stream_weight_ramp is None else tuple(stream_weight_ramp)
        if self.stream_weight_ramp is not None and not (
            len(self.stream_weight_ramp) == 2 and 0 <= self.stream_weight_ramp[0] <= self.stream_weight_ramp[1]
        ):
            raise MpeSslError(f"stream_weight_ramp: {list(self.stream_weight_ramp)} is not [start, end], 0 <= start <= end")
        self.escape_threshold = stream_weight_ramp_from_escape
        if self.escape_threshold is not None:
            if not 0 < self.escape_threshold < 1:
                raise MpeSslError(f"stream_weight_ramp_from_escape: {self.escape_threshold} must be in (0, 1)")
            if self.stream_weight_ramp is None or "supervised" not in self.weights:
                raise MpeSslError("stream_weight_ramp_from_escape: needs stream_weight_ramp and the supervised term")
            # optimiser step of the escape from blank; -1 until it happens (saved in checkpoints)
            self.register_buffer("escape_step", torch.tensor(-1, dtype=torch.long))
            self._escape_at = -1  # host copy, read every step without a device sync
            self.register_load_state_dict_post_hook(_copy_escape_step_to_host)
        if intl_view not in ("timbre", "percussion"):
            raise MpeSslError(f"intl_view: {intl_view!r} is not 'timbre' or 'percussion'")
        if intl_axis not in ("feature", "sample"):
            raise MpeSslError(f"intl_axis: {intl_axis!r} is not 'feature' or 'sample'")
        if not 0 <= max_shift_fraction <= 1:
            raise MpeSslError(f"max_shift_fraction: {max_shift_fraction} must be in [0, 1]")
        if target_network not in ("online", "ema"):
            raise MpeSslError(f"target_network: {target_network!r} is not 'online' or 'ema'")
        if not 0 <= ema_decay < 1:
            raise MpeSslError(f"ema_decay: {ema_decay} must be in [0, 1)")
        if target_confidence is not None and not 0.5 < target_confidence <= 1:
            raise MpeSslError(f"target_confidence: {target_confidence} must be in (0.5, 1]")
        unbalanced = sorted(set(balanced_terms) - (set(TERMS) - {"supervised"}))
        if unbalanced:
            raise MpeSslError(f"balanced_terms: {unbalanced} are not terms other than 'supervised' {list(TERMS)}")
        self.drum_bank: DrumBank | None = None
        # the EMA teacher: a frozen copy of the network, outside the optimiser, in the state dict
        self.teacher = copy.deepcopy(self.network).requires_grad_(False) if target_network == "ema" else None

    @property
    def needs_drums(self) -> bool:
        """Whether a term draws drum loops (percussion, or INTL with the percussion view)."""
        return "percussion" in self.weights or ("intl" in self.weights and self.hparams.intl_view == "percussion")

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.teacher is not None:
            # the teacher starts as the network (after init_weights); a resumed fit then
            # restores the saved teacher over this
            self.teacher.load_state_dict(self.network.state_dict())
        datamodule = getattr(self._trainer, "datamodule", None)
        if stage == "fit" and hasattr(datamodule, "stream_kinds"):
            self._check_stream_names(set(KINDS) | set(datamodule.stream_kinds("train")))
        if stage == "fit" and self.needs_drums and self.drum_bank is None:
            self.drum_bank = getattr(datamodule, "drum_bank", None)
            if self.drum_bank is None:
                raise MpeSslError(
                    "SelfSupervisedMPE: the percussion view needs drum loops: give the datamodule "
                    "'drums' (e.g. data.init_args.drums: {} for the default GM loops)"
                )

    def _check_stream_names(self, known: set[str]) -> None:
        """Stop the fit if a stream selector names neither a kind nor a training stream.

        A typo (``unlabeled``) would otherwise select, or weigh, nothing without a word.
        """
        hp = self.hparams
        selectors = {
            "self_supervised_streams": hp.self_supervised_streams,
            "energy_streams": hp.energy_streams,
            "intl_streams": hp.intl_streams,
            "stream_weights": self.stream_weights,
        }
        for key, names in selectors.items():
            unknown = sorted(set(names) - known)
            if unknown:
                raise MpeSslError(f"{key}: {unknown} name no training stream or kind; expected some of {sorted(known)}")

    def _generator(self) -> torch.Generator:
        entropy = [self.hparams.transform_seed, self.global_rank, self.global_step]
        seed = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]) % (2**63)
        return torch.Generator().manual_seed(seed)

    def _term(
        self, name: str, step: _Step, streams: Sequence[str], loss: Callable[[torch.Tensor], torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """``{name: sample-weighted mean over streams of loss(index)}``; logs each stream's value.

        A stream takes part when its name or its kind is in ``streams``; empty when none does.
        Each stream's samples count ``stream_weights`` times in the sum, once in the count.
        """
        total, count = None, 0
        for stream, index in self._selected(step, streams).items():
            value = loss(index)
            self.log(f"train/{stream}/{name}", value, batch_size=len(index))
            factor = self.stream_weight(stream, step.kinds[stream], self.global_step)
            total = factor * value * len(index) if total is None else total + factor * value * len(index)
            count += len(index)
        return {} if total is None else {name: total / count}

    def stream_weight(self, stream: str, kind: str, step: int) -> float:
        """The factor on ``stream``'s samples (its name's weight, else its kind's, else 1) after
        ``step`` optimiser steps, with ``stream_weight_ramp`` applied (from the escape from
        blank with ``stream_weight_ramp_from_escape``)."""
        weight = self.stream_weights.get(stream, self.stream_weights.get(kind, 1.0))
        if self.stream_weight_ramp is None:
            return weight
        start, end = self.stream_weight_ramp
        if self.escape_threshold is not None:
            escape = self._escape_at
            if escape < 0:  # still blank: plain weights
                return 1.0
            start, end = start + escape, end + escape
        if step < start:
            return 1.0
        progress = 1.0 if step >= end else (step - start) / (end - start)
        return 1.0 + (weight - 1.0) * progress

    def _selected(self, step: _Step, streams: Sequence[str]) -> dict[str, torch.Tensor]:
        """The groups of ``step`` whose name or kind is in ``streams``."""
        return {s: i for s, i in step.groups.items() if s in streams or step.kinds[s] in streams}

    def training_loss(self, streams: dict[str, dict]) -> torch.Tensor:
        step = self._forward(streams)
        terms = {
            **self._supervised_terms(step),
            **self._view_terms(step),
            **self._intl_terms(step),
            **self._energy_terms(step),
        }
        if not terms:
            raise MpeSslError("no loss term applies to this batch: check weights and the streams they apply to")
        samples = len(step.names)
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=samples)
        if "supervised" in terms:
            for name in self.hparams.balanced_terms:
                if name in terms:
                    terms[name] = terms[name] * (terms["supervised"] / terms[name].clamp(min=1e-8)).detach()
        total = sum(self.weights[name] * value for name, value in terms.items())
        self.log("train/loss", total, prog_bar=True, batch_size=samples)
        return total

    # ------------------------------------------------------------------ one step
    def _forward(self, streams: dict[str, dict]) -> _Step:
        parts = list(streams.values())
        sizes = [len(part["audio"] if "audio" in part else part["features"]) for part in parts]
        names = [name for name, size in zip(streams, sizes) for _ in range(size)]
        kinds = {name: stream_kind(part) for name, part in streams.items()}
        features = self.stream_features(parts)
        audio = torch.cat([part["audio"] for part in parts]) if all("audio" in part for part in parts) else None
        groups = {
            stream: torch.tensor([i for i, n in enumerate(names) if n == stream], device=features.device)
            for stream in streams
        }
        logits, latents = self._network(features)
        return _Step(parts, names, kinds, groups, audio, features, logits, latents, self._generator())

    def _view(self, step: _Step, kind: str, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and latents of the ``timbre`` or ``percussion`` view of samples ``index``.

        Scattered back to batch positions (zeros elsewhere), computed once per step and samples.
        """
        key = (kind, tuple(index.tolist()))
        if key not in step.views:
            hp = self.hparams
            if kind == "timbre":
                view = random_equalization(
                    step.features[index], step.generator, kind=hp.equalization, **self._curve_settings()
                )[0]
            else:
                if step.audio is None:
                    raise MpeSslError("SelfSupervisedMPE: the percussion view needs 'audio' in every stream's batch")
                drums = self.drum_bank.to(step.audio.device)
                view = random_percussion(step.audio[index], drums, self.features, step.generator, hp.max_volume)[0]
            z, h = self._network(view)
            full_z, full_h = torch.zeros_like(step.logits), torch.zeros_like(step.latents)
            full_z[index], full_h[index] = z, h
            step.views[key] = (full_z, full_h)
        return step.views[key]

    def _network(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (B, bins, frames), latents (B, D, frames))`` of one network pass."""
        if self.hparams.activation_checkpointing and torch.is_grad_enabled():
            return checkpoint(self.network.forward_with_latents, features, use_reentrant=False)
        return self.network.forward_with_latents(features)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """Move the EMA teacher toward the network after the optimiser's step."""
        if self.teacher is not None:
            decay = self.hparams.ema_decay
            if self.hparams.ema_warmup:  # global_step: optimiser steps taken, this one included
                decay = min(decay, 1.0 - 1.0 / (self.global_step + 1))
            with torch.no_grad():
                for teacher, student in zip(self.teacher.parameters(), self.network.parameters()):
                    teacher.lerp_(student, 1.0 - decay)

    def _target_logits(self, step: _Step, index: torch.Tensor) -> torch.Tensor:
        """``(batch, bins, frames)`` logits whose sigmoid is the view terms' target.

        The network's own logits, or the EMA teacher's on samples ``index`` (zeros elsewhere;
        no gradient), computed once per step.
        """
        if self.teacher is None:
            return step.logits
        if "teacher" not in step.views:
            with torch.no_grad():
                target = torch.zeros_like(step.logits)
                target[index] = self.teacher.forward_with_latents(step.features[index])[0]
            step.views["teacher"] = target
        return step.views["teacher"]

    def _curve_settings(self) -> dict:
        """The EQ curve's shape parameters for :func:`random_equalization`."""
        hp = self.hparams
        if hp.equalization == "parabolic":
            return {"pointiness": hp.eq_pointiness}
        return {"max_gain": hp.eq_max_gain, "max_width": hp.eq_max_width}

    def _supervised_terms(self, step: _Step) -> dict[str, torch.Tensor]:
        if "supervised" not in self.weights:
            return {}
        # float32 whatever the logits' dtype (bf16 under mixed precision): the labels are exact
        targets = torch.zeros_like(step.logits, dtype=torch.float32)
        labelled = []
        for (stream, index), part in zip(step.groups.items(), step.parts):
            if "targets" in part and step.kinds[stream] in SUPERVISED_KINDS:
                targets[index] = part["targets"]
                labelled.append(stream)
        if self.escape_threshold is not None and labelled:
            self._watch_escape(step, targets, labelled)
        sigma = self.hparams.blur_sigma
        return self._term("supervised", step, labelled,
                          lambda i: supervised_loss(step.logits[i], targets[i], sigma))

    @torch.no_grad()
    def _watch_escape(self, step: _Step, targets: torch.Tensor, labelled: list[str]) -> None:
        """Record the escape from blank: the first step at which, of the supervised samples'
        frames with a true note, fewer than ``escape_threshold`` are predicted blank.

        ``targets`` (batch, bins, frames) are the labels at the supervised samples' rows. The
        fraction is logged as ``train/supervised_blank_fraction`` (NaN for a batch without a
        voiced frame): pooled over DDP ranks until the escape, this rank's own after it, when
        the step neither syncs nor reduces.
        """
        index = torch.cat([step.groups[s] for s in labelled])
        voiced = targets[index].amax(dim=1) > 0.5  # (n, frames): frames with a true note
        blank = (step.logits[index] <= 0).all(dim=1)  # no bin's sigmoid above 0.5
        counts = torch.stack([(voiced & blank).sum(), voiced.sum()]).float()
        escaped = self._escape_at >= 0
        if not escaped and self._trainer is not None and self.trainer.world_size > 1:
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        fraction = counts[0] / counts[1]  # NaN for a silent batch
        self.log("train/supervised_blank_fraction", fraction, batch_size=len(index))
        if escaped or counts[1] == 0:  # escaped already, or nothing to judge by
            return
        if fraction < self.escape_threshold:
            self.escape_step.fill_(self.global_step)
            self._escape_at = self.global_step
            start, end = self.stream_weight_ramp
            rank_zero_info(
                f"escape from blank at step {self.global_step} ({100 * float(fraction):.0f}% of the labelled voiced "
                f"frames blank): stream weights ramp over steps {self.global_step + start}-{self.global_step + end}"
            )

    def _max_shift_frames(self, frames: int) -> int:
        """Largest time shift for excerpts of ``frames`` frames."""
        hp = self.hparams
        return int(hp.max_shift_frames) if hp.max_shift_frames is not None else int(hp.max_shift_fraction * frames)

    def _view_terms(self, step: _Step) -> dict[str, torch.Tensor]:
        """Timbre/percussion invariance and geometric equivariance on the self-supervised streams."""
        hp, logits = self.hparams, step.logits
        groups = self._selected(step, hp.self_supervised_streams)
        if not groups:
            return {}
        ss = torch.cat(list(groups.values()))
        targets = self._target_logits(step, ss)
        sure = hp.target_confidence
        terms: dict[str, torch.Tensor] = {}
        for kind in ("timbre", "percussion"):
            if kind in self.weights:
                z_v = self._view(step, kind, ss)[0]
                terms.update(self._term(
                    kind, step, hp.self_supervised_streams,
                    lambda i, z_v=z_v: invariance_loss(z_v[i], targets[i], hp.stop_gradient, sure),
                ))
        if "geometric" in self.weights:
            moved, _, params = random_geometric(
                step.features[ss], step.generator, hp.max_shift_bins, self._max_shift_frames(logits.shape[-1]),
                hp.max_stretch, hp.shift_step_bins,
            )
            z_g = torch.zeros_like(logits)
            z_g[ss] = self._network(moved)[0]
            # params are ordered like ss; index them by each sample's position in ss
            position = torch.empty(len(step.names), dtype=torch.long, device=logits.device)
            position[ss] = torch.arange(len(ss), device=logits.device)
            terms.update(self._term(
                "geometric", step, hp.self_supervised_streams,
                lambda i: equivariance_loss(z_g[i], targets[i], params[position[i]], hp.stop_gradient,
                                            confidence=sure),
            ))
        return terms

    def _intl_terms(self, step: _Step) -> dict[str, torch.Tensor]:
        """INTL on latent frames ``(batch * frames, D)`` of the sample and its ``intl_view``."""
        hp = self.hparams
        groups = self._selected(step, hp.intl_streams)
        if "intl" not in self.weights or not groups:
            return {}
        view_latents = self._view(step, hp.intl_view, torch.cat(list(groups.values())))[1]

        def intl(i: torch.Tensor) -> torch.Tensor:
            a, b = (h[i].transpose(1, 2).reshape(-1, h.shape[1]) for h in (step.latents, view_latents))
            if hp.intl_frames is not None and len(a) > hp.intl_frames:
                pick = torch.randperm(len(a), generator=step.generator)[: hp.intl_frames].to(a.device)
                a, b = a[pick], b[pick]
            return intl_loss([a, b], beta=hp.intl_beta, T=hp.intl_iterations, axis=hp.intl_axis)

        return self._term("intl", step, hp.intl_streams, intl)

    def _energy_terms(self, step: _Step) -> dict[str, torch.Tensor]:
        """Support, harmonic, energy (EG) and sparsity terms, targets from the HCQT itself."""
        logits, features, terms = step.logits, step.features, {}
        losses = {
            "support": lambda i: support_loss(logits[i], first_harmonic(features[i])),
            "harmonic": lambda i: harmonic_loss(logits[i], harmonic_salience(features[i])),
            "energy": lambda i: energy_loss(logits[i], harmonic_salience(features[i])),
            "sparsity": lambda i: sparsity_loss(logits[i]),
        }
        for name, loss in losses.items():
            if name in self.weights:
                terms.update(self._term(name, step, self.hparams.energy_streams, loss))
        return terms
