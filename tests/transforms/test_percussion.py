"""Drum loops from the SoundFont and the percussion overlay (tests of mpe_ssl.data.drums too)."""

import json

import numpy as np
import pytest
import torch

from mpe_ssl.audio.hcqt import HCQT
from mpe_ssl.data.drums import DrumBank, DrumConfig, drum_pattern, load_drums, render_drums, render_loop
from mpe_ssl.transforms import PercussionParams, overlay_percussion, random_percussion

SMALL = DrumConfig(num_patterns=2, bars=1)


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> DrumBank:
    return load_drums(SMALL, tmp_path_factory.mktemp("drums") / "small")


def test_patterns_use_gm_percussion_keys_and_differ_by_seed():
    pattern = drum_pattern(SMALL, 0)
    keys = {key for _, key, _ in pattern["hits"]}
    assert {35, 36} & keys and {37, 38, 39, 40} & keys  # a kick and a snare
    assert all(27 <= key <= 87 for key in keys) and 70 <= pattern["tempo_bpm"] <= 160
    assert drum_pattern(SMALL, 0) == pattern
    assert drum_pattern(DrumConfig(seed=1, bars=1), 0) != pattern


def test_loops_are_non_silent_and_deterministic_from_the_seed():
    loop = render_loop(SMALL, 0)
    assert loop.dtype == np.float32 and np.isclose(np.abs(loop).max(), 0.9)
    assert np.sqrt(np.mean(loop**2)) > 0.01
    assert len(loop) == drum_pattern(SMALL, 0)["num_samples"]
    assert np.array_equal(loop, render_loop(SMALL, 0))
    assert not np.array_equal(loop, render_loop(DrumConfig(seed=7, bars=1), 0)[: len(loop)])


def test_cache_is_written_once_and_loads_back(tmp_path):
    root = render_drums(SMALL, tmp_path / "cache")
    meta = json.loads((root / "meta.json").read_text())
    assert [p["file"] for p in meta["patterns"]] == ["pattern_000.wav", "pattern_001.wav"]
    stamp = (root / "pattern_000.wav").stat().st_mtime_ns
    assert render_drums(SMALL, root) == root and (root / "pattern_000.wav").stat().st_mtime_ns == stamp
    assert not (tmp_path / ".tmp").exists() or not any((tmp_path / ".tmp").iterdir())
    bank = load_drums(SMALL, root)
    assert np.allclose(bank.audio[0, : bank.lengths[0]].numpy(), render_loop(SMALL, 0))


def test_excerpts_have_the_asked_length_wrap_around_and_follow_the_generator(bank):
    longest = int(bank.lengths.max())
    a = bank.excerpts(3, longest + 500, torch.Generator().manual_seed(0))
    b = bank.excerpts(3, longest + 500, torch.Generator().manual_seed(0))
    c = bank.excerpts(3, longest + 500, torch.Generator().manual_seed(1))
    assert a.shape == (3, longest + 500) and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.all(a.abs().amax(dim=1) > 0.1)  # no excerpt runs into silent padding


def test_overlay_adds_drums_at_a_volume_within_unit_range_and_recomputes_the_hcqt(bank):
    hcqt = HCQT()
    t = torch.arange(4096) / 22050
    audio = 0.5 * torch.sin(2 * torch.pi * 440 * t).repeat(2, 1)
    features, params = random_percussion(audio, bank, hcqt, torch.Generator().manual_seed(0))
    assert params.volumes.shape == (2,) and torch.all((params.volumes >= 0) & (params.volumes <= 1))
    assert torch.equal(overlay_percussion(audio, params), audio + params.volumes[:, None] * params.drums)
    assert torch.allclose(features, hcqt(audio + params.volumes[:, None] * params.drums))
    assert not torch.allclose(features, hcqt(audio), atol=1e-2)
    volumes = random_percussion(audio.repeat(100, 1), bank, lambda a: a, torch.Generator().manual_seed(1))[1].volumes
    assert volumes.min() < 0.1 and volumes.max() > 0.9


def test_overlay_rejects_mismatched_excerpts():
    with pytest.raises(ValueError, match="do not match"):
        overlay_percussion(torch.zeros(2, 10), PercussionParams(torch.ones(2), torch.zeros(2, 9)))
