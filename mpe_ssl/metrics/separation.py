"""Source-separation SDR / SIR / SAR (BSSEval v4, scored by ``museval``) and NSDR.

``museval.evaluate`` (BSSEval v4 in its ``bss_eval_images`` form, with one distortion filter
of 512 taps per source fitted on the whole signal) scores each window of ``window_s`` seconds
every ``hop_s`` seconds; a track's score per source is the median over those windows,
ignoring the NaN ones (the SiSEC 2018 convention). museval leaves a window NaN, for every
source at once, when any reference or estimated source is silent (sums to exactly 0) in it,
and only whole windows are scored: a last partial window is dropped.

NSDR (Ewert & Sandler 2017) is the SDR of the estimate minus the SDR of the mixture taken
as the estimate of every source: the improvement over doing nothing.

``museval`` is imported lazily: it imports ``musdb`` and ``stempeg``, which refuse to import
unless ``ffmpeg`` and ``ffprobe`` are on PATH (``make install`` provides them).
"""

from __future__ import annotations

import contextlib
import shutil
import warnings

import numpy as np
import torch
from torchmetrics import Metric

from mpe_ssl.errors import MpeSslError


NAMES = ("sdr", "sir", "sar")


def _museval():
    """The ``museval`` module, or a one-line MpeSslError when ffmpeg / ffprobe are missing."""
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        raise MpeSslError(f"museval needs ffmpeg and ffprobe on PATH ({' and '.join(missing)} missing): run make install")
    try:
        import museval
    except (ImportError, RuntimeError) as error:  # stempeg raises RuntimeError without ffmpeg
        raise MpeSslError(f"museval cannot be imported ({error}); run make install") from error
    return museval


def _one_blas_thread():
    """Limit numpy's and scipy's OpenBLAS to one thread, if ``threadpoolctl`` is installed.

    museval's many small solves run several times slower on several BLAS threads next to
    torch's OpenMP pool (0.08 s against 0.58 s for 2 s of 2 sources on 2 cores).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # only a speed-up
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _window(seconds: float | None, sample_rate: float, samples: int, name: str) -> int:
    """Seconds to a whole number of samples; ``None``: the whole signal."""
    if seconds is None:
        return samples
    if not seconds > 0:
        raise ValueError(f"{name}: {seconds!r} must be a positive number of seconds or None")
    return max(1, int(round(seconds * sample_rate)))


def _median_scores(museval, references: np.ndarray, estimates: np.ndarray, win: int, hop: int) -> dict[str, np.ndarray]:
    """Per-source nan-median over museval's windows of SDR, SIR, SAR; NaN if a whole source is silent."""
    sources = references.shape[0]
    # museval raises on a source that is silent (sums to 0) over the whole signal; it scores
    # such windows NaN for all sources, and so do we for such signals.
    if np.any(references.sum(axis=1) == 0) or np.any(estimates.sum(axis=1) == 0):
        return {name: np.full(sources, np.nan) for name in NAMES}
    sdr, _isr, sir, sar = museval.evaluate(references[..., None], estimates[..., None], win=win, hop=hop)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN sources: NaN, as wanted
        return {name: np.nanmedian(values, axis=1) for name, values in zip(NAMES, (sdr, sir, sar))}


def bss_eval(references: np.ndarray | torch.Tensor, estimates: np.ndarray | torch.Tensor, sample_rate: float, *,
             mixture: np.ndarray | torch.Tensor | None = None, window_s: float | None = 1.0,
             hop_s: float | None = 1.0) -> dict[str, np.ndarray]:
    """BSSEval v4 SDR, SIR and SAR of each source, via ``museval.evaluate``.

    Args:
        references: ``(sources, samples)`` mono true sources.
        estimates: ``(sources, samples)`` mono estimates, in the order of ``references``
            (no permutation is searched).
        sample_rate: in Hz, to turn ``window_s`` and ``hop_s`` into samples.
        mixture: ``(samples,)``; when given, also NSDR.
        window_s: museval's window in seconds; ``None``: one window over the whole signal.
        hop_s: museval's hop in seconds (ignored when ``window_s`` is ``None``).

    Returns:
        ``sdr``, ``sir``, ``sar``: ``(sources,)`` in dB, each the median over museval's
        windows ignoring NaN windows (the SiSEC convention). A window in which any source
        (reference or estimate) is silent is NaN in museval, and a source with no other
        window is NaN here; a reference or estimate silent over the whole signal makes every
        source NaN. A bit-exact estimate scores ``+inf``. With ``mixture``, also
        ``sdr_mixture`` (the SDR of the mixture as the estimate of every source) and
        ``nsdr = sdr - sdr_mixture``.
    """
    references, estimates = _as_numpy(references), _as_numpy(estimates)
    if references.ndim != 2 or references.shape != estimates.shape:
        raise ValueError(
            f"references {references.shape} and estimates {estimates.shape} must both be (sources, samples)"
        )
    if not sample_rate > 0:
        raise ValueError(f"sample_rate: {sample_rate!r} must be positive")
    samples = references.shape[1]
    win = _window(window_s, sample_rate, samples, "window_s")
    hop = samples if window_s is None else _window(hop_s, sample_rate, samples, "hop_s")
    if mixture is not None:
        mixture = _as_numpy(mixture)
        if mixture.shape != (samples,):
            raise ValueError(f"mixture {mixture.shape} must be (samples,) = ({samples},)")
    museval = _museval()
    with _one_blas_thread():
        scores = _median_scores(museval, references, estimates, win, hop)
        if mixture is not None:
            doing_nothing = np.repeat(mixture[None], references.shape[0], axis=0)
            scores["sdr_mixture"] = _median_scores(museval, references, doing_nothing, win, hop)["sdr"]
            scores["nsdr"] = scores["sdr"] - scores["sdr_mixture"]
    return scores


