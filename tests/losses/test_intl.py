"""IterNorm and the INTL objective: the Newton formula, the spectrum it produces, float32 under autocast."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mpe_ssl.losses.intl import IterNorm, _newton_whitening, intl_loss, intl_trace_loss


pytestmark = pytest.mark.usefixtures("one_thread")


def ill_conditioned(n: int = 512, d: int = 64, seed: int = 0) -> torch.Tensor:
    """``(n, d)`` Gaussian rows whose covariance has eigenvalues spread log-evenly over 1 .. 1e-3, rotated."""
    generator = torch.Generator().manual_seed(seed)
    eigenvalues = torch.logspace(0, -3, d, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    return ((torch.randn(n, d, generator=generator, dtype=torch.float64) * eigenvalues.sqrt()) @ rotation.T).float()


def eigenvalues(x: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (ascending, float64) of the feature covariance of ``(n, d)`` rows."""
    return torch.linalg.eigvalsh(torch.cov(x.detach().double().T))


def condition(x: torch.Tensor) -> float:
    spectrum = eigenvalues(x)
    return (spectrum[-1] / spectrum[0]).item()


def predicted_spectrum(mu: torch.Tensor, T: int) -> torch.Tensor:
    """Each eigenvalue ``mu`` of ``Sigma_N`` comes out as ``mu p_T(mu)^2``, ``p_0 = 1``, ``p_{k+1} = 1.5 p_k - 0.5 p_k^3 mu``."""
    p = torch.ones_like(mu)
    for _ in range(T):
        p = 1.5 * p - 0.5 * p**3 * mu
    return mu * p**2


def test_output_spectrum_is_the_newton_polynomial_of_the_input_spectrum():
    x = ill_conditioned()
    spectrum = eigenvalues(x)
    mu = spectrum / spectrum.sum()
    for T in (1, 4, 8):
        expected = predicted_spectrum(mu, T).sort().values
        assert torch.allclose(eigenvalues(IterNorm(64, T=T)(x)), expected, rtol=1e-3, atol=1e-7)


def test_condition_number_shrinks_as_T_grows_to_the_reported_figures():
    x = ill_conditioned()
    before = condition(x)
    after = [condition(IterNorm(64, T=T)(x)) for T in range(1, 9)]
    assert before >= 1e3  # ~1312 for this seed: sampling spreads the 1e3 of the population
    assert all(a > b for a, b in zip([before, *after], after))
    assert 380 < after[3] < 470  # T = 4 (docs/intl_spectrum.md: 427)
    assert 15 < after[7] < 22  # T = 8 (docs/intl_spectrum.md: 18.2)


@pytest.mark.parametrize("axis", ["feature", "sample"])
def test_many_iterations_converge_to_exact_whitening_of_a_well_conditioned_batch(axis):
    # Well conditioned on purpose: past convergence the Newton iteration amplifies rounding errors
    # in the directions of an ill-conditioned covariance (see IterNorm's docstring).
    torch.manual_seed(0)
    n, d = (2000, 8) if axis == "feature" else (8, 400)  # the whitened covariance is 8 x 8 either way
    x = torch.randn(n, d, dtype=torch.float64) * torch.linspace(1, 2, d, dtype=torch.float64)
    if axis == "feature":
        centred = x - x.mean(0)
        values, vectors = torch.linalg.eigh(centred.T @ centred / (n - 1))
        exact = centred @ vectors @ torch.diag(values.rsqrt()) @ vectors.T
    else:
        centred = x - x.mean(1, keepdim=True)
        values, vectors = torch.linalg.eigh(centred @ centred.T / (d - 1))
        exact = vectors @ torch.diag(values.rsqrt()) @ vectors.T @ centred
    whitened = IterNorm(d, T=16, axis=axis)(x.float())
    assert whitened.shape == x.shape and whitened.dtype == torch.float32
    assert torch.allclose(whitened.double(), exact, atol=1e-4)


def test_gradients_are_finite_for_ill_conditioned_and_rank_deficient_batches():
    for x in (ill_conditioned(), ill_conditioned(n=16)):  # 16 rows, 64 features: singular covariance
        views = [x.clone().requires_grad_(), (x + 0.01 * torch.randn_like(x)).requires_grad_()]
        for axis in ("feature", "sample"):
            loss = intl_loss(views, axis=axis)
            grads = torch.autograd.grad(loss, views)
            assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)


