"""The scoring of ``make bench``'s Basic Pitch comparison (benchmarks/scoring.py), without
Basic Pitch: notes -> frame multi-pitch at the reference's frames, and the F1s."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mir_eval
import numpy as np
import pytest

from mpe_ssl import grid

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "scoring.py"
_spec = importlib.util.spec_from_file_location("bench_scoring", _PATH)
scoring = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scoring)

HOP, SR = grid.HOP_LENGTH, grid.SAMPLE_RATE
N_FRAMES = 40
# (part, program, onset sample, offset sample, MIDI pitch): two notes in frames 10-19, one in 20-29
REFERENCE = [("Soprano", 40, 10 * HOP, 20 * HOP, 64), ("Alto", 41, 10 * HOP, 20 * HOP, 60),
             ("Soprano", 40, 20 * HOP, 30 * HOP, 67)]


def _piece(folder: Path) -> Path:
    """A rendered piece's label files, written as the renderer writes them: notes.csv (times to
    1 ns) and multipitch.txt (frames by ``grid.note_frames``, times to 1 us)."""
    folder.mkdir()
    lines = ["part,program,onset_s,offset_s,midi_pitch"]
    lines += [f"{part},{program},{on / SR:.9f},{off / SR:.9f},{pitch}" for part, program, on, off, pitch in REFERENCE]
    (folder / "notes.csv").write_text("\n".join(lines) + "\n")
    active = [[] for _ in range(N_FRAMES)]
    first, stop = grid.note_frames([n[2] for n in REFERENCE], [n[3] for n in REFERENCE])
    for note, a, b in zip(REFERENCE, first, stop):
        for frame in range(a, b):
            active[frame].append(grid.midi_to_hz(note[4]))
    rows = [f"{t:.6f}" + "".join(f"\t{f:.4f}" for f in sorted(freqs)) for t, freqs in zip(grid.frame_times(N_FRAMES), active)]
    (folder / "multipitch.txt").write_text("\n".join(rows) + "\n")
    return folder


def _basic_pitch_csv(path: Path) -> Path:
    """Basic Pitch's --save-note-events CSV: the 60 exact, the 64 as a 65 (a wrong pitch), the
    67 starting 30 ms late (an onset hit, 3 frames missed); pitch bends trail each row."""
    t10, t20, t30 = 10 * HOP / SR, 20 * HOP / SR, 30 * HOP / SR
    path.write_text("start_time_s,end_time_s,pitch_midi,velocity,pitch_bend\n"
                    f"{t10},{t20},60,80,0,1,1,2\n"
                    f"{t10},{t20},65,70,-1,-1\n"
                    f"{t20 + 0.03},{t30},67,90\n")
    return path


def test_reference_notes_give_the_reference_frames(tmp_path):
    piece = _piece(tmp_path / "piece")
    times, freqs = scoring.read_multipitch(piece / "multipitch.txt")
    converted = scoring.notes_to_multipitch(scoring.read_reference_notes(piece / "notes.csv"), times)
    assert len(converted) == N_FRAMES
    for got, want in zip(converted, freqs):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert scoring.score_piece(piece, scoring.read_reference_notes(piece / "notes.csv"))["frame"]["f1"] == 1.0


def test_basic_pitch_notes_scored_at_the_reference_frames(tmp_path):
    piece = _piece(tmp_path / "piece")
    notes = scoring.read_basic_pitch_notes(_basic_pitch_csv(tmp_path / "mix_basic_pitch.csv"))
    np.testing.assert_array_equal(notes.pitches, [60, 65, 67])
    scores = scoring.score_piece(piece, notes)
    # frames: 10 (the 60) + 7 (the late 67: frames 23-29) right of 27 estimated, 30 in the reference
    assert scores["frame"]["precision"] == pytest.approx(17 / 27)
    assert scores["frame"]["recall"] == pytest.approx(17 / 30)
    assert scores["frame"]["f1"] == pytest.approx(2 * 17 / (27 + 30))
    # notes, onsets only: the 60 and the 67 of 3 estimated and 3 reference notes
    assert scores["note"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})


def test_own_multipitch_is_scored_as_written(tmp_path):
    """A system's own frames (mpe-ssl's .multipitch.txt) are scored directly, and the
    note-level score reads its notes.csv columns."""
    piece = _piece(tmp_path / "piece")
    times, freqs = scoring.read_multipitch(piece / "multipitch.txt")
    half = [f if i < 20 else np.zeros(0) for i, f in enumerate(freqs)]  # the last note missed
    (tmp_path / "x.notes.csv").write_text("onset_s,offset_s,pitch_midi,velocity,confidence\n"
                                          f"{10 * HOP / SR:.6f},{20 * HOP / SR:.6f},60.0300,100,0.9\n")
    scores = scoring.score_piece(piece, scoring.read_mpe_ssl_notes(tmp_path / "x.notes.csv"), (times, half))
    assert scores["frame"] == pytest.approx({"precision": 1.0, "recall": 20 / 30, "f1": 0.8})
    assert scores["note"] == pytest.approx({"precision": 1.0, "recall": 1 / 3, "f1": 0.5})
    expected = mir_eval.multipitch.evaluate(times, freqs, times, half)
    assert scores["frame"]["recall"] == pytest.approx(expected["Recall"])


def test_no_notes_and_means(tmp_path):
    piece = _piece(tmp_path / "piece")
    (tmp_path / "e.csv").write_text("start_time_s,end_time_s,pitch_midi,velocity,pitch_bend\n")
    empty = scoring.read_basic_pitch_notes(tmp_path / "e.csv")
    assert len(empty) == 0
    nothing = scoring.score_piece(piece, empty)
    assert nothing["note"]["f1"] == 0.0 and nothing["frame"]["f1"] == 0.0
    perfect = scoring.score_piece(piece, scoring.read_reference_notes(piece / "notes.csv"))
    mean = scoring.mean_scores([nothing, perfect])
    assert mean["frame"]["f1"] == pytest.approx(0.5) and mean["note"]["recall"] == pytest.approx(0.5)
