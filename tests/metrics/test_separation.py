"""BSSEval v4 through museval: known answers on synthetic sources, NSDR, and exact DDP reduction."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.signal
import torch

from mpe_ssl.metrics import SeparationMetric, bss_eval
from tests.metrics.ddp import SPLITS, scores_on_two_ranks

SR = 22050


def _sources(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """``(2, samples)``: a harmonic tone on 220 Hz and band-passed (1-4 kHz) noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tone = sum(0.5 / k * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 6))
    b, a = scipy.signal.butter(4, [1000, 4000], btype="band", fs=SR)
    noise = scipy.signal.lfilter(b, a, rng.standard_normal(t.size))
    return np.stack([tone, 0.3 * noise / noise.std()])


def _with_noise(sources: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    """Each source plus white noise at ``snr_db`` below its own power."""
    noise = np.random.default_rng(seed).standard_normal(sources.shape)
    noise *= sources.std(axis=1, keepdims=True) / noise.std(axis=1, keepdims=True) * 10 ** (-snr_db / 20)
    return sources + noise


@pytest.fixture(scope="module")
def sources() -> np.ndarray:
    return _sources()


def test_ffmpeg_is_on_path_and_museval_imports_in_a_fresh_interpreter():
    assert shutil.which("ffmpeg") and shutil.which("ffprobe"), "make install should provide ffmpeg and ffprobe"
    done = subprocess.run([sys.executable, "-c", "import museval"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_missing_ffprobe_is_a_one_line_user_error(sources, monkeypatch):
    from mpe_ssl.errors import MpeSslError

    monkeypatch.setattr("mpe_ssl.metrics.separation.shutil.which", lambda tool: None if tool == "ffprobe" else "/x")
    with pytest.raises(MpeSslError, match=r"ffmpeg and ffprobe on PATH \(ffprobe missing\).*make install") as error:
        bss_eval(sources, sources, SR)
    assert "\n" not in str(error.value)


def test_true_sources_score_very_high_and_swapped_ones_very_low(sources):
    true = bss_eval(sources, sources, SR)
    assert set(true) == {"sdr", "sir", "sar"} and all(v.shape == (2,) for v in true.values())
    assert np.all(true["sdr"] > 60) and np.all(true["sir"] > 60) and np.all(true["sar"] > 60)
    swapped = bss_eval(sources, sources[::-1], SR)
    assert np.all(swapped["sdr"] < 0) and np.all(swapped["sir"] < -10)


@pytest.mark.parametrize("window_s", [1.0, None])
def test_added_noise_gives_an_sdr_at_its_snr(sources, window_s):
    for snr in (10.0, 20.0):
        scores = bss_eval(sources, _with_noise(sources, snr), SR, window_s=window_s)
        assert np.allclose(scores["sdr"], snr, atol=1.0), (snr, scores["sdr"])
        assert np.allclose(scores["sar"], snr, atol=1.0) and np.all(scores["sir"] > snr + 10)


def test_torch_tensors_give_the_numpy_scores(sources):
    estimates = _with_noise(sources, 15.0)
    from_numpy = bss_eval(sources, estimates, SR)
    from_torch = bss_eval(torch.from_numpy(sources).float(), torch.from_numpy(estimates).float(), SR)
    for name in ("sdr", "sir", "sar"):
        assert np.allclose(from_numpy[name], from_torch[name], atol=1e-3)


def test_nsdr_is_zero_for_the_mixture_and_the_sdr_gain_otherwise(sources):
    mixture = sources.sum(axis=0)
    doing_nothing = bss_eval(sources, np.stack([mixture, mixture]), SR, mixture=mixture)
    assert np.array_equal(doing_nothing["nsdr"], [0.0, 0.0])
    # the mixture as the estimate of one source: its SDR is about the power ratio to the other
    ratio = 10 * np.log10(np.mean(sources[0] ** 2) / np.mean(sources[1] ** 2))
    assert np.allclose(doing_nothing["sdr_mixture"], [ratio, -ratio], atol=0.5), (ratio, doing_nothing["sdr_mixture"])
    for estimates in (sources, _with_noise(sources, 20.0)):
        with_mixture = bss_eval(sources, estimates, SR, mixture=mixture)
        alone = bss_eval(sources, estimates, SR)
        assert np.array_equal(with_mixture["sdr"], alone["sdr"])
        assert np.array_equal(with_mixture["sdr_mixture"], doing_nothing["sdr_mixture"])
        assert np.array_equal(with_mixture["nsdr"], alone["sdr"] - doing_nothing["sdr_mixture"])
    assert np.allclose(with_mixture["nsdr"], [20 - ratio, 20 + ratio], atol=1.0)


def test_mismatched_shapes_are_refused(sources):
    with pytest.raises(ValueError, match="must both be"):
        bss_eval(sources, sources[:, :-1], SR)
    with pytest.raises(ValueError, match="must both be"):
        bss_eval(sources[0], sources[0], SR)
    with pytest.raises(ValueError, match="mixture"):
        bss_eval(sources, sources, SR, mixture=sources)
    with pytest.raises(ValueError, match="must both be"):
        SeparationMetric(SR).update(torch.zeros(1, 2, 100), torch.zeros(1, 3, 100))


def test_silent_windows_are_left_out_of_the_median_and_silent_sources_out_of_the_mean(sources):
    quiet = sources.copy()
    quiet[0, SR : 2 * SR] = 0.0  # the tone pauses in the middle second: museval's window is NaN
    estimates = quiet + (_with_noise(sources, 10.0) - sources)  # 10 dB below the playing tone
    estimates[0, SR : 2 * SR] = 0.0
    scores = bss_eval(quiet, estimates, SR)
    assert np.all(np.isfinite(scores["sdr"])) and np.allclose(scores["sdr"], 10.0, atol=1.0)
    silent = sources.copy()
    silent[1] = 0.0  # a source that never plays: museval cannot score the item at all
    assert np.all(np.isnan(bss_eval(silent, sources, SR)["sdr"]))
    metric = SeparationMetric(SR)
    good = _with_noise(sources, 10.0)
    metric.update(torch.from_numpy(np.stack([good, sources])), torch.from_numpy(np.stack([sources, silent])))
    expected = bss_eval(sources, good, SR)
    assert metric.compute()["sdr"].item() == pytest.approx(expected["sdr"].mean(), abs=1e-12)
    assert metric.compute()["sdr/1"].item() == pytest.approx(expected["sdr"][1], abs=1e-12)


def _batch(items: int = 4, seconds: float = 2.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(items, 2, samples)`` estimates and references at different SNRs, and ``(items, samples)`` mixtures."""
    references = np.stack([_sources(seconds, seed=item) for item in range(items)])
    estimates = np.stack([_with_noise(references[item], 5.0 + 4 * item, seed=10 + item) for item in range(items)])
    return torch.from_numpy(estimates), torch.from_numpy(references), torch.from_numpy(references.sum(axis=1))


def test_metric_is_the_mean_of_bss_eval_over_items_and_sources():
    estimates, references, mixtures = _batch(3)
    metric = SeparationMetric(SR)
    metric.update(estimates[:2], references[:2], mixtures[:2])
    metric.update(estimates[2:], references[2:], mixtures[2:])
    scores = metric.compute()
    per_item = [bss_eval(references[i], estimates[i], SR, mixture=mixtures[i]) for i in range(3)]
    for name in ("sdr", "sir", "sar", "nsdr"):
        values = np.stack([item[name] for item in per_item])  # (items, sources)
        assert scores[name].item() == pytest.approx(values.mean(), abs=1e-12)
        for source in range(2):
            assert scores[f"{name}/{source}"].item() == pytest.approx(values[:, source].mean(), abs=1e-12)
    assert 8 < scores["sdr"].item() < 16, "the SNRs 5, 9 and 13 dB should average about 9 dB"
    without = SeparationMetric(SR)
    without.update(estimates, references)
    assert "nsdr" not in without.compute()


def _shard_scores(start: int, stop: int, batch) -> dict[str, float]:
    estimates, references, mixtures = batch
    metric = SeparationMetric(SR)
    for item in range(start, stop):  # one track per update, as at batch size 1
        metric.update(estimates[item : item + 1], references[item : item + 1], mixtures[item : item + 1])
    return {key: value.item() for key, value in metric.compute().items()}


def test_ddp_reduction_equals_one_process_over_all_items_exactly():
    batch = _batch(4)
    single = SeparationMetric(SR)
    single.update(*batch)
    expected = {key: value.item() for key, value in single.compute().items()}
    results = scores_on_two_ranks(_shard_scores, batch)
    assert set(expected) >= {"sdr", "sir", "sar", "nsdr", "sdr/0", "sdr/1", "nsdr/1"}
    for rank in range(2):
        for name in SPLITS:
            assert results[rank][name] == expected, (rank, name)
    # without the gather, rank 0 would report the mean of its own three items: another number
    alone = SeparationMetric(SR)
    alone.update(*(x[:3] for x in batch))
    assert alone.compute()["sdr"].item() != pytest.approx(expected["sdr"], abs=0.1)
