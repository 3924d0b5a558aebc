"""Rendering the chorales: splits, caching, determinism, files and labels on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import music21
import numpy as np
import pytest
import soundfile as sf

from mpe_ssl import grid
from mpe_ssl.data import chorales
from mpe_ssl.data import render as R
from mpe_ssl.data.datasets import load_notes
from mpe_ssl.errors import MpeSslError


def _files(root: Path, piece: dict) -> dict[str, bytes]:
    names = ["mix", "notes", "multipitch"] + [f"stems/{p}" for p in piece["stems"]]
    paths = [piece["mix"], piece["notes"], piece["multipitch"], *piece["stems"].values()]
    return {n: (root / p).read_bytes() for n, p in zip(names, paths)}


# ------------------------------------------------------------------ corpus and splits


def test_score_to_chorale_merges_ties_skips_rests_and_grace_notes_splits_chords():
    part = music21.stream.Part(id="Soprano")
    part.partName = "Soprano"
    tied_a = music21.note.Note("C4", quarterLength=1.0)
    tied_a.tie = music21.tie.Tie("start")
    tied_b = music21.note.Note("C4", quarterLength=1.0)
    tied_b.tie = music21.tie.Tie("stop")
    grace = music21.note.Note("D4").getGrace()
    for element in (tied_a, tied_b, music21.note.Rest(quarterLength=1.0), grace,
                    music21.chord.Chord(["E4", "G4"], quarterLength=2.0)):
        part.append(element)
    score = music21.stream.Score([part])
    chorale = chorales.score_to_chorale(score, "toy")
    assert chorale.parts == ["Soprano"]
    notes = [(n.onset_q, n.duration_q, n.pitch) for n in chorale.notes["Soprano"]]
    assert notes == [(0.0, 2.0, 60), (3.0, 2.0, 64), (3.0, 2.0, 67)]
    assert chorale.length_q == 5.0 and chorale.qpm is None


def test_chorale_ids_each_piece_once():
    ids = chorales.chorale_ids()
    assert len(ids) == len(set(ids)) >= 340
    assert not set(ids) & set(chorales.DUPLICATES)
    assert set(chorales.DUPLICATES.values()) <= set(ids)
    assert len(chorales.chorale_ids(dedupe=False)) == len(ids) + len(chorales.DUPLICATES)


def test_splits_disjoint_fixed_by_seed_and_stable_when_counts_change():
    config = R.RenderConfig(seed=0)
    splits = R.split_assignment(config)
    ids = chorales.chorale_ids()
    assert sorted(sum(splits.values(), [])) == sorted(ids)  # every piece in exactly one split
    assert abs(len(splits["train"]) - 0.8 * len(ids)) <= 1 and abs(len(splits["val"]) - 0.1 * len(ids)) <= 1
    assert R.split_assignment(R.RenderConfig(seed=0)) == splits
    assert R.split_assignment(R.RenderConfig(seed=1)) != splits
    small = R.selected_pieces(R.RenderConfig(seed=0, counts={"train": 2, "val": 1, "test": 1}))
    large = R.selected_pieces(R.RenderConfig(seed=0, counts={"train": 7, "val": 3}))
    assert small == [(splits["train"][0], "train"), (splits["train"][1], "train"),
                     (splits["val"][0], "val"), (splits["test"][0], "test")]
    assert set(small) <= set(large)  # asking for more never moves a piece
    assert len(large) == 7 + 3 + len(splits["test"])


@pytest.mark.slow
def test_duplicates_table_is_current():
    assert chorales.find_duplicates() == chorales.DUPLICATES


# ------------------------------------------------------------------ the rendered files


def test_manifest_lists_the_pieces_with_paths_and_durations(rendered_root):
    manifest = json.loads((rendered_root / "manifest.json").read_text())
    splits = R.split_assignment(R.RenderConfig(seed=0))
    assert [(p["id"], p["split"]) for p in manifest["pieces"]] == [(splits[s][0], s) for s in R.SPLITS]
    assert manifest["counts"] == {"train": 1, "val": 1, "test": 1}
    assert manifest["sample_rate"] == grid.SAMPLE_RATE and manifest["hop_length"] == grid.HOP_LENGTH
    assert json.loads((rendered_root / "config.json").read_text())["config_hash"] == manifest["config_hash"]
    for piece in manifest["pieces"]:
        info = sf.info(str(rendered_root / piece["mix"]))
        assert info.samplerate == grid.SAMPLE_RATE and info.channels == 1
        assert info.frames == piece["num_samples"]
        assert piece["duration"] == pytest.approx(info.frames / grid.SAMPLE_RATE)
        assert len(piece["stems"]) >= 4
        meta = json.loads((rendered_root / piece["meta"]).read_text())
        assert meta["id"] == piece["id"] and meta["split"] == piece["split"] and meta["seed"] == 0
        assert len(meta["programs"]) == len(meta["gains_db"]) == len(meta["parts"])
        assert set(meta["programs"]) <= set(R.DEFAULT_PROGRAMS)
        assert 0.9 <= meta["tempo_factor"] <= 1.1
    assert not any((rendered_root / ".tmp").iterdir())


def test_mixture_is_exactly_the_sum_of_the_stems(rendered_root):
    for piece in R.load_manifest(rendered_root)["pieces"]:
        mix, _ = sf.read(str(rendered_root / piece["mix"]), dtype="float32")
        stems = [sf.read(str(rendered_root / p), dtype="float32")[0] for p in piece["stems"].values()]
        assert all(s.shape == mix.shape for s in stems)
        np.testing.assert_array_equal(np.sum(stems, axis=0, dtype=np.float32), mix)
        assert 0.85 < np.abs(mix).max() <= 0.9 + 1e-4  # peak-normalised, no clipping
        assert min(np.sqrt(np.mean(s**2)) for s in stems) > 0.01  # every part audible


def test_multipitch_file_matches_the_notes_on_the_grid(rendered_root):
    piece = R.load_manifest(rendered_root)["pieces"][0]
    times, freqs = R.load_multipitch(rendered_root / piece["multipitch"])
    n = grid.num_frames(piece["num_samples"])
    np.testing.assert_allclose(times, grid.frame_times(n), atol=1e-6)
    notes = load_notes(rendered_root / piece["notes"])
    rows = R.read_notes(rendered_root / piece["notes"])
    assert {r["part"] for r in rows} == set(piece["stems"])
    assert all(r["offset_s"] > r["onset_s"] for r in rows)
    hop = grid.HOP_LENGTH
    for f in range(0, n, 7):
        expected = sorted({int(p) for on, off, p in notes if on <= f * hop < off})
        got = sorted(int(round(m)) for m in grid.hz_to_midi(freqs[f])) if len(freqs[f]) else []
        assert got == expected, f
    assert sum(len(x) > 0 for x in freqs) > 0.8 * n  # music most of the time


def test_same_seed_same_files_other_seed_differs(rendered_root, tmp_path):
    train = R.load_manifest(rendered_root)["pieces"][0]
    # The CLI with the same seed and a smaller count: the same piece, bit-identical.
    argv = ["render", "--root", str(tmp_path / "again"), "--seed", "0", "--train", "1", "--val", "0",
            "--test", "0", "--quiet"]
    assert R.main(argv) == 0
    again = R.load_manifest(tmp_path / "again")["pieces"]
    assert [p["id"] for p in again] == [train["id"]]
    assert _files(tmp_path / "again", again[0]) == _files(rendered_root, train)
    # Another seed renders the same chorale differently (programs, gains, tempo).
    other = R.render_piece(train["id"], "train", R.RenderConfig(seed=1), tmp_path / "seed1")
    mine = json.loads((rendered_root / train["meta"]).read_text())
    assert (other["programs"], other["gains_db"], other["tempo_factor"]) != (
        mine["programs"], mine["gains_db"], mine["tempo_factor"])
    assert (tmp_path / "seed1" / "train" / train["id"] / "mix.wav").read_bytes() != (rendered_root / train["mix"]).read_bytes()


def test_interrupted_render_is_not_taken_as_done(rendered_root, tmp_path, monkeypatch):
    root = tmp_path / "interrupted"
    config = R.RenderConfig(seed=0, counts={"train": 1, "val": 0, "test": 0})
    piece_id = R.split_assignment(config)["train"][0]
    # A leftover temporary piece of a dead process, and a half-copied piece directory.
    (root / ".tmp" / f"{piece_id}.999999999.deadbeef" / "stems").mkdir(parents=True)
    (root / "train" / piece_id).mkdir(parents=True)
    (root / "train" / piece_id / "mix.wav").write_bytes(b"half")
    # An exception in the middle of writing the piece.
    def boom(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(R, "write_multipitch", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        R.render_dataset(config, root=root, progress=False)
    assert not R.piece_done(root / "train" / piece_id)
    assert not any((root / ".tmp").iterdir())  # cleaned up, stale leftovers included
    assert not (root / "manifest.json").exists()
    monkeypatch.undo()
    R.render_dataset(config, root=root, progress=False)
    assert R.piece_done(root / "train" / piece_id)
    reference = R.load_manifest(rendered_root)["pieces"][0]
    assert _files(root, R.load_manifest(root)["pieces"][0]) == _files(rendered_root, reference)
    # A re-run skips the finished piece (its files are not rewritten).
    mtime = os.stat(root / "train" / piece_id / "mix.wav").st_mtime_ns
    R.render_dataset(config, root=root, progress=False)
    assert os.stat(root / "train" / piece_id / "mix.wav").st_mtime_ns == mtime


def test_bad_inputs_raise_one_line_errors(rendered_root, tmp_path):
    with pytest.raises(MpeSslError, match="nope.sf2"):
        R.render_dataset(R.RenderConfig(soundfont=str(tmp_path / "nope.sf2")), root=tmp_path / "x")
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"not a soundfont")
    with pytest.raises(MpeSslError, match="bad.sf2"):
        R.render_dataset(R.RenderConfig(soundfont=str(bad)), root=tmp_path / "x")
    with pytest.raises(MpeSslError, match="programs: 128"):
        R.render_dataset(R.RenderConfig(programs=(40, 128)), root=tmp_path / "x")
    with pytest.raises(MpeSslError, match="counts"):
        R.render_dataset(R.RenderConfig(counts={"training": 3}), root=tmp_path / "x")
    with pytest.raises(MpeSslError, match="another config"):  # a root holds one config
        R.render_dataset(R.RenderConfig(seed=5, counts={"train": 0, "val": 0, "test": 0}), root=rendered_root)
