"""Watch the eigenvalue spectrum of the autoencoder's latent, per validation stream.

A latent that collapses (to one direction, or to a constant) shows it in its spectrum long
before the predictions go blank. After each validation this callback has, per stream, the
eigenvalues of the covariance of the latent frames (``(frames, D)`` over the first
``max_batches`` validation batches, sums reduced over DDP ranks), and from them:

- effective rank ``exp(H(p))``, ``p_i = lambda_i / sum_j lambda_j`` (1 .. D);
- condition number ``lambda_max / lambda_min`` (``lambda_min`` floored at ``1e-12 lambda_max``).

Both are logged as ``val/<stream>/latent_effective_rank`` and ``.../latent_condition``; the
spectra and their history are plotted to ``<log dir>/<filename>``.
"""

from __future__ import annotations

import math

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from mpe_ssl.callbacks.figures import save_figure


def spectrum_stats(covariance: torch.Tensor) -> dict[str, object]:
    """Eigenvalues (descending), effective rank and condition number of a ``(D, D)`` covariance."""
    eigenvalues = torch.linalg.eigvalsh(covariance.double()).clamp(min=0).flip(0)
    top = float(eigenvalues[0])
    if top <= 0:
        return {"eigenvalues": eigenvalues.tolist(), "effective_rank": 0.0, "condition": math.inf}
    p = eigenvalues / eigenvalues.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    condition = top / max(float(eigenvalues[-1]), 1e-12 * top)
    return {"eigenvalues": eigenvalues.tolist(), "effective_rank": float(entropy.exp()), "condition": condition}


class SpectrumMonitor(Callback):
    """Latent spectrum, effective rank and condition number per validation stream over training.

    Args:
        max_batches: validation batches per stream whose latent frames enter the covariance.
        filename: the plot, written to the trainer's log dir (PNG).
    """

    def __init__(self, max_batches: int = 4, filename: str = "spectrum.png") -> None:
        self.max_batches, self.filename = max_batches, filename
        self.sums: dict[str, list[torch.Tensor]] = {}
        self.history: dict[str, list[dict]] = {}
        self.steps: list[int] = []

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.sums = {}

    @torch.no_grad()
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx >= self.max_batches:
            return
        stream = list(pl_module.eval_streams("val"))[dataloader_idx]
        latents = pl_module.network.encode(pl_module.batch_features(batch))  # (B, D, T)
        frames = latents.transpose(1, 2).reshape(-1, latents.shape[1]).double()
        sums = self.sums.setdefault(stream, [frames.new_zeros(()), frames.new_zeros(frames.shape[1]),
                                             frames.new_zeros(frames.shape[1], frames.shape[1])])
        sums[0] += len(frames)
        sums[1] += frames.sum(0)
        sums[2] += frames.T @ frames

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not self.sums:
            return
        self.steps.append(trainer.global_step)
        for stream in pl_module.eval_streams("val"):
            if stream not in self.sums:
                continue
            count, total, outer = (trainer.strategy.reduce(t, reduce_op="sum") for t in self.sums[stream])
            mean = total / count
            stats = spectrum_stats(outer / count - torch.outer(mean, mean))
            self.history.setdefault(stream, []).append(stats)
            pl_module.log(f"val/{stream}/latent_effective_rank", stats["effective_rank"])
            pl_module.log(f"val/{stream}/latent_condition", min(stats["condition"], 1e12))
        self._plot(trainer)

    @rank_zero_only
    def _plot(self, trainer: Trainer) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.4))
        for stream, history in self.history.items():
            eigenvalues = torch.tensor(history[-1]["eigenvalues"]).clamp(min=1e-12)
            line = left.semilogy(eigenvalues / eigenvalues[0], label=f"{stream} (step {self.steps[-1]})")[0]
            steps = self.steps[-len(history):]
            middle.plot(steps, [h["effective_rank"] for h in history], marker="o", color=line.get_color(), label=stream)
            right.semilogy(steps, [h["condition"] for h in history], marker="o", color=line.get_color(), label=stream)
        left.set(title="latent spectrum (normalised)", xlabel="eigenvalue index")
        middle.set(title="effective rank", xlabel="step")
        right.set(title="condition number", xlabel="step")
        for axis in (left, middle, right):
            axis.grid(alpha=0.3)
            axis.legend()
        figure.tight_layout()
        save_figure(figure, trainer, self.filename)

    def state_dict(self) -> dict:
        return {"history": self.history, "steps": self.steps}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history, self.steps = state_dict["history"], state_dict["steps"]
