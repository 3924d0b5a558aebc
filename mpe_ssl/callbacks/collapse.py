"""Watch every stream for the blank-prediction collapse of self-supervised MPE.

The systems log, per validation stream ``s`` (see :class:`~mpe_ssl.systems.MPESystem`),
``val/<s>/recall``, ``val/<s>/f1``, ``val/<s>/mean_salience``, ``val/<s>/blank_fraction`` and
``val/<s>/silent_fraction``. After each validation this callback reads those reduced values,
keeps their history, and calls a stream *degenerate* when

    blank_fraction - silent_fraction > blank_margin   or   recall < min_recall

while another stream *holds* (recall >= healthy_recall). It then warns (every rank sees the
same reduced metrics, so every rank decides alike) and, if ``stop`` is set, stops training.
It plots the curves over training steps to ``<log dir>/<filename>``.
"""

from __future__ import annotations

import re

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from mpe_ssl.callbacks.figures import save_figure

KEYS = ("recall", "f1", "mean_salience", "blank_fraction", "silent_fraction")
_PATTERN = re.compile(r"^val/([^/]+)/(" + "|".join(KEYS) + r")$")


class CollapseMonitor(Callback):
    """Warn (and optionally stop) when one stream collapses to blank predictions while another holds.

    Args:
        blank_margin: how many more frames may be predicted blank than are truly silent.
        min_recall: a stream below this recall is degenerate.
        healthy_recall: a stream at or above this recall holds.
        patience: validations in a row a collapse must persist before acting.
        stop: stop training when it acts.
        filename: the plot, written to the trainer's log dir (PNG).
    """

    def __init__(
        self,
        blank_margin: float = 0.5,
        min_recall: float = 0.1,
        healthy_recall: float = 0.5,
        patience: int = 1,
        stop: bool = False,
        filename: str = "collapse.png",
    ) -> None:
        self.blank_margin, self.min_recall, self.healthy_recall = blank_margin, min_recall, healthy_recall
        self.patience, self.stop, self.filename = patience, stop, filename
        self.history: dict[str, dict[str, list[float]]] = {}
        self.steps: list[int] = []
        self.strikes = 0
        self.collapsed: list[str] = []

    def _read(self, trainer: Trainer) -> dict[str, dict[str, float]]:
        values: dict[str, dict[str, float]] = {}
        for key, value in trainer.callback_metrics.items():
            match = _PATTERN.match(key)
            if match:
                values.setdefault(match.group(1), {})[match.group(2)] = float(value)
        return values

    def degenerate(self, values: dict[str, float]) -> bool:
        blank_excess = values.get("blank_fraction", 0.0) - values.get("silent_fraction", 0.0)
        return blank_excess > self.blank_margin or values.get("recall", 1.0) < self.min_recall

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        streams = self._read(trainer)
        if not streams:
            return
        self.steps.append(trainer.global_step)
        for stream, values in streams.items():
            series = self.history.setdefault(stream, {key: [] for key in KEYS})
            for key in KEYS:
                series[key].append(values.get(key, float("nan")))
        collapsed = [s for s, v in streams.items() if self.degenerate(v)]
        holding = [s for s, v in streams.items() if v.get("recall", 0.0) >= self.healthy_recall and s not in collapsed]
        self.strikes = self.strikes + 1 if collapsed and holding else 0
        self.collapsed = collapsed if self.strikes else []
        if self.strikes >= self.patience:
            details = "; ".join(
                f"'{s}': {100 * streams[s].get('blank_fraction', 0):.0f}% frames blank vs "
                f"{100 * streams[s].get('silent_fraction', 0):.0f}% silent, recall {streams[s].get('recall', 0):.2f}"
                for s in collapsed
            )
            held = ", ".join(f"'{s}' recall {streams[s]['recall']:.2f}" for s in holding)
            rank_zero_warn(f"CollapseMonitor at step {trainer.global_step}: blank-prediction collapse on {details}, "
                           f"while {held} holds")
            if self.stop:
                trainer.should_stop = trainer.strategy.reduce_boolean_decision(True, all=False)
        self._plot(trainer)

    @rank_zero_only
    def _plot(self, trainer: Trainer) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = ("f1", "recall", "mean_salience", "blank_fraction")
        figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
        for axis, key in zip(axes[0], panels):
            for stream, series in self.history.items():
                line = axis.plot(self.steps, series[key], marker="o", label=stream)[0]
                if key == "blank_fraction":
                    axis.plot(self.steps, series["silent_fraction"], linestyle=":", color=line.get_color())
            axis.set_title(key.replace("_", " ") + (" (dotted: truly silent)" if key == "blank_fraction" else ""))
            axis.set_xlabel("step")
            axis.grid(alpha=0.3)
        axes[0][0].legend()
        figure.tight_layout()
        save_figure(figure, trainer, self.filename)

    def state_dict(self) -> dict:
        return {"history": self.history, "steps": self.steps, "strikes": self.strikes}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = state_dict["history"]
        self.steps = state_dict["steps"]
        self.strikes = state_dict["strikes"]
