"""A metric's scores reduced over two gloo processes, for the DDP-exactness tests."""

from __future__ import annotations

import os
import socket
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

#: items per rank: uneven, and a rank that gets none
SPLITS = {"three_one": (3, 1), "four_none": (4, 0)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, shard_scores, data, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        results = {}
        for name, split in SPLITS.items():
            start = sum(split[:rank])
            results[name] = shard_scores(start, start + split[rank], data)
        torch.save(results, os.path.join(result_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def scores_on_two_ranks(shard_scores, data) -> list[dict[str, dict[str, float]]]:
    """Per rank, ``{split name: shard_scores(start, stop, data)}`` for each split of
    :data:`SPLITS`, run in two gloo processes (``shard_scores`` builds a metric, updates it
    with items ``start .. stop`` of ``data`` and returns its computed scores: a module-level
    function, so that it pickles)."""
    with tempfile.TemporaryDirectory() as result_dir:
        mp.spawn(_worker, args=(2, free_port(), shard_scores, data, result_dir), nprocs=2, join=True)
        return [torch.load(os.path.join(result_dir, f"{rank}.pt")) for rank in range(2)]