class SeparationMetric(Metric):
    """Mean BSSEval v4 SDR, SIR, SAR (and NSDR) over tracks and sources, via :func:`bss_eval`.

    ``update(estimates, references, mixture=None)`` takes ``(batch, sources, samples)``
    estimates and references and optionally ``(batch, samples)`` mixtures (then NSDR too);
    every update must have the same number of sources, and give mixtures always or never.
    Each track is scored on the CPU with numpy; its per-source values are kept in list
    states reduced with ``cat``, so under DDP every rank computes the mean over exactly the
    values one process would have computed over all the tracks.

    ``compute()`` returns ``sdr``, ``sir``, ``sar`` (and ``nsdr``): the mean over tracks and
    sources, and ``sdr/<i>``, ... the mean over tracks of source ``i``. Means are NaN-means:
    a source or track that museval cannot score (silent in every window) is left out instead
    of making the mean NaN; a mean with nothing to average is NaN.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, sample_rate: float, window_s: float | None = 1.0, hop_s: float | None = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if not sample_rate > 0:
            raise ValueError(f"sample_rate: {sample_rate!r} must be positive")
        self.sample_rate, self.window_s, self.hop_s = sample_rate, window_s, hop_s
        # per-track rows of per-source values, flattened: states of every rank stay 1-D so
        # that a rank without tracks (an empty state) still gathers
        for name in (*NAMES, "nsdr"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("sources", default=torch.tensor(0.0), dist_reduce_fx="max")
        self.set_dtype(torch.float64)  # the dB values exactly as museval gives them

    def update(self, estimates: torch.Tensor, references: torch.Tensor, mixture: torch.Tensor | None = None) -> None:
        if estimates.shape != references.shape or estimates.ndim != 3:
            raise ValueError(
                f"estimates {tuple(estimates.shape)} and references {tuple(references.shape)} must both be "
                "(batch, sources, samples)"
            )
        if mixture is not None and tuple(mixture.shape) != (estimates.shape[0], estimates.shape[2]):
            raise ValueError(f"mixture {tuple(mixture.shape)} must be (batch, samples) = "
                             f"({estimates.shape[0]}, {estimates.shape[2]})")
        sources = estimates.shape[1]
        if self.sources.item() not in (0, sources):
            raise ValueError(f"estimates have {sources} sources, earlier updates had {int(self.sources.item())}")
        self.sources.fill_(sources)
        estimates, references = _as_numpy(estimates), _as_numpy(references)
        mixture = None if mixture is None else _as_numpy(mixture)
        for index in range(estimates.shape[0]):
            scores = bss_eval(references[index], estimates[index], self.sample_rate,
                              mixture=None if mixture is None else mixture[index],
                              window_s=self.window_s, hop_s=self.hop_s)
            for name in (*NAMES, "nsdr") if mixture is not None else NAMES:
                getattr(self, name).append(torch.as_tensor(scores[name], dtype=torch.float64, device=self.device))

    def compute(self) -> dict[str, torch.Tensor]:
        sources = int(self.sources.item())
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=self.device)
        result = {}
        for name in (*NAMES, "nsdr"):
            state = getattr(self, name)
            values = torch.cat(state) if isinstance(state, list) and state else state
            if isinstance(values, list) or values.numel() == 0:  # no tracks (no mixtures: no nsdr)
                if name != "nsdr":
                    result.update({name: nan, **{f"{name}/{source}": nan for source in range(sources)}})
                continue
            values = values.reshape(-1, sources)
            result[name] = values.nanmean()
            for source in range(sources):
                result[f"{name}/{source}"] = values[:, source].nanmean()
        return result
