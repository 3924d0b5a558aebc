"""The training sampler of the mixed DataModule: sharded over ranks, new each epoch, resumable.

Indices go to each rank in turn (rank ``r`` of ``R`` takes ``i * R + r``), so ranks never
share a sample. For a dataset whose items are a function of their index alone (random
excerpts, :meth:`RenderedChorales._draw`), the indices also run on across epochs
(``epoch * len(dataset) + ...``), so every epoch draws new excerpts; a finite dataset gets
the same indices each epoch. A fit resumed in the middle of an epoch starts the sampler at
the first batch not yet trained on, so the resumed fit sees the batches an uninterrupted one
would have.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Dataset, DistributedSampler


class StreamSampler(DistributedSampler):
    """Sequential indices of one rank's shard, from ``skip`` on in the first epoch iterated.

    A ``DistributedSampler`` so that Lightning keeps it as it is under DDP (it injects its
    own sampler only where there is none of this kind).

    Args:
        dataset: the stream's dataset.
        num_replicas / rank: world size and this process's global rank.
        skip: samples of this rank already trained on in the current epoch (a resumed fit).
        across_epochs: number the indices on across epochs (datasets of random draws).
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, skip: int = 0,
                 across_epochs: bool = False) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=True)
        self.skip, self.across_epochs = int(skip), across_epochs

    def __iter__(self) -> Iterator[int]:
        total = self.num_samples * self.num_replicas
        base = self.epoch * total if self.across_epochs else 0
        start, self.skip = self.skip, 0
        return iter(range(base + start * self.num_replicas + self.rank, base + total, self.num_replicas))
