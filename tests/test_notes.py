"""The note tracker: known notes from a synthetic salience, onset F1 on an oracle of a real
chord sequence, and what `mpe-ssl transcribe` and the TranscriptionWriter write with it."""

from __future__ import annotations

import csv
import warnings
from types import SimpleNamespace

import mir_eval
import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import torch

from mpe_ssl.audio.silence import gate_silence
from mpe_ssl.callbacks import TranscriptionWriter
from mpe_ssl.cli import main
from mpe_ssl.grid import N_BINS, SAMPLE_RATE, frame_to_seconds, midi_to_bin, midi_to_hz, note_frames, num_frames
from mpe_ssl.metrics.multipitch import salience_to_multipitch
from mpe_ssl.notes import (CSV_COLUMNS, NoteEvent, notes_to_midi, notes_to_mir_eval, read_notes_csv, track_notes,
                           velocity_of, write_notes_csv)
from tests.conftest import tone


def _bin(midi: float) -> int:
    return int(round(midi_to_bin(midi)))


def _synthetic() -> np.ndarray:
    """A salience-gram ``(bins, 120)`` of single-bin peaks with known notes (see EXPECTED)."""
    s = np.zeros((N_BINS, 120))
    s[_bin(60), 5:21] = 0.8                      # C4, frames 5-20 ...
    s[_bin(60), 12] = 0.0                        # ... with a 1-frame gap: one note
    s[_bin(64), 30:40] = np.linspace(0.9, 0.5, 10)  # E4 struck twice: a decay ...
    s[_bin(64), 40:50] = np.linspace(0.9, 0.6, 10)  # ... then a new attack: two notes
    s[_bin(67), 60:64] = 0.9                     # G4 for 4 frames (46 ms): too short
    s[_bin(69), 60:81] = 0.4                     # A4 above the frame threshold, never the onset's
    s[_bin(62), 70:80] = 0.7                     # D4 with a 3-frame gap (longer than 2): two notes
    s[_bin(62), 83:93] = 0.7
    s[_bin(67) + 1, 100:105] = 0.6               # G4 20 cents sharp, then in tune and louder:
    s[_bin(67), 105:110] = 0.9                   # one note, pitch weighted by salience
    s[_bin(72), 110:120] = 0.55                  # C5 to the last frame
    return s


def _note(first, stop, pitch, loudest, confidence):
    return (frame_to_seconds(first), frame_to_seconds(stop), pitch, velocity_of(loudest), confidence)


#: the notes of _synthetic() at threshold 0.3 and the defaults otherwise
EXPECTED = [
    _note(5, 21, 60.0, 0.8, 0.8),
    _note(30, 40, 64.0, 0.9, 0.7),
    _note(40, 50, 64.0, 0.9, 0.75),
    _note(70, 80, 62.0, 0.7, 0.7),
    _note(83, 93, 62.0, 0.7, 0.7),
    _note(100, 110, (0.6 * 67.2 + 0.9 * 67.0) / 1.5, 0.9, 0.75),
    _note(110, 120, 72.0, 0.55, 0.55),
]


def _as_tuples(notes):
    return [(n.onset_s, n.offset_s, n.pitch_midi, n.velocity, n.confidence) for n in notes]


def _assert_notes(notes, expected, atol=1e-6):
    assert len(notes) == len(expected), _as_tuples(notes)
    for got, want in zip(_as_tuples(notes), expected):
        assert got[3] == want[3], (got, want)
        assert np.allclose([*got[:3], got[4]], [*want[:3], want[4]], atol=atol), (got, want)


# ----------------------------------------------------------------- (a) known notes
def test_synthetic_salience_gives_exactly_the_expected_notes():
    notes = track_notes(_synthetic(), threshold=0.3)
    _assert_notes(notes, EXPECTED)
    assert velocity_of(0.8) == 102 and velocity_of(0.0) == 1 and velocity_of(1.0) == 127


