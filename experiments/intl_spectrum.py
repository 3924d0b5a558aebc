"""Condition numbers of IterNorm's output on an ill-conditioned batch; prints the tables of docs/intl_spectrum.md.

    .venv/bin/python experiments/intl_spectrum.py

Batch: 512 Gaussian rows of 64 features whose population covariance has eigenvalues spread
log-evenly over 1 .. 1e-3 (condition number 1e3), randomly rotated. "Condition number" is
max/min eigenvalue of the feature covariance (denominator N - 1), computed in float64.
"""

from __future__ import annotations

import torch

from mpe_ssl.losses.intl import IterNorm, intl_trace_loss

ROWS, DIM, SEEDS = 512, 64, range(5)


def ill_conditioned(rows: int, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    eigenvalues = torch.logspace(0, -3, dim, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return ((torch.randn(rows, dim, generator=generator, dtype=torch.float64) * eigenvalues.sqrt()) @ rotation.T).float()


def condition(x: torch.Tensor) -> float:
    if not torch.isfinite(x).all():
        return float("nan")
    spectrum = torch.linalg.eigvalsh(torch.cov(x.detach().double().T))
    return (spectrum[-1] / spectrum[0]).item()


def population(T: int) -> float:
    """Condition number for the exact covariance: each mu = lambda / tr becomes mu p_T(mu)^2."""
    mu = torch.logspace(0, -3, DIM, dtype=torch.float64)
    mu = mu / mu.sum()
    p = torch.ones_like(mu)
    for _ in range(T):
        p = 1.5 * p - 0.5 * p**3 * mu
    out = mu * p**2
    return (out.max() / out.min()).item()


def spectrum_table() -> None:
    batches = [ill_conditioned(ROWS, DIM, seed) for seed in SEEDS]
    print("| T | seed 0 | seeds 0-4 (min - max) | exact covariance |")
    print("|---|---|---|---|")
    for T in [0, *range(1, 9), 10, 12, 16]:
        values = [condition(b) if T == 0 else condition(IterNorm(DIM, T=T)(b)) for b in batches]
        label = "input" if T == 0 else str(T)
        exact = 1e3 if T == 0 else population(T)
        print(f"| {label} | {values[0]:.4g} | {min(values):.4g} - {max(values):.4g} | {exact:.4g} |")


def trace_loss_table(dim: int = 16, T: int = 4, steps: int = 150) -> None:
    """Minimise TL(IterNorm(x A)) over a linear map A (identity at start, Adam lr 0.05)."""
    torch.manual_seed(0)
    x = ill_conditioned(256, dim, seed=0)
    linear = torch.nn.Linear(dim, dim, bias=False)
    torch.nn.init.eye_(linear.weight)
    optimiser = torch.optim.Adam(linear.parameters(), lr=0.05)
    whiten = IterNorm(dim, T=T)
    print("| step | trace loss | condition number of the whitened output |")
    print("|---|---|---|")
    for step in range(steps + 1):
        w = whiten(linear(x))
        loss = intl_trace_loss(w)
        if step % 25 == 0:
            print(f"| {step} | {loss.item():.4f} | {condition(w):.4g} |")
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


if __name__ == "__main__":
    torch.set_num_threads(1)
    spectrum_table()
    print()
    trace_loss_table()
