"""`mpe-ssl transcribe`: output formats, any audio format in, bad files named and skipped."""

from __future__ import annotations

import mir_eval
import numpy as np
import pretty_midi
import soundfile as sf

from mpe_ssl.cli import main
from mpe_ssl.grid import frame_times, midi_to_hz, num_frames
from mpe_ssl.formats import multipitch_to_midi
from tests.conftest import tone


def test_writes_mir_eval_multipitch_text_and_midi_for_stereo_44k_input(tmp_path, tiny_checkpoint):
    audio = tone([220.0, 330.0], seconds=3.0, sample_rate=44100)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([audio, 0.5 * audio], axis=1), 44100)
    assert main(["transcribe", str(path), "--ckpt", tiny_checkpoint, "--out", str(tmp_path / "out")]) == 0
    times, freqs = mir_eval.io.load_ragged_time_series(str(tmp_path / "out" / "stereo.multipitch.txt"))
    assert len(times) == num_frames(3 * 22050)
    assert np.allclose(times, frame_times(len(times)), atol=1e-6)
    assert all(np.all(f > 0) for f in freqs)
    pretty_midi.PrettyMIDI(str(tmp_path / "out" / "stereo.mid"))
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_bad_files_get_one_line_errors_and_the_rest_are_transcribed(tmp_path, tiny_checkpoint, capsys):
    good = tmp_path / "good.wav"
    sf.write(good, tone([440.0], 1.0), 22050)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0,), dtype=np.float32), 22050)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF not really a wave file" * 10)
    missing = tmp_path / "missing.wav"
    out = tmp_path / "out"
    status = main(["transcribe", str(missing), str(empty), str(corrupt), str(good),
                   "--ckpt", tiny_checkpoint, "--out", str(out)])
    assert status == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 3
    for name, line in zip(("missing.wav", "empty.wav", "corrupt.wav"), errors):
        assert name in line
    assert (out / "good.multipitch.txt").is_file() and (out / "good.mid").is_file()
    assert not (out / "empty.multipitch.txt").exists()


def test_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    status = main(["transcribe", str(tmp_path / "a.wav"), "--ckpt", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path)])
    assert status == 2
    assert "nope.ckpt" in capsys.readouterr().err.strip()


def test_frames_become_notes_of_runs_of_one_semitone():
    times = frame_times(10)
    c4, e4 = midi_to_hz(60.0), midi_to_hz(64.0)
    freqs = [np.array([c4])] * 4 + [np.array([c4, e4])] * 3 + [np.array([])] * 2 + [np.array([e4])]
    notes = multipitch_to_midi((times, freqs), min_frames=2).instruments[0].notes
    assert [(n.pitch, round(n.start, 4), round(n.end, 4)) for n in notes] == [
        (60, 0.0, round(times[7], 4)),
        (64, round(times[4], 4), round(times[7], 4)),
    ]