def test_options_change_what_is_kept_and_linked():
    s = _synthetic()
    as_frames = lambda notes: [(round(n.onset_s / frame_to_seconds(1)), round(n.pitch_midi)) for n in notes]
    # the weak A4 becomes a note when the onset threshold is below it
    assert (60, 69) in as_frames(track_notes(s, threshold=0.3, onset_threshold=0.35))
    # the short G4 when notes may be as short as 4 frames, not when 6 are needed
    assert (60, 67) in as_frames(track_notes(s, threshold=0.3, min_note_ms=1000 * frame_to_seconds(4)))
    long_only = as_frames(track_notes(s, threshold=0.3, min_note_ms=1000 * frame_to_seconds(11)))
    assert long_only == [(5, 60)]
    # a 3-frame gap is bridged with max_gap_frames=3; the 1-frame gap is not with 0
    assert (83, 62) not in as_frames(track_notes(s, threshold=0.3, max_gap_frames=3))
    assert (13, 60) in as_frames(track_notes(s, threshold=0.3, max_gap_frames=0))
    # no repeated notes with a margin above 1
    assert (40, 64) not in as_frames(track_notes(s, threshold=0.3, split_margin=1.5))
    # the frame threshold above the weak notes' salience removes them
    assert [p for _, p in as_frames(track_notes(s, threshold=0.75))] == [60, 64, 67]


def test_without_linking_filtering_or_splitting_the_notes_are_the_peaks_of_salience_to_multipitch():
    rng = np.random.default_rng(0)
    salience = rng.random((N_BINS, 60)) ** 4
    notes = track_notes(torch.from_numpy(salience).float(), threshold=0.3, onset_threshold=0.0, min_note_ms=0,
                        max_gap_frames=0, split_margin=2.0)
    covered = {(frame, round(n.pitch_midi)) for n in notes
               for frame in range(round(n.onset_s / frame_to_seconds(1)), round(n.offset_s / frame_to_seconds(1)))}
    times, frequencies = salience_to_multipitch(salience.astype(np.float32), 0.3)
    peaks = {(frame, int(round(p))) for frame, hz in enumerate(frequencies) for p in 69 + 12 * np.log2(hz / 440)}
    assert covered == peaks and len(peaks) > 100


