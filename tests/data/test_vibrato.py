"""Vibrato (issue 12): a note's pitch curve is the same in the rendered audio and in every label."""

from __future__ import annotations

import numpy as np
import pytest

from mpe_ssl import grid
from mpe_ssl.data import render as R
from mpe_ssl.data.datasets import RenderedChorales, load_notes, note_targets
from mpe_ssl.data.majl import SOURCE_HOP, target_f0
from mpe_ssl.data.vibrato import note_pitch_at, vibrato_semitones
from mpe_ssl.errors import MpeSslError
from mpe_ssl.formats import load_multipitch
from tests.data.test_datasets import _chorale_excerpt, _peak_rate

SR = grid.SAMPLE_RATE


def _cents_track(audio: np.ndarray, reference_hz: float, window: int = 1024, hop: int = 256):
    """Per-frame deviation in cents of the strongest partial near ``reference_hz`` from it:
    Hann window, 8x zero padding, parabolic interpolation; with the windows' centres."""
    pad = 8 * window
    centres, cents = [], []
    lo, hi = int(reference_hz * 0.9 * pad / SR), int(reference_hz * 1.1 * pad / SR)
    for start in range(0, len(audio) - window, hop):
        spectrum = np.abs(np.fft.rfft(audio[start:start + window] * np.hanning(window), pad))
        k = lo + int(np.argmax(spectrum[lo:hi]))
        a, b, c = np.log(spectrum[k - 1:k + 2] + 1e-12)
        hz = (k + 0.5 * (a - c) / (a - 2 * b + c)) * SR / pad
        centres.append(start + window / 2)
        cents.append(1200 * np.log2(hz / reference_hz))
    return np.array(centres), np.array(cents)


def test_a_note_with_vibrato_sounds_along_its_curve():
    pitch, rate, depth, phase = 81.0, 3.0, 50.0, 0.7  # A5 on a flute, a slow vibrato (3 Hz) the window can follow
    on, off = 0, 2 * SR
    config = R.RenderConfig()
    steady = R.synthesize([(on, off, pitch)], off, 73, config)
    bent = R.synthesize([(on, off, pitch)], off, 73, config, vibrato=[(rate, depth, phase)])
    hz = float(grid.midi_to_hz(pitch))
    centres, measured = _cents_track(bent, hz)
    keep = (centres > 0.2 * SR) & (centres < off - 0.1 * SR)  # past the attack
    expected = 100 * vibrato_semitones(centres[keep] - on, rate, depth, phase)
    _, still = _cents_track(steady, hz)
    bias = np.mean(still[keep])  # the SoundFont sample's own tuning, a few cents off A5
    error = measured[keep] - bias - expected
    print(f"vibrato: rms error {np.sqrt(np.mean(error ** 2)):.1f} cents, correlation "
          f"{np.corrcoef(measured[keep], expected)[0, 1]:.3f}, range {np.ptp(measured[keep]):.0f} cents; "
          f"steady: {bias:.1f} cents off, std {np.std(still[keep]):.1f}")
    assert np.corrcoef(measured[keep], expected)[0, 1] > 0.97
    assert np.sqrt(np.mean(error ** 2)) < 10 and abs(np.mean(error)) < 5
    assert 80 < np.ptp(measured[keep]) < 115  # swings by twice the depth
    assert np.ptp(still[keep]) < 0.25 * np.ptp(measured[keep]) and abs(bias) < 10  # a steady note does not swing
    with pytest.raises(ValueError):  # vibrato needs one entry per event
        R.synthesize([(on, off, pitch)], off, 73, config, vibrato=[])


def test_vibrato_renders_labels_that_follow_the_same_curve(tmp_path):
    counts = {"train": 0, "val": 1, "test": 0}
    plain = R.RenderConfig(seed=0, counts=counts)
    config = R.RenderConfig(seed=0, counts=counts, vibrato_cents=40)
    assert R.RenderConfig(seed=0, vibrato_cents=0.0).config_hash() == R.RenderConfig(seed=0).config_hash()
    assert config.config_hash() != plain.config_hash()
    root = R.render_dataset(config, root=tmp_path / "vibrato", progress=False)
    piece = R.load_manifest(root)["pieces"][0]
    notes = load_notes(root / piece["notes"])
    assert notes.shape[1] == 6 and np.all(notes[:, 4] == 40) and np.all((notes[:, 3] >= 4.5) & (notes[:, 3] <= 6.5))
    # every other draw as without vibrato: same programs, gains, timing and pitches
    chorale = R.load_chorale(piece["id"])
    a, b = R.plan_piece(chorale, plain), R.plan_piece(chorale, config)
    assert (a["programs"], a["gains_db"], a["events"]) == (b["programs"], b["gains_db"], b["events"])
    # multipitch.txt: each frame holds the curve of each sounding note at that frame
    times, hz = load_multipitch(root / piece["multipitch"])
    long_note = notes[np.argmax(notes[:, 1] - notes[:, 0])]
    first, stop = grid.note_frames([long_note[0]], [long_note[1]])
    frames = np.arange(int(first[0]), int(stop[0]))
    curve = grid.midi_to_hz(note_pitch_at(long_note, frames * grid.HOP_LENGTH))
    for f, expected in zip(frames, curve):
        assert np.min(np.abs(hz[f] - expected)) < 1e-3 * expected
    # the training targets move over the bins with it; MAJL's f0 on 20 ms frames too
    targets = note_targets(long_note[None], 0, int(long_note[1]) + 1).numpy()
    assert len(set(np.nonzero(targets)[0])) >= 3  # 40 cents each way: 4 bins of 20 cents
    f0 = target_f0(long_note[None], int(long_note[1]) // SOURCE_HOP + 2)
    voiced = np.nonzero(f0)[0]
    np.testing.assert_allclose(f0[voiced], grid.midi_to_hz(note_pitch_at(long_note, voiced * SOURCE_HOP)), rtol=1e-6)
    # the labels agree with the audio about as well as the steady render's do with its audio
    targets, spec, _ = _chorale_excerpt(root, "val")
    steady_targets, steady_spec, _ = _chorale_excerpt(R.render_dataset(plain, root=tmp_path / "plain", progress=False), "val")
    rate = _peak_rate(spec, *np.nonzero(targets.T), 1)
    steady = _peak_rate(steady_spec, *np.nonzero(steady_targets.T), 1)
    print(f"labels within a bin of an HCQT peak: vibrato {rate:.3f}, steady {steady:.3f}")
    assert rate >= steady - 0.1
    assert RenderedChorales(root, "val", excerpt_seconds=2.0)[0]["targets"].shape[0] == grid.N_BINS


@pytest.mark.parametrize("settings, key", [({"vibrato_cents": -1}, "vibrato_cents"),
                                           ({"vibrato_cents": 30, "vibrato_hz": (6.0, 4.0)}, "vibrato_hz")])
def test_bad_vibrato_settings_are_named(settings, key):
    with pytest.raises(MpeSslError, match=key):
        R.RenderConfig(**settings).validate()
