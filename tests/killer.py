"""A callback that kills its own process, as a crash or a pre-empted job would (for tests)."""

from __future__ import annotations

import os
import signal

from lightning.pytorch import Callback


class KillAt(Callback):
    """SIGKILL the process when training reaches ``step`` (no clean-up, no last save)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