def test_nothing_above_the_threshold_gives_no_notes_and_bad_options_are_refused():
    assert track_notes(np.zeros((N_BINS, 50))) == []
    assert track_notes(np.zeros((N_BINS, 0))) == []
    for bad in ({"min_note_ms": -1.0}, {"min_note_ms": float("nan")}, {"threshold": 0.0}, {"onset_threshold": 1.5},
                {"max_gap_frames": -1}, {"max_gap_frames": 1.5}, {"split_margin": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            track_notes(np.zeros((N_BINS, 5)), **bad)
    with pytest.raises(ValueError, match="bins, frames"):
        track_notes(np.zeros((1, N_BINS, 5)))


def test_csv_midi_and_mir_eval_forms_of_the_notes(tmp_path):
    notes = track_notes(_synthetic(), threshold=0.3)
    write_notes_csv(tmp_path / "a.notes.csv", notes)
    with open(tmp_path / "a.notes.csv", newline="") as handle:
        assert tuple(next(csv.reader(handle))) == CSV_COLUMNS
    _assert_notes(read_notes_csv(tmp_path / "a.notes.csv"), _as_tuples(notes), atol=1e-4)
    midi = notes_to_midi(notes).instruments[0].notes
    assert [(m.pitch, m.velocity) for m in midi] == [(round(n.pitch_midi), n.velocity) for n in notes]
    assert np.allclose([[m.start, m.end] for m in midi], [[n.onset_s, n.offset_s] for n in notes], atol=1e-3)
    intervals, pitches = notes_to_mir_eval(notes)
    assert intervals.shape == (len(notes), 2) and pitches.shape == (len(notes),)
    assert np.allclose(pitches, midi_to_hz(np.array([n.pitch_midi for n in notes])))
    empty_intervals, empty_pitches = notes_to_mir_eval([])
    assert empty_intervals.shape == (0, 2) and empty_pitches.shape == (0,)
    write_notes_csv(tmp_path / "empty.csv", [])
    assert read_notes_csv(tmp_path / "empty.csv") == []
    assert notes_to_midi([NoteEvent(0.0, 1.0, 130.0, 64, 0.9)]).instruments[0].notes == []


# ----------------------------------------------------------------- (b) a chord sequence
#: (MIDI pitches, seconds); None is a rest. The second C major chord is struck again without a gap.
CHORDS = [([60, 64, 67], 0.5), ([60, 64, 67], 0.5), ([60, 65, 69], 0.5), (None, 0.25), ([59, 62, 67], 0.5),
          ([48, 55, 64, 72], 0.75), ([62, 66, 69], 0.3)]


def _chord_sequence(seed: int = 0):
    """Audio of CHORDS and an oracle salience of its true notes: a Gaussian over bins at
    each pitch, decaying from each attack, plus noise, gated by the audio's silence."""
    pieces, ref_intervals, ref_pitches, start = [], [], [], 0
    for pitches, seconds in CHORDS:
        samples = int(seconds * SAMPLE_RATE)
        if pitches is None:
            pieces.append(np.zeros(samples, dtype=np.float32))
        else:
            pieces.append(tone(midi_to_hz(np.array(pitches, dtype=float)), seconds))
            for pitch in pitches:
                ref_intervals.append((start, start + samples))
                ref_pitches.append(pitch)
        start += samples
    audio = np.concatenate(pieces)
    bins = np.arange(N_BINS, dtype=np.float64)[:, None]
    salience = np.zeros((N_BINS, num_frames(len(audio))))
    firsts, stops = note_frames(*np.array(ref_intervals).T)
    for pitch, first, stop in zip(ref_pitches, firsts, stops):
        frames = np.arange(first, stop)
        envelope = 0.95 * np.exp(-(frames - first) / 80.0)  # about 0.55 after 0.5 s
        bump = np.exp(-0.5 * (bins - midi_to_bin(float(pitch))) ** 2)
        salience[:, first:stop] = np.maximum(salience[:, first:stop], bump * envelope)
    noise = 0.04 * np.random.default_rng(seed).standard_normal(salience.shape)
    salience = np.clip(salience + noise, 0.0, 1.0)
    salience = gate_silence(torch.from_numpy(salience).float(), audio, -60.0)
    intervals = np.array(ref_intervals, dtype=np.float64) / SAMPLE_RATE
    return salience, intervals, midi_to_hz(np.array(ref_pitches, dtype=np.float64))


def _onset_f1(salience, ref_intervals, ref_pitches, **options) -> float:
    est_intervals, est_pitches = notes_to_mir_eval(track_notes(salience, **options))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mir_eval warns of an empty estimate
        return mir_eval.transcription.precision_recall_f1_overlap(
            ref_intervals, ref_pitches, est_intervals, est_pitches, offset_ratio=None)[2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oracle_salience_of_a_chord_sequence_gives_its_notes(seed):
    salience, ref_intervals, ref_pitches = _chord_sequence(seed)
    assert _onset_f1(salience, ref_intervals, ref_pitches, threshold=0.4) >= 0.95
    # negative controls: a frame threshold above every salience; no repeated notes
    assert _onset_f1(salience, ref_intervals, ref_pitches, threshold=0.999) < 0.2
    assert _onset_f1(salience, ref_intervals, ref_pitches, threshold=0.4, split_margin=2.0) < 0.9


# ----------------------------------------------------------------- (c) mpe-ssl transcribe and predict
def _run(capsys, *args):
    status = main(["transcribe", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err.splitlines()


def test_transcribe_writes_multipitch_midi_notes_csv_and_salience_png(tmp_path, tiny_checkpoint, capsys):
    sf.write(tmp_path / "chord.wav", tone([261.63, 329.63, 392.0], 1.0), SAMPLE_RATE)
    out = tmp_path / "out"
    status, lines, errors = _run(capsys, tmp_path / "chord.wav", "--ckpt", tiny_checkpoint, "--out", out,
                                 "--salience-png")
    assert status == 0 and not errors  # no progress bar when stderr is not a terminal
    names = [f"chord{ext}" for ext in (".multipitch.txt", ".mid", ".notes.csv", ".salience.png")]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    assert lines == [f"{tmp_path / 'chord.wav'} -> {', '.join(str(out / n) for n in names)}"]
    times, _ = mir_eval.io.load_ragged_time_series(str(out / "chord.multipitch.txt"))
    assert len(times) == num_frames(SAMPLE_RATE)
    with open(out / "chord.notes.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS and all(len(row) == len(CSV_COLUMNS) for row in rows)
    notes = read_notes_csv(out / "chord.notes.csv")
    assert len(pretty_midi.PrettyMIDI(str(out / "chord.mid")).instruments[0].notes) == len(notes)
    assert (out / "chord.salience.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_transcribe_tracks_notes_with_the_given_options(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    import mpe_ssl.transcribe

    def known_notes(system, reader):  # a model that hears _synthetic()'s notes, in chunks of 50 frames
        salience = np.zeros((N_BINS, num_frames(reader.samples)))
        salience[:, :120] = _synthetic()
        for start in range(0, salience.shape[1], 50):
            piece = torch.from_numpy(salience[:, start : start + 50]).float()
            yield start, start + piece.shape[1], piece

    monkeypatch.setattr(mpe_ssl.transcribe, "salience_chunks", known_notes)
    sf.write(tmp_path / "a.wav", tone([220.0], 1.5), SAMPLE_RATE)
    common = ("--ckpt", tiny_checkpoint, "--threshold", "0.3", "--silence-db=-inf")
    status, _, _ = _run(capsys, tmp_path / "a.wav", *common, "--out", tmp_path / "default")
    assert status == 0
    _assert_notes(read_notes_csv(tmp_path / "default" / "a.notes.csv"), EXPECTED, atol=1e-4)
    midi = pretty_midi.PrettyMIDI(str(tmp_path / "default" / "a.mid")).instruments[0].notes
    assert [(m.pitch, m.velocity) for m in sorted(midi, key=lambda m: (m.start, m.pitch))] == [
        (round(e[2]), e[3]) for e in EXPECTED]
    status, _, _ = _run(capsys, tmp_path / "a.wav", *common, "--out", tmp_path / "options",
                        "--onset-threshold", "0.35", "--min-note-ms", "150")
    assert status == 0
    notes = read_notes_csv(tmp_path / "options" / "a.notes.csv")
    assert [round(n.pitch_midi) for n in notes] == [60, 69]  # the only notes of >= 13 frames


@pytest.mark.parametrize("option, value", [("--min-note-ms", "-5"), ("--min-note-ms", "nan"),
                                           ("--min-note-ms", "inf"), ("--onset-threshold", "0"),
                                           ("--onset-threshold", "1.5")])
def test_bad_note_options_are_one_line_errors_before_loading(option, value, tmp_path, monkeypatch, capsys):
    import mpe_ssl.transcribe

    def load_system(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(mpe_ssl.transcribe, "load_system", load_system)
    sf.write(tmp_path / "a.wav", tone([220.0], 0.5), SAMPLE_RATE)
    status, _, errors = _run(capsys, tmp_path / "a.wav", "--ckpt", tmp_path / "x.ckpt", "--out", tmp_path / "out",
                             f"{option}={value}")
    assert status == 2 and len(errors) == 1 and option in errors[0] and value in errors[0]
    assert not (tmp_path / "out").exists()


def test_transcription_writer_writes_the_same_files(tmp_path):
    writer = TranscriptionWriter(tmp_path / "pred", salience_png=True)
    module = SimpleNamespace(hparams=SimpleNamespace(threshold=0.3))
    prediction = torch.from_numpy(_synthetic()).float()[None]
    writer.write_on_batch_end(None, module, prediction, None, {"track": ["piece"], "start_frame": [0]}, 0)
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == sorted(
        f"piece{ext}" for ext in (".multipitch.txt", ".mid", ".notes.csv", ".salience.png"))
    _assert_notes(read_notes_csv(tmp_path / "pred" / "piece.notes.csv"), EXPECTED, atol=1e-4)
    assert len(pretty_midi.PrettyMIDI(str(tmp_path / "pred" / "piece.mid")).instruments[0].notes) == len(EXPECTED)