def test_trace_loss_is_zero_exactly_when_the_covariance_diagonal_is_ones():
    torch.manual_seed(0)
    correlated = torch.randn(300, 8) @ torch.randn(8, 8)
    unit = (correlated - correlated.mean(0)) / correlated.std(0)  # unit variances, correlated features
    assert torch.cov(unit.T).diagonal().sub(1).abs().max() < 1e-5 and torch.cov(unit.T)[0, 1].abs() > 0.1
    assert intl_trace_loss(unit) < 1e-9
    unit[:, 0] *= 2  # Cov_00 = 4: TL = (4 - 1)^2
    assert math.isclose(intl_trace_loss(unit).item(), 9.0, rel_tol=1e-5)

    rows = (correlated - correlated.mean(1, keepdim=True)) / correlated.std(1, keepdim=True)
    assert intl_trace_loss(rows, axis="sample") < 1e-9
    rows[3] *= 2
    assert math.isclose(intl_trace_loss(rows, axis="sample").item(), 9.0, rel_tol=1e-5)


def test_minimising_the_trace_loss_through_iternorm_equalises_the_spectrum():
    torch.manual_seed(0)
    d, T = 16, 4
    x = ill_conditioned(n=256, d=d)
    linear = torch.nn.Linear(d, d, bias=False)
    torch.nn.init.eye_(linear.weight)
    optimiser = torch.optim.Adam(linear.parameters(), lr=0.05)
    whiten = IterNorm(d, T=T)
    start = condition(whiten(linear(x)))
    for _ in range(150):
        loss = intl_trace_loss(whiten(linear(x)))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    # With equal eigenvalues Sigma_N = I/d, so every output eigenvalue is (1/d) p_T(1/d)^2: the loss floor.
    level = predicted_spectrum(torch.tensor(1.0 / d, dtype=torch.float64), T).item()
    assert start > 100
    assert condition(whiten(linear(x))) < 1.5
    assert math.isclose(loss.item(), d * (level - 1) ** 2, rel_tol=0.1)


def test_autocast_bfloat16_keeps_covariance_and_iterations_in_float32():
    x = ill_conditioned(n=256, d=32)
    reference = IterNorm(32)(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        guarded = IterNorm(32)(x)
        views = [x, x.flip(0)]
        assert intl_loss(views).dtype == torch.float32
        # Negative control: the same formula left to autocast runs its matrix products in bfloat16.
        centred = x - x.mean(0)
        unguarded = centred @ _newton_whitening(centred.T @ centred / (x.shape[0] - 1), 4)
    assert guarded.dtype == torch.float32
    assert torch.allclose(guarded, reference, atol=1e-5)
    assert unguarded.dtype == torch.bfloat16
    assert (unguarded.float() - reference).abs().max() > 1e-2


def test_intl_loss_follows_the_official_formula_and_default_beta():
    torch.manual_seed(0)
    views = [torch.randn(32, 64) for _ in range(3)]
    beta = 0.3
    t = [IterNorm(64)(v) for v in views]
    trace = [intl_trace_loss(w) for w in t]
    mse = [2 - 2 * F.cosine_similarity(t[i], t[0]).mean() for i in range(3)]
    expected = sum(mse[i] + beta * (trace[i] + trace[0]) for i in (1, 2)) / 2
    assert torch.allclose(intl_loss(views, beta=beta), expected, rtol=1e-6)
    # beta = 0.01 (log2 m - 3), m the global batch (32 samples here, one process) on either axis
    assert torch.allclose(intl_loss(views), intl_loss(views, beta=0.02), rtol=1e-6)
    assert not torch.allclose(intl_loss(views), intl_loss(views, beta=0.03), rtol=1e-6)
    assert torch.allclose(intl_loss(views, axis="sample"), intl_loss(views, beta=0.02, axis="sample"), rtol=1e-6)
    small = [v[:4] for v in views]  # a batch of 4: log2(4) - 3 < 0, clamped to no trace loss
    assert torch.allclose(intl_loss(small), intl_loss(small, beta=0.0))


def test_eval_mode_uses_the_batch_statistics_and_keeps_no_state():
    x = ill_conditioned(n=64, d=8)
    module = IterNorm(8)
    assert list(module.buffers()) == [] and list(module.parameters()) == []
    assert torch.equal(module.train()(x), module.eval()(x))
    assert torch.allclose(module(x[:32]), IterNorm(8)(x[:32]))  # no memory of the 64-row batch


def test_bad_inputs_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"\(batch, 8\).*\(4, 7\)"):
        IterNorm(8)(torch.randn(4, 7))
    with pytest.raises(ValueError, match="axis"):
        IterNorm(8, axis="channel")
    with pytest.raises(ValueError, match="at least 2 views"):
        intl_loss([torch.randn(4, 8)])
    with pytest.raises(ValueError, match="one \\(batch, d\\) shape"):
        intl_loss([torch.randn(4, 8), torch.randn(5, 8)])
