"""Scores as weak labels: reading/writing, cropping, warping, unit layout, L matrix, keep rules."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest
import torch

from mpe_ssl import grid
from mpe_ssl.data import render as R
from mpe_ssl.data.score import (
    KeepRule,
    Note,
    UnitLayout,
    crop_notes,
    load_score,
    notes_from_csv,
    notes_from_midi,
    parts_of,
    score_end,
    warp_notes,
    weak_labels,
    write_midi,
)
from mpe_ssl.errors import MpeSslError
from mpe_ssl.formats import load_multipitch

HOP = 512 / grid.SAMPLE_RATE  # an STFT hop other than the label grid's 256


@pytest.fixture(scope="module")
def piece(rendered_root):
    entry = next(p for p in R.load_manifest(rendered_root)["pieces"] if p["split"] == "test")
    return {"notes": rendered_root / entry["notes"], "multipitch": rendered_root / entry["multipitch"],
            "num_samples": entry["num_samples"]}


def _chord_score() -> list[Note]:
    return sorted([
        Note("Soprano", 73, 0.0, 1.0, 72.0), Note("Soprano", 73, 1.0, 2.0, 74.0),
        Note("Alto", 68, 0.0, 2.0, 65.0), Note("Alto", 68, 2.0, 3.0, 64.0),
        Note("Bass", 70, 0.0, 1.5, 48.0), Note("Bass", 70, 1.5, 3.0, 43.0),
    ], key=lambda n: (n.onset, n.pitch))


def _by_part(notes):
    return {p: sorted([n for n in notes if n.part == p], key=lambda n: (n.onset, n.pitch)) for p in parts_of(notes)}


# ----------------------------------------------------------------------------- reading and writing


def test_notes_from_csv_agrees_with_read_notes(piece):
    rows = R.read_notes(piece["notes"])
    notes = notes_from_csv(piece["notes"])
    assert sorted((r["part"], r["program"], r["onset_s"], r["offset_s"], r["midi_pitch"]) for r in rows) == \
        sorted((n.part, n.program, n.onset, n.offset, n.pitch) for n in notes)
    assert [n.onset for n in notes] == sorted(n.onset for n in notes)
    assert parts_of(notes) == list(dict.fromkeys(r["part"] for r in rows))  # the file's part order
    assert parts_of(notes)[0] == "Soprano"  # so part=0 is a chorale's first part
    assert load_score(piece["notes"]) == notes
    assert score_end(notes) == max(r["offset_s"] for r in rows)
    assert set(parts_of(notes)) == {r["part"] for r in rows} and len(parts_of(notes)) >= 4


def test_write_midi_then_notes_from_midi_round_trip(piece, tmp_path):
    notes = notes_from_csv(piece["notes"])
    path = tmp_path / "score.mid"
    write_midi(notes, path)
    back = notes_from_midi(path)
    assert load_score(path) == back
    assert len(back) == len(notes) and [n.onset for n in back] == sorted(n.onset for n in back)
    assert parts_of(back) == parts_of(notes)  # the tracks keep the parts' order
    mine, theirs = _by_part(notes), _by_part(back)
    assert set(mine) == set(theirs)
    for part in mine:
        assert len(mine[part]) == len(theirs[part])
        for a, b in zip(mine[part], theirs[part]):
            assert a.program == b.program and a.pitch == b.pitch
            assert abs(a.onset - b.onset) < 1e-3 and abs(a.offset - b.offset) < 1e-3


def test_write_midi_rounds_pitch_and_refuses_negative_times(tmp_path):
    path = tmp_path / "detuned.mid"
    write_midi([Note("Flute", 73, 0.5, 1.25, 60.4), Note("Flute", 73, 1.25, 2.0, 61.6)], path)
    assert [(n.pitch, n.program, n.part) for n in notes_from_midi(path)] == [(60.0, 73, "Flute"), (62.0, 73, "Flute")]
    with pytest.raises(MpeSslError, match="note 0"):
        write_midi([Note("Flute", 73, -0.1, 1.0, 60)], tmp_path / "negative.mid")
    assert not (tmp_path / "negative.mid").exists()


def test_notes_from_midi_names_parts_and_skips_drums(tmp_path):
    midi = pretty_midi.PrettyMIDI()
    for name, program, is_drum, pitch in (("Piano", 0, False, 60), ("Piano", 0, False, 48), ("", 40, False, 67),
                                          ("Kit", 0, True, 36)):
        instrument = pretty_midi.Instrument(program=program, is_drum=is_drum, name=name)
        instrument.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=0.0, end=1.0))
        midi.instruments.append(instrument)
    path = tmp_path / "parts.mid"
    midi.write(str(path))
    notes = notes_from_midi(path)
    assert [(n.part, n.program, n.pitch) for n in notes] == [
        ("Piano", 0, 60.0), ("Piano (track 1)", 0, 48.0), ("track 2", 40, 67.0)]  # track order at a tie


def test_notes_from_midi_errors(tmp_path):
    with pytest.raises(MpeSslError, match="missing.mid: MIDI file not found"):
        notes_from_midi(tmp_path / "missing.mid")
    garbage = tmp_path / "garbage.mid"
    garbage.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)))
    with pytest.raises(MpeSslError, match="garbage.mid: not a readable MIDI file") as error:
        notes_from_midi(garbage)
    assert "\n" not in str(error.value)
    empty = pretty_midi.PrettyMIDI()
    empty.instruments.append(pretty_midi.Instrument(program=0, name="Piano"))
    empty.write(str(tmp_path / "empty.mid"))
    with pytest.raises(MpeSslError, match="empty.mid: the MIDI file has no pitched notes"):
        notes_from_midi(tmp_path / "empty.mid")
    drums = pretty_midi.PrettyMIDI()
    kit = pretty_midi.Instrument(program=0, is_drum=True)
    kit.notes.append(pretty_midi.Note(velocity=90, pitch=36, start=0.0, end=0.5))
    drums.instruments.append(kit)
    drums.write(str(tmp_path / "drums.mid"))
    with pytest.raises(MpeSslError, match="drums.mid: the MIDI file has no pitched notes"):
        notes_from_midi(tmp_path / "drums.mid")
    with pytest.raises(MpeSslError, match=r"score.txt: unknown score format '.txt'"):
        load_score(tmp_path / "score.txt")
    with pytest.raises(MpeSslError, match="label file not found"):
        load_score(tmp_path / "notes.csv")


# ----------------------------------------------------------------------------- cropping and warping


def test_crop_notes_keeps_overlapping_notes_clipped_and_shifted():
    notes = [Note("A", 0, 0.0, 1.0, 60), Note("A", 0, 0.5, 2.5, 62), Note("B", 1, 1.0, 1.5, 64),
             Note("B", 1, 2.0, 3.0, 65), Note("B", 1, 3.0, 4.0, 67)]
    assert crop_notes(notes, 1.0, 3.0) == [Note("A", 0, 0.0, 1.5, 62), Note("B", 1, 0.0, 0.5, 64),
                                           Note("B", 1, 1.0, 2.0, 65)]
    assert crop_notes(notes, 0.0, 10.0) == notes
    assert crop_notes(notes, 5.0, 6.0) == []
    with pytest.raises(MpeSslError, match="end 1.0 s must be after start 2.0 s"):
        crop_notes(notes, 2.0, 1.0)
    assert score_end(notes) == 4.0 and score_end([]) == 0.0


def _times(notes):
    return np.array([t for n in notes for t in (n.onset, n.offset)])


@pytest.mark.parametrize("strength", [0.1, 0.5, 2.0])
def test_warp_moves_times_by_at_most_strength_keeping_order(piece, strength):
    notes = notes_from_csv(piece["notes"])
    assert warp_notes(notes, 0.0, seed=3) == notes
    for seed in range(4):
        warped = warp_notes(notes, strength, seed)
        assert warped == warp_notes(notes, strength, seed)  # deterministic
        assert [(n.part, n.program, n.pitch) for n in warped] == [(n.part, n.program, n.pitch) for n in notes]
        before, after = _times(notes), _times(warped)
        shift = np.abs(after - before)
        assert strength * (1 - 1e-9) <= shift.max() <= strength * (1 + 1e-9)  # normalised on the notes
        assert all(n.onset < n.offset for n in warped)
        order = np.argsort(before, kind="stable")
        steps_before, steps_after = np.diff(before[order]), np.diff(after[order])
        moving = steps_before > 1e-6
        assert np.all(steps_after[moving] > 0)  # strictly monotone: order and overlaps kept
        slope = steps_after[moving] / steps_before[moving]
        assert slope.min() >= 0.5 - 1e-3 and slope.max() <= 1.5 + 1e-3
        assert np.all(np.abs(steps_after[~moving]) < 1e-5)  # equal times stay (nearly) equal
    assert warp_notes(notes, strength, 0) != warp_notes(notes, strength, 1)


def test_warp_of_a_short_score_stays_monotone():
    notes = [Note("A", 0, 0.0, 0.2, 60), Note("A", 0, 0.2, 0.5, 62), Note("A", 0, 0.5, 1.0, 64)]
    for seed in range(10):
        warped = warp_notes(notes, 3.0, seed)
        after = _times(warped)
        assert np.all(np.diff(after[[0, 1, 3, 5]]) > 0) and abs(after[1] - after[2]) < 1e-9
        assert np.abs(after - _times(notes)).max() <= 3.0 + 1e-9
    with pytest.raises(MpeSslError, match="warp strength"):
        warp_notes(notes, -1.0, 0)


# ----------------------------------------------------------------------------- units and labels


def test_unit_layout():
    notes = [Note("Piano", 0, 0.2, 0.5, 60.0), Note("Piano", 0, 0.8, 0.93, 60.4), Note("Violin", 40, 0.0, 0.31, 67.0)]
    layout = UnitLayout.from_notes(notes, units_per_class=3, free_units=1)
    assert layout.classes == ((0, 60), (40, 67)) and layout.n_units == 7
    assert [layout.class_of(n) for n in notes] == [0, 0, 1]
    assert layout.onset_unit(1) == 3 and layout.sustain_units(1) == slice(4, 6) and layout.free == slice(6, 7)
    np.testing.assert_array_equal(layout.unit_pitches(), [60, 60, 60, 67, 67, 67, np.nan])
    np.testing.assert_array_equal(layout.unit_is_onset(), [1, 0, 0, 1, 0, 0, 0])
    with pytest.raises(MpeSslError, match=r"class \(0, 61\) is not in the unit layout"):
        layout.class_of(Note("Piano", 0, 0.0, 1.0, 61.0))
    with pytest.raises(MpeSslError, match="units_per_class: 1 must be >= 2"):
        UnitLayout.from_notes(notes, units_per_class=1)
    assert UnitLayout([[0, 60], [40, 67]], 3, 1) == layout  # lists (from JSON) are normalised
    with pytest.raises(ValueError, match="sorted and distinct"):
        UnitLayout(((40, 67), (0, 60)))
    four = UnitLayout.from_notes(notes, units_per_class=4)
    assert four.n_units == 8 and four.free == slice(8, 8) and four.sustain_units(0) == slice(1, 4)
    hands = [Note("Right", 0, 0.0, 1.0, 60.0), Note("Left", 0, 0.0, 1.0, 60.0)]
    assert UnitLayout.from_notes(hands).classes == ((0, 60),)
    by_part = UnitLayout.from_notes(hands, by="part")
    assert by_part.classes == ((0, 60), (1, 60)) and [by_part.class_of(n) for n in hands] == [0, 1]


def _rows(n_frames: int, *spans) -> list[int]:
    row = [0] * n_frames
    for first, last in spans:
        for f in range(first, last + 1):
            row[f] = 1
    return row


def test_weak_labels_of_a_small_score_exact_frames():
    hop, n = 0.1, 12
    notes = [Note("Violin", 40, 0.0, 0.31, 67.0), Note("Piano", 0, 0.2, 0.5, 60.0),
             Note("Piano", 0, 0.8, 0.93, 60.4), Note("Violin", 40, 1.17, 2.0, 67.0)]
    layout = UnitLayout.from_notes(notes, units_per_class=3, free_units=1)
    strict = weak_labels(notes, layout, n, hop, tolerance=0.0)
    assert strict.dtype == torch.float32 and strict.shape == (7, n)
    piano_sustain, violin_sustain = _rows(n, (2, 5), (8, 9)), _rows(n, (0, 3))
    expected = [_rows(n, (2, 2), (8, 8)), piano_sustain, piano_sustain,
                _rows(n, (0, 0)), violin_sustain, violin_sustain, [1] * n]
    assert strict.int().tolist() == expected
    loose = weak_labels(notes, layout, n, hop, tolerance=0.1, free=False)  # one frame either side
    piano_sustain, violin_sustain = _rows(n, (1, 10)), _rows(n, (0, 4), (11, 11))
    expected = [_rows(n, (1, 3), (7, 9)), piano_sustain, piano_sustain,
                _rows(n, (0, 1), (11, 11)), violin_sustain, violin_sustain, [0] * n]
    assert loose.int().tolist() == expected
    assert weak_labels([], layout, n, hop).sum() == n  # only the free unit
    with pytest.raises(MpeSslError, match="not in the unit layout"):
        weak_labels([Note("Piano", 0, 0.0, 1.0, 72.0)], layout, n, hop)


def test_weak_labels_cover_the_rendered_multipitch_labels(piece):
    notes = notes_from_csv(piece["notes"])
    layout = UnitLayout.from_notes(notes, units_per_class=3, free_units=2)
    n_frames = 1 + piece["num_samples"] // 512
    strict = weak_labels(notes, layout, n_frames, HOP, tolerance=0.0).numpy().astype(bool)
    assert strict.shape == (layout.n_units, n_frames)
    times, freqs = load_multipitch(piece["multipitch"])
    times = grid.frame_times(len(times))  # exact: the file keeps 6 decimals
    classes = np.array(layout.classes)
    sustain = {c: strict[layout.sustain_units(c)] for c in range(len(classes))}
    assert all(np.array_equal(rows[0], rows[i]) for rows in sustain.values() for i in range(len(rows)))
    frame_centres = np.arange(n_frames) * HOP
    checked = 0
    for t, hz in zip(times, freqs):
        near = np.flatnonzero(np.abs(frame_centres - t) <= HOP / 2 + 1e-6)  # the nearest frame(s)
        for pitch in np.rint(grid.hz_to_midi(hz)).astype(int):
            rows = [sustain[c][0] for c in np.flatnonzero(classes[:, 1] == pitch)]
            assert rows and any(row[near].any() for row in rows), (t, pitch)
            checked += 1
    assert checked > 1000
    # and only near the notes of their class: sustain within the note's span, onsets at onsets
    for c in range(len(classes)):
        mine = [n for n in notes if layout.class_of(n) == c]
        on = np.flatnonzero(sustain[c][0])
        near_note = [any(n.onset - HOP / 2 - 1e-6 <= f * HOP < n.offset + HOP / 2 + 1e-6 for n in mine) for f in on]
        assert all(near_note), c
        onset_frames = np.flatnonzero(strict[layout.onset_unit(c)])
        assert 1 <= len(onset_frames) <= len(mine)
        assert all(any(abs(f * HOP - n.onset) <= HOP / 2 + 1e-6 for n in mine) for f in onset_frames), c
        assert all(any(abs(f * HOP - n.onset) <= HOP / 2 + 1e-6 for f in onset_frames) for n in mine), c
    assert strict[layout.free].all()
    # a tolerance of 0.5 s widens every span by round(0.5 / hop) frames on both sides
    k = round(0.5 / HOP)
    loose = weak_labels(notes, layout, n_frames, HOP, tolerance=0.5).numpy().astype(bool)
    padded = np.pad(strict, ((0, 0), (k, k)))
    widened = np.stack([padded[:, i:i + n_frames] for i in range(2 * k + 1)]).any(axis=0)
    np.testing.assert_array_equal(loose, widened)
    assert loose.sum() > strict.sum()
    no_free = weak_labels(notes, layout, n_frames, HOP, tolerance=0.5, free=False).numpy()
    assert not no_free[layout.free].any() and np.array_equal(no_free[:-2], loose[:-2])


# ----------------------------------------------------------------------------- keep rules


def test_keep_rule_parse_and_select():
    notes = _chord_score()
    # sorted: Bass 48, Alto 65, Soprano 72 at 0; Soprano 74 at 1; Bass 43 at 1.5; Alto 64 at 2
    assert [n.pitch for n in notes] == [48, 65, 72, 74, 43, 64]
    assert parts_of(notes) == ["Bass", "Alto", "Soprano"]

    def kept(*specs):
        return np.flatnonzero(KeepRule.parse(list(specs)).select(notes)).tolist()

    assert KeepRule.parse(["part=Soprano,alto"]) == KeepRule(parts=("Soprano", "alto"))
    assert kept("part=Soprano,alto") == [1, 2, 3, 5]
    assert kept("part=SOPRANO") == [2, 3]
    assert kept("part=0") == [0, 4] and kept("part=0,2") == [0, 2, 3, 4]
    assert KeepRule.parse(["pitch=60-72"]).pitch_range == (60.0, 72.0)
    assert kept("pitch=60-72") == kept("pitch=C4-C5") == [1, 2, 5]
    assert KeepRule.parse(["pitch=C-1-C4"]).pitch_range == (0.0, 60.0)
    assert kept("pitch=72") == [2]
    assert KeepRule.parse(["notes=0-2,4"]).note_indices == (0, 1, 2, 4)
    assert kept("notes=0-2,4") == [0, 1, 2, 4]
    assert kept("part=Bass,Soprano", "pitch=45-80", "notes=0-3") == [0, 2, 3]  # ANDed
    assert kept() == list(range(6))
    detuned = [Note("A", 0, 0.0, 1.0, 59.6), Note("A", 0, 1.0, 2.0, 72.4), Note("A", 0, 2.0, 3.0, 72.6)]
    assert KeepRule.parse(["pitch=60-72"]).select(detuned).tolist() == [True, True, False]  # rounded pitch


@pytest.mark.parametrize("spec", ["pitch", "pitch=", "colour=red", "pitch=60-", "pitch=H4-C5", "pitch=72-60",
                                  "notes=3-1", "notes=a", "notes=-1", "part=Soprano,,Alto"])
def test_keep_rule_bad_syntax_names_the_spec(spec):
    with pytest.raises(MpeSslError, match="keep rule") as error:
        KeepRule.parse([spec])
    message = str(error.value)
    assert repr(spec) in message and "pitch=LOW-HIGH" in message and "\n" not in message


def test_keep_rule_select_errors():
    notes = _chord_score()
    with pytest.raises(MpeSslError, match=r"no part 'Tenor' \(its parts: 0='Bass', 1='Alto', 2='Soprano'\)"):
        KeepRule.parse(["part=Soprano,Tenor"]).select(notes)
    with pytest.raises(MpeSslError, match="no part '3'"):
        KeepRule.parse(["part=3"]).select(notes)
    with pytest.raises(MpeSslError, match="selects no note"):
        KeepRule.parse(["part=Soprano", "pitch=40-50"]).select(notes)
    with pytest.raises(MpeSslError, match="note index 6 is out of range"):
        KeepRule.parse(["notes=2-6"]).select(notes)
    with pytest.raises(MpeSslError, match="part given twice"):
        KeepRule.parse(["part=Soprano", "part=Alto"])
