"""Self-supervised MPE: invariance, equivariance and energy objectives beside the supervised loss.

One training step, shapes ``(batch, ...)`` over the samples of every stream together::

    audio -> HCQT X (B, 6, 440, T) -> F -> logits z (B, 440, T)
    supervised      B(z, blur(labels))                      labelled + pseudo samples
    timbre          B(F(eq(X)), sigmoid(z))                 self-supervised streams
    percussion      B(F(HCQT(audio + v * drums)), sigmoid(z))
    geometric       B(F(T(X)), T(sigmoid(z))) under T's mask
    support/harmonic/energy/sparsity from X itself          energy streams

Each term is computed per stream and logged as ``train/<stream>/<term>``; the term's value in
the total is the sample-weighted mean over the streams it applies to. Random transforms draw
from a generator seeded by ``(transform_seed, global rank, global step)``, so DDP ranks see
different transforms and a rerun sees the same ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from mpe_ssl.data.drums import DrumBank, DrumConfig, load_drums
from mpe_ssl.errors import MpeSslError
from mpe_ssl.losses import (
    energy_loss,
    equivariance_loss,
    first_harmonic,
    harmonic_loss,
    harmonic_salience,
    invariance_loss,
    sparsity_loss,
    supervised_loss,
    support_loss,
)
from mpe_ssl.systems.base import MPESystem, stream_batches
from mpe_ssl.transforms import random_equalization, random_geometric, random_percussion

SUPERVISED_STREAMS = ("labelled", "pseudo")
TERMS = ("supervised", "timbre", "percussion", "geometric", "support", "harmonic", "energy", "sparsity")


class SelfSupervisedMPE(MPESystem):
    """Supervised loss plus any weighted subset of the self-supervised objectives.

    Args:
        weights: weight of each term of ``TERMS``; a term with weight 0 (or absent) is not
            computed. Default: supervised only.
        self_supervised_streams: streams the invariance/equivariance terms apply to (the
            paper: every sample).
        energy_streams: streams the support/harmonic/energy/sparsity terms apply to.
        stop_gradient: detach the self-supervised targets ``sigmoid(z)`` (the reference code
            does not).
        equalization: ``parabolic`` (v0.2.0) or ``gaussian`` (earlier) EQ curves.
        max_shift_bins / max_shift_frames / max_stretch: geometric transform ranges.
        max_volume: largest drum volume of the percussion overlay.
        drums: the drum loops of the percussion overlay.
        transform_seed: base seed of the random transforms.
        blur_sigma: blur of the supervised targets, in bins.
        **kwargs: see :class:`MPESystem`.
    """

    def __init__(
        self,
        weights: dict[str, float] | None = None,
        self_supervised_streams: Sequence[str] = ("labelled", "pseudo", "unlabelled"),
        energy_streams: Sequence[str] = ("labelled", "pseudo", "unlabelled"),
        stop_gradient: bool = False,
        equalization: str = "parabolic",
        max_shift_bins: int = 60,
        max_shift_frames: int = 86,
        max_stretch: float = 2.0,
        max_volume: float = 1.0,
        drums: DrumConfig | None = None,
        transform_seed: int = 0,
        blur_sigma: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        weights = {"supervised": 1.0} if weights is None else dict(weights)
        unknown = sorted(set(weights) - set(TERMS))
        if unknown:
            raise MpeSslError(f"weights: unknown term(s) {unknown}; expected some of {list(TERMS)}")
        self.weights = {term: float(w) for term, w in weights.items() if w}
        self.drum_bank: DrumBank | None = None

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if "percussion" in self.weights and self.drum_bank is None:
            self.drum_bank = load_drums(self.hparams.drums or DrumConfig())

    def _generator(self) -> torch.Generator:
        entropy = [self.hparams.transform_seed, self.global_rank, self.global_step]
        seed = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]) % (2**63)
        return torch.Generator().manual_seed(seed)

    def _term(
        self, name: str, groups: dict[str, torch.Tensor], streams: Sequence[str], loss: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor | None:
        """Sample-weighted mean over ``streams`` of ``loss(index)``; logs each stream's value."""
        total, count = None, 0
        for stream, index in groups.items():
            if stream not in streams:
                continue
            value = loss(index)
            self.log(f"train/{stream}/{name}", value, batch_size=len(index))
            total = value * len(index) if total is None else total + value * len(index)
            count += len(index)
        return None if total is None else total / count

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        parts = list(stream_batches(batch).values())
        audio = torch.cat([part["audio"] for part in parts])
        kinds = [stream for part in parts for stream in part["stream"]]
        groups = {
            stream: torch.tensor([i for i, k in enumerate(kinds) if k == stream], device=audio.device)
            for stream in dict.fromkeys(kinds)
        }
        features = self.features(audio)
        logits = self.model(features)
        hp, w = self.hparams, self.weights
        generator = self._generator()
        terms: dict[str, torch.Tensor | None] = {}

        if "supervised" in w:
            targets = torch.zeros_like(logits)
            offset = 0
            for part in parts:
                if "targets" in part:
                    targets[offset : offset + len(part["audio"])] = part["targets"]
                offset += len(part["audio"])
            labelled = {s: i for s, i in groups.items() if s in SUPERVISED_STREAMS}
            terms["supervised"] = self._term(
                "supervised", labelled, SUPERVISED_STREAMS,
                lambda i: supervised_loss(logits[i], targets[i], hp.blur_sigma),
            )

        ss_groups = {s: i for s, i in groups.items() if s in hp.self_supervised_streams}
        if ss_groups and {"timbre", "percussion", "geometric"} & set(w):
            # transformed views of the self-supervised samples, scattered back to batch positions
            ss = torch.cat(list(ss_groups.values()))

            def view_logits(view_features: torch.Tensor) -> torch.Tensor:
                full = torch.zeros_like(logits)
                full[ss] = self.model(view_features)
                return full

            def term(name: str, loss: Callable[[torch.Tensor], torch.Tensor]) -> None:
                terms[name] = self._term(name, ss_groups, hp.self_supervised_streams, loss)

            if "timbre" in w:
                z_t = view_logits(random_equalization(features[ss], generator, kind=hp.equalization)[0])
                term("timbre", lambda i: invariance_loss(z_t[i], logits[i], hp.stop_gradient))
            if "percussion" in w:
                drums = self.drum_bank.to(audio.device)
                z_p = view_logits(random_percussion(audio[ss], drums, self.hcqt, generator, hp.max_volume)[0])
                term("percussion", lambda i: invariance_loss(z_p[i], logits[i], hp.stop_gradient))
            if "geometric" in w:
                moved, _, params = random_geometric(
                    features[ss], generator, hp.max_shift_bins, hp.max_shift_frames, hp.max_stretch
                )
                z_g = view_logits(moved)
                # params are ordered like ss; index them by each sample's position in ss
                position = torch.empty(len(kinds), dtype=torch.long, device=audio.device)
                position[ss] = torch.arange(len(ss), device=audio.device)
                term("geometric", lambda i: equivariance_loss(z_g[i], logits[i], params[position[i]], hp.stop_gradient))

        if {"support", "harmonic", "energy"} & set(w):
            s1 = first_harmonic(features)
            sh = harmonic_salience(features)
        energy_terms = {
            "support": lambda i: support_loss(logits[i], s1[i]),
            "harmonic": lambda i: harmonic_loss(logits[i], sh[i]),
            "energy": lambda i: energy_loss(logits[i], sh[i]),
            "sparsity": lambda i: sparsity_loss(logits[i]),
        }
        for name, loss in energy_terms.items():
            if name in w:
                terms[name] = self._term(name, groups, hp.energy_streams, loss)

        present = {name: value for name, value in terms.items() if value is not None}
        for name, value in present.items():
            self.log(f"train/{name}", value, batch_size=len(kinds))
        total = sum(w[name] * value for name, value in present.items())
        if not present:
            raise MpeSslError("no loss term applies to this batch: check weights and the streams they apply to")
        self.log("train/loss", total, prog_bar=True, batch_size=len(kinds))
        return total
