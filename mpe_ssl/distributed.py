"""Gather a batch from every rank so that gradients flow back to the rank that made each row.

Batch statistics (a covariance, a whitening matrix) must be computed over the *global* batch
under DDP. A plain ``dist.all_reduce`` / ``dist.all_gather`` gives the right value but no
gradient through the other ranks' rows, so each rank's gradient misses the terms coming from
everyone else's loss. :func:`gather_with_grad` is the differentiable version.

Gradient convention (what the tests in ``tests/test_distributed.py`` check). When every rank
computes the same global loss ``L`` from gathered tensors, the backward of the gather sums the
gradient over ranks, so a rank's local input ``x_r`` receives ``world_size * dL/dx_r`` (the
gradient of the sum of the ``world_size`` identical per-rank losses). DDP then *averages*
parameter gradients over ranks, which cancels that factor: parameter gradients equal the
single-process gradient on the full batch. So: return the global loss on every rank and do
**not** divide it by ``world_size``.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
import torch.distributed as dist


def world_size() -> int:
    """Number of processes in the default group; 1 when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def global_rank() -> int:
    """Rank of this process: from torch.distributed when initialised, else ``$RANK`` (0 alone)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", 0))


class Gathered(NamedTuple):
    """The global batch and where this rank's rows lie in it.

    Attributes:
        batch: ``(sum of per-rank batch sizes, ...)``, the ranks' tensors concatenated in rank order.
        rows: slice of ``batch`` along dim 0 holding this rank's own rows.
    """

    batch: torch.Tensor
    rows: slice


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 with known per-rank sizes; backward sums over ranks, keeps own rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: list[int], rows: slice) -> torch.Tensor:
        padded = x.new_zeros((max(sizes), *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        ctx.rows = rows
        return torch.cat([part[:size] for part, size in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grad = grad.clone(memory_format=torch.contiguous_format)  # all_reduce writes in place
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rows], None, None


def gather_with_grad(x: torch.Tensor) -> Gathered:
    """Concatenate ``x`` from every rank along dim 0, keeping gradients across ranks.

    Forward: ``all_gather`` (per-rank batch sizes may differ). Backward: the gradient w.r.t. the
    gathered batch is summed over ranks (``all_reduce``) and each rank keeps the slice of its own
    rows, so ``x.grad`` is the derivative of the *sum over ranks* of the losses built on the
    gathered batch (see the module docstring for the ``world_size`` convention). Every rank must
    call it, in the same order. Without an initialised process group (or with one process) it
    returns ``x`` itself.

    Args:
        x: ``(batch, ...)`` this rank's rows.

    Returns:
        :class:`Gathered` ``(batch, rows)``: the ``(global batch, ...)`` tensor and the slice of
        this rank's rows in it.
    """
    if world_size() == 1:
        return Gathered(x, slice(0, x.shape[0]))
    size = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(world_size())]
    dist.all_gather(sizes, size)
    sizes = [int(s.item()) for s in sizes]
    start = sum(sizes[: dist.get_rank()])
    rows = slice(start, start + x.shape[0])
    return Gathered(_GatherWithGrad.apply(x.contiguous(), sizes, rows), rows)
