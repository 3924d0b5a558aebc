"""RenderedChorales items, and the key check: the labels agree with the rendered audio."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from mpe_ssl import grid
from mpe_ssl.data import render as R
from mpe_ssl.data.datasets import RenderedChorales, load_notes, note_targets
from mpe_ssl.errors import MpeSslError

from mpe_ssl.audio import hcqt as hcqt_module

EXCERPT = 3.0


def _expected_targets(root, piece, start_frame, frames):
    """Targets straight from multipitch.txt (the other label file on disk)."""
    _, freqs = R.load_multipitch(root / piece["multipitch"])
    out = np.zeros((grid.N_BINS, frames), dtype=np.float32)
    for j in range(frames):
        f = start_frame + j
        if f < len(freqs) and len(freqs[f]):
            out[np.rint(grid.midi_to_bin(grid.hz_to_midi(freqs[f]))).astype(int), j] = 1
    return out


def test_items_have_the_grid_shapes_and_batch(rendered_root):
    ds = RenderedChorales(rendered_root, "train", excerpt_seconds=EXCERPT, items_per_epoch=6, seed=3)
    samples = grid.HOP_LENGTH * round(EXCERPT * grid.SAMPLE_RATE / grid.HOP_LENGTH)
    assert len(ds) == 6 and ds.random
    item = ds[0]
    assert item["audio"].dtype == torch.float32 and item["audio"].shape == (samples,)
    assert item["targets"].dtype == torch.float32
    assert item["targets"].shape == (grid.N_BINS, grid.num_frames(samples))
    assert isinstance(item["track"], str)
    assert isinstance(item["start_frame"], int)
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["audio"].shape == (3, samples) and batch["targets"].shape == (3, grid.N_BINS, grid.num_frames(samples))


def test_random_excerpts_are_a_function_of_seed_and_index(rendered_root):
    def starts(ds, first=0, n=8):
        return [ds[i]["start_frame"] for i in range(first, first + n)]

    a = RenderedChorales(rendered_root, "train", excerpt_seconds=EXCERPT, items_per_epoch=8, seed=3)
    b = RenderedChorales(rendered_root, "train", excerpt_seconds=EXCERPT, items_per_epoch=8, seed=3)
    c = RenderedChorales(rendered_root, "train", excerpt_seconds=EXCERPT, items_per_epoch=8, seed=4)
    first = starts(a)
    assert first == starts(b) and first != starts(c)
    assert starts(a, first=8) != first  # the sampler numbers on across epochs: new excerpts
    assert len(set(first)) > 2
    # the same index is the same excerpt in any process (workers, DDP ranks, a resumed fit)
    loader = DataLoader(a, batch_size=1, num_workers=2, multiprocessing_context="fork")
    assert [int(batch["start_frame"]) for batch in loader] == first


def test_deterministic_excerpts_and_whole_pieces(rendered_root):
    piece = R.load_manifest(rendered_root)["pieces"][1]
    ds = RenderedChorales(rendered_root, "val", excerpt_seconds=EXCERPT)
    assert not ds.random
    assert len(ds) == max(1, piece["num_samples"] // int(ds.excerpt_samples))
    starts = [ds[i]["start_frame"] for i in range(len(ds))]
    assert starts == [ds[i]["start_frame"] for i in range(len(ds))]
    assert starts[0] == 0 and starts == sorted(starts)
    assert (starts[-1] * grid.HOP_LENGTH + ds.excerpt_samples) <= piece["num_samples"]
    assert len(RenderedChorales(rendered_root, "val", excerpt_seconds=EXCERPT, excerpts_per_piece=2)) == 2
    whole = RenderedChorales(rendered_root, "test")
    item = whole[0]
    assert len(whole) == 1 and item["start_frame"] == 0
    assert item["audio"].shape[0] == R.load_manifest(rendered_root)["pieces"][2]["num_samples"]
    assert item["targets"].shape[1] == grid.num_frames(item["audio"].shape[0])
    with pytest.raises(MpeSslError, match="split"):
        RenderedChorales(rendered_root, "dev")


def test_items_are_the_files_on_disk_frame_for_frame(rendered_root):
    piece = R.load_manifest(rendered_root)["pieces"][0]
    mix, _ = sf.read(str(rendered_root / piece["mix"]), dtype="float32")
    for cache in (False, True):
        ds = RenderedChorales(rendered_root, "train", excerpt_seconds=EXCERPT, items_per_epoch=4, seed=1,
                              cache_audio=cache)
        for i in range(4):
            item = ds[i]
            start = item["start_frame"] * grid.HOP_LENGTH
            np.testing.assert_array_equal(item["audio"].numpy(), mix[start:start + ds.excerpt_samples])
            frames = item["targets"].shape[1]
            np.testing.assert_array_equal(item["targets"].numpy(),
                                          _expected_targets(rendered_root, piece, item["start_frame"], frames))
    # note_targets: onset <= t < offset, on the frame grid.
    hop = grid.HOP_LENGTH
    notes = np.array([[10 * hop, 20 * hop, 60], [10 * hop + 1, 20 * hop + 1, 72]])
    t = note_targets(notes, 5 * hop, 30 * hop)
    b60, b72 = round(grid.midi_to_bin(60)), round(grid.midi_to_bin(72))
    assert t[b60].nonzero().flatten().tolist() == list(range(5, 15))
    assert t[b72].nonzero().flatten().tolist() == list(range(6, 16))
    assert t.sum() == 20


# ------------------------------------------------------------------ labels agree with audio


def _peak_rate(spec: np.ndarray, frames, bins, tolerance: int = 2, within: float = 0.25) -> float:
    """Fraction of (frame, bin) pairs where the h=1 HCQT (scaled to [0, 1] over 80 dB) has a
    local maximum within ``tolerance`` bins of ``bin`` that is at most ``within`` (20 dB)
    below the frame's maximum."""
    hits = []
    for f, b in zip(frames, bins):
        column = spec[:, f]
        near = np.arange(max(b - tolerance, 1), min(b + tolerance, grid.N_BINS - 2) + 1)
        peak = (column[near] >= column[near - 1]) & (column[near] >= column[near + 1])
        hits.append(bool((peak & (column[near] >= column.max() - within)).any()))
    return float(np.mean(hits))


