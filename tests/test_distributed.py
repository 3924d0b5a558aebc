"""INTL under DDP: two gloo processes, each holding part of the batch, match one process on all of it.

The workers are spawned with torch.multiprocessing (a real process group and a real
``DistributedDataParallel``), save what they computed, and the parent compares. Convention
checked (see ``mpe_ssl/distributed.py``): every rank's loss is the full-batch loss; a rank's
input gradient is ``world_size`` times the full-batch gradient of its rows; the linear layer's
gradient after DDP's averaging is the full-batch gradient.
"""

from __future__ import annotations

from unittest import mock

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from mpe_ssl.distributed import Gathered, gather_with_grad, world_size
from mpe_ssl.losses.intl import intl_loss

WORLD = 2
BATCH, DIM, VIEWS = 16, 8, 3
# (axis, rows per rank, beta): equal halves for both axes, and an uneven split.
CASES = [("feature", (8, 8), None), ("sample", (8, 8), None), ("feature", (10, 6), 0.05)]


def make_inputs() -> tuple[list[torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(DIM, DIM, generator=generator)
    views = [torch.randn(BATCH, DIM, generator=generator) @ mixing for _ in range(VIEWS)]
    return views, torch.eye(DIM) + 0.2 * torch.randn(DIM, DIM, generator=generator)


def ddp_step(views, weight, sizes, rank, axis, beta) -> dict:
    """One INTL step on this rank's rows through a shared linear layer (wrapped in DDP when distributed)."""
    start = sum(sizes[:rank])
    local = [view[start : start + sizes[rank]].clone().requires_grad_() for view in views]
    layer = torch.nn.Linear(DIM, DIM, bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    model = DistributedDataParallel(layer) if world_size() > 1 else layer
    embeddings = model(torch.cat(local)).split(sizes[rank])  # one forward per backward, as DDP expects
    loss = intl_loss(list(embeddings), beta=beta, axis=axis)
    loss.backward()
    return {"loss": loss.detach(), "inputs": [x.grad for x in local], "weight": layer.weight.grad.clone()}


def plain_gather(x: torch.Tensor) -> Gathered:
    """The pitfall: the right values from every rank, but gradients only through this rank's own rows
    (what a plain ``dist.all_reduce`` of a covariance or ``dist.all_gather`` gives)."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    rank = dist.get_rank()
    parts[rank] = x
    return Gathered(torch.cat(parts), slice(rank * x.shape[0], (rank + 1) * x.shape[0]))


def worker(rank: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=WORLD)
    try:
        views, weight = make_inputs()
        batch, rows = gather_with_grad(torch.full((rank + 1, 2), float(rank)))
        results = {"gathered": batch, "rows": (rows.start, rows.stop)}
        results["cases"] = [ddp_step(views, weight, sizes, rank, axis, beta) for axis, sizes, beta in CASES]
        with mock.patch("mpe_ssl.losses.intl.gather_with_grad", plain_gather):
            results["plain"] = ddp_step(views, weight, (8, 8), rank, "feature", None)
        torch.save(results, f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(worker, args=(str(folder),), nprocs=WORLD, join=True)
    return [torch.load(folder / f"rank{rank}.pt") for rank in range(WORLD)]


def single_process(axis: str, beta: float | None) -> dict:
    views, weight = make_inputs()
    return ddp_step(views, weight, (BATCH,), 0, axis, beta)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


def test_without_a_process_group_the_gather_is_the_identity():
    x = torch.randn(5, 3)
    gathered = gather_with_grad(x)
    assert world_size() == 1 and gathered.batch is x and gathered.rows == slice(0, 5)


def test_gather_concatenates_uneven_batches_in_rank_order(ranks):
    expected = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    assert all(torch.equal(r["gathered"], expected) for r in ranks)
    assert [r["rows"] for r in ranks] == [(0, 1), (1, 3)]


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{a}-{s[0]}+{s[1]}" for a, s, _ in CASES])
def test_two_ranks_match_one_process_on_the_full_batch(ranks, case):
    axis, sizes, beta = CASES[case]
    reference = single_process(axis, beta)
    for rank, result in enumerate(ranks):
        got = result["cases"][case]
        start = sum(sizes[:rank])
        assert close(got["loss"], reference["loss"])
        for grad, full in zip(got["inputs"], reference["inputs"]):
            assert close(grad, WORLD * full[start : start + sizes[rank]])
        assert close(got["weight"], reference["weight"])


def test_plain_reduction_gives_the_right_loss_but_wrong_gradients(ranks):
    """Negative control: the comparison above fails when the statistics are reduced without gradient."""
    reference = single_process("feature", None)
    for result in ranks:
        plain = result["plain"]
        assert close(plain["loss"], reference["loss"])
        assert not close(plain["weight"], reference["weight"])
        error = (plain["weight"] - reference["weight"]).norm() / reference["weight"].norm()
        assert error > 0.1