def _onset_lags(magnitude: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each labelled onset (a pitch becoming active), frames from the labelled onset
    to where the linear HCQT magnitude at its bin (+-2 bins) crosses half-way from its
    level before (frames o-8..o-3) to its peak after (o+1..o+9). 99 when it does not rise.

    Half-way, because the analysis windows are symmetric and long at low pitches (about 22
    frames at 110 Hz): an instantaneous onset crosses half-way at the onset itself, while
    the start of the rise shows up frames early (measured: 10 % of the rise is reached 1-2
    frames before the label for most notes)."""
    lags = []
    frames = targets.shape[1]
    for b in np.nonzero(targets.any(axis=1))[0]:
        row = targets[b]
        energy = magnitude[max(b - 2, 0):b + 3].max(axis=0)
        for o in np.nonzero((row[1:] > 0) & (row[:-1] == 0))[0] + 1:
            if o < 10 or o > frames - 12:
                continue
            before, after = energy[o - 8:o - 2].min(), energy[o + 1:o + 10].max()
            if after < 1.5 * before:
                lags.append(99)
                continue
            window = np.arange(o - 8, o + 12)
            lags.append(int(window[np.argmax(energy[window] > before + 0.5 * (after - before))] - o))
    return np.array(lags)


def test_single_notes_peak_at_the_labelled_pitch_and_onset():
    """Every program of the default pool, notes across the chorale range (MIDI 40-84)."""
    config = R.RenderConfig()
    hop = grid.HOP_LENGTH
    on, off = 50 * hop + 77, 98 * hop + 77  # onset between frames: label starts at frame 51
    total = off + 16 * hop
    cases = [(program, pitch) for program in R.DEFAULT_PROGRAMS for pitch in (40, 52, 64, 76, 84)]
    audio = []
    for program, pitch in cases:
        x = R.synthesize([(on, off, pitch)], total, program, config)
        audio.append(0.5 * x / np.abs(x).max())
    audio = torch.tensor(np.array(audio), dtype=torch.float32)
    hcqt = hcqt_module.HCQT()
    with torch.no_grad():
        spec = hcqt(audio)[:, 1].numpy()
        magnitude = hcqt.magnitudes(audio)[:, 1].numpy()
    rates, lags = {}, {}
    for (program, pitch), s, m in zip(cases, spec, magnitude):
        targets = note_targets(np.array([[on, off, pitch]]), 0, total).numpy()
        frames = np.nonzero(targets.any(axis=0))[0]
        assert frames[0] == 51 and frames[-1] == 98
        b = int(np.nonzero(targets[:, 51])[0][0])
        assert b == round(grid.midi_to_bin(pitch))
        rates[program, pitch] = _peak_rate(s, frames[6:], [b] * len(frames[6:]))  # after the attack
        lags[program, pitch] = int(_onset_lags(m, targets)[0])
    assert min(rates.values()) >= 0.9, {k: v for k, v in rates.items() if v < 0.9}
    # Half-way rise of the labelled bin: never before the labelled onset frame (-1 allows
    # the half frame of the onset's position), and no later than the instruments' attack.
    assert all(-1 <= lag <= 6 for lag in lags.values()), lags
    for program in (0, 24):  # piano and guitar: struck/plucked, no attack ramp
        assert all(-1 <= lags[program, p] <= 2 for p in (40, 52, 64, 76, 84)), lags
    within_one = np.mean([abs(v) <= 1 for v in lags.values()])
    print(f"single notes: peak rate min {min(rates.values()):.2f}, onset within +-1 frame {within_one:.2f}")


def _chorale_excerpt(root, split):
    ds = RenderedChorales(root, split, excerpt_seconds=12.0, excerpts_per_piece=1)
    item = ds[0]
    hcqt = hcqt_module.HCQT()
    with torch.no_grad():
        spec = hcqt(item["audio"][None])[0, 1].numpy()
        magnitude = hcqt.magnitudes(item["audio"][None])[0, 1].numpy()
    return item["targets"].numpy(), spec, magnitude


def test_chorale_labels_agree_with_the_audio(rendered_root, tmp_path):
    # Default program pool (strings, winds, brass, keyboards, guitar) on the val chorale.
    targets, spec, magnitude = _chorale_excerpt(rendered_root, "val")
    assert spec.shape == targets.shape
    frames, bins = np.nonzero(targets.T)
    rate = _peak_rate(spec, frames, bins)
    control = _peak_rate(spec, frames, np.clip(bins + 30, 0, grid.N_BINS - 1))  # a tritone off
    lags = _onset_lags(magnitude, targets)
    print(f"chorale (default pool): peak rate {rate:.3f} (tritone control {control:.3f}), "
          f"{len(lags)} onsets, within +-1 frame {np.mean(np.abs(lags) <= 1):.2f}, "
          f"+-2 {np.mean(np.abs(lags) <= 2):.2f}, median lag {np.median(lags):.0f}")
    assert rate >= 0.9 and control <= 0.3
    assert 0 <= np.median(lags) <= 4  # never early; late by the bowed/blown attack at most

    # The same chorale with struck and plucked programs only: onsets are sharp.
    config = R.RenderConfig(seed=0, programs=(0, 24), distinct_programs=False,
                            counts={"train": 0, "val": 1, "test": 0})
    root = R.render_dataset(config, root=tmp_path / "plucked", progress=False)
    targets, spec, magnitude = _chorale_excerpt(root, "val")
    frames, bins = np.nonzero(targets.T)
    rate = _peak_rate(spec, frames, bins)
    lags = _onset_lags(magnitude, targets)
    print(f"chorale (piano/guitar): peak rate {rate:.3f}, {len(lags)} onsets, "
          f"within +-1 frame {np.mean(np.abs(lags) <= 1):.2f}, +-2 {np.mean(np.abs(lags) <= 2):.2f}")
    assert rate >= 0.9
    assert np.mean(np.abs(lags) <= 1) >= 0.7 and np.mean(np.abs(lags) <= 2) >= 0.85


def test_empty_or_malformed_label_files_are_named(tmp_path):
    from mpe_ssl.data.render import read_notes
    from mpe_ssl.errors import MpeSslError

    empty = tmp_path / "notes.csv"
    empty.write_text("")
    with pytest.raises(MpeSslError, match="notes.csv: empty label file"):
        read_notes(empty)
    bad = tmp_path / "bad.csv"
    bad.write_text("part,program,onset_s,offset_s,midi_pitch\nSoprano,40,0.5,oops,60\n")
    with pytest.raises(MpeSslError, match=r"bad.csv:2: malformed"):
        read_notes(bad)
    with pytest.raises(MpeSslError, match="missing.csv: label file not found"):
        read_notes(tmp_path / "missing.csv")


def test_an_off_grid_note_peaks_at_its_fractional_bin(tmp_path):
    """A note retuned by a fraction of a semitone sounds at its own bin, not at the semitone's."""
    sr = grid.SAMPLE_RATE
    hcqt = hcqt_module.HCQT()
    for program in (0, 40, 73):  # piano, violin, flute
        for pitch in (69.0, 69.3, 68.6):
            audio = R.synthesize([(0, sr, pitch)], sr, program, R.RenderConfig())
            with torch.no_grad():
                column = hcqt(torch.from_numpy(audio).float()[None])[0, 1, :, 20:70].numpy().mean(axis=1)
            k = int(np.argmax(column))
            a, b, c = column[k - 1], column[k], column[k + 1]
            peak = k + 0.5 * (a - c) / (a - 2 * b + c)  # parabolic interpolation
            assert abs(peak - grid.midi_to_bin(pitch)) < 0.5, (program, pitch, peak)


def test_detuned_chorale_labels_agree_with_the_audio_as_in_tune_ones_do(tmp_path):
    config = R.RenderConfig(seed=0, transpose=3, detune_cents=50, counts={"train": 0, "val": 1, "test": 0})
    root = R.render_dataset(config, root=tmp_path / "detuned", progress=False)
    notes = load_notes(root / R.load_manifest(root)["pieces"][0]["notes"])
    assert np.any(np.abs(notes[:, 2] - np.rint(notes[:, 2])) > 0.2)  # off the semitone grid
    targets, spec, _ = _chorale_excerpt(root, "val")
    frames, bins = np.nonzero(targets.T)
    in_tune_targets, in_tune_spec, _ = _chorale_excerpt(
        R.render_dataset(R.RenderConfig(seed=0, counts={"train": 0, "val": 1, "test": 0}), root=tmp_path / "in-tune",
                         progress=False), "val")
    # within one bin (20 cents) of an HCQT peak: as often as the in-tune render's labels
    rate, in_tune = _peak_rate(spec, frames, bins, 1), _peak_rate(in_tune_spec, *np.nonzero(in_tune_targets.T), 1)
    # at the peak's own bin: the true pitch far more often than the same notes on the semitone grid
    semitone = np.rint(grid.midi_to_bin(np.rint(grid.bin_to_midi(bins)))).astype(int)
    exact, rounded = _peak_rate(spec, frames, bins, 0), _peak_rate(spec, frames, semitone, 0)
    print(f"detuned: within a bin {rate:.3f} (in tune {in_tune:.3f}); at the bin {exact:.3f}, semitone {rounded:.3f}")
    assert rate >= in_tune - 0.03 and exact >= 1.5 * rounded
