"""`mpe-ssl transcribe`: output formats, any audio format in, bad files named and skipped."""

from __future__ import annotations

import os

import mir_eval
import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import torch

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
    assert all((out / f"good{ext}").is_file() for ext in (".multipitch.txt", ".mid", ".notes.csv"))
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


# ----------------------------------------------------------------- helpers of the checks below
def _run(capsys, *args):
    """``mpe-ssl transcribe ARGS``: (status, stdout lines, stderr lines)."""
    status = main(["transcribe", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err.splitlines()


def _refuse_to_load(monkeypatch):
    """Make loading a model fail loudly: the checks under test must come before it."""
    import mpe_ssl.transcribe

    def load_system(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(mpe_ssl.transcribe, "load_system", load_system)


def _frequencies(path):
    return mir_eval.io.load_ragged_time_series(str(path))[1]


# ----------------------------------------------------------------- inputs that share a stem
def test_inputs_sharing_a_stem_are_named_after_their_full_file_names(tmp_path, tiny_checkpoint, capsys):
    audio = tone([220.0], 0.5)
    inputs = [tmp_path / "clip.flac", tmp_path / "clip.mp3", tmp_path / "d2" / "clip.wav", tmp_path / "song.wav"]
    inputs[2].parent.mkdir()
    for path in inputs:
        sf.write(path, audio, 22050)
    out = tmp_path / "out"
    status, lines, _ = _run(capsys, *inputs, "--ckpt", tiny_checkpoint, "--out", out)
    assert status == 0
    names = ["clip.flac", "clip.mp3", "clip.wav", "song"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{n}{ext}" for n in names for ext in (".multipitch.txt", ".mid", ".notes.csv"))
    for path, name in zip(inputs, names):  # which input went where
        assert f"{path} -> {out / name}.multipitch.txt, {out / name}.mid, {out / name}.notes.csv" in lines


def test_inputs_with_the_same_file_name_are_refused_before_any_work(tmp_path, monkeypatch, capsys):
    _refuse_to_load(monkeypatch)
    a, b = tmp_path / "a" / "clip.wav", tmp_path / "b" / "clip.wav"
    for path in (a, b):
        path.parent.mkdir()
        sf.write(path, tone([220.0], 0.5), 22050)
    out = tmp_path / "out"
    status, _, errors = _run(capsys, a, b, "--ckpt", tmp_path / "x.ckpt", "--out", out)
    assert status == 2
    assert len(errors) == 1 and str(a) in errors[0] and str(b) in errors[0]
    assert not out.exists() or not list(out.iterdir())


# ----------------------------------------------------------------- the silence gate
@pytest.mark.parametrize("kind", ["digital zeros", "white noise at -90 dBFS"])
def test_silence_gets_no_notes(kind, tmp_path, tiny_checkpoint, capsys):
    samples = 5 * 22050
    if kind == "digital zeros":
        audio = np.zeros(samples, dtype=np.float32)
    else:
        audio = (10 ** (-90 / 20) * np.random.default_rng(0).standard_normal(samples)).astype(np.float32)
    sf.write(tmp_path / "quiet.wav", audio, 22050, subtype="FLOAT")
    status, _, _ = _run(capsys, tmp_path / "quiet.wav", "--ckpt", tiny_checkpoint, "--out", tmp_path / "out")
    assert status == 0
    frequencies = _frequencies(tmp_path / "out" / "quiet.multipitch.txt")
    assert len(frequencies) == num_frames(samples)
    assert sum(len(f) for f in frequencies) == 0


def test_silence_around_music_gets_no_notes_in_the_silent_seconds(tmp_path, tiny_checkpoint, capsys):
    zeros = np.zeros(22050, dtype=np.float32)
    audio = np.concatenate([zeros, tone([261.63, 329.63, 392.0], 2.0), zeros])
    sf.write(tmp_path / "piece.wav", audio, 22050, subtype="FLOAT")
    status, _, _ = _run(capsys, tmp_path / "piece.wav", "--ckpt", tiny_checkpoint, "--out", tmp_path / "out")
    assert status == 0
    frequencies = _frequencies(tmp_path / "out" / "piece.multipitch.txt")
    second, edge = 22050 / 256, 4  # edge: half the gate's 2048-sample window, in frames
    assert sum(len(f) for f in frequencies[: int(second) - edge]) == 0
    assert sum(len(f) for f in frequencies[int(3 * second) + edge + 1 :]) == 0
    # the music itself is not gated (what the tiny model predicts there is its own business)
    from mpe_ssl.audio.silence import silent_frames

    silent = silent_frames(audio, -60.0)
    assert silent.shape == (num_frames(len(audio)),) and silent.dtype == bool
    assert not silent[int(second) + edge : int(3 * second) - edge].any()
    assert silent[: int(second) - edge].all() and silent[int(3 * second) + edge + 1 :].all()


@pytest.mark.parametrize("silence_db, noise_db, notes",
                         [("-inf", None, True), ("-20", -30.0, False), ("-40", -30.0, True)])
def test_silence_db_sets_the_gate(silence_db, noise_db, notes, tmp_path, tiny_checkpoint, monkeypatch, capsys):
    import mpe_ssl.transcribe

    def notes_everywhere(system, reader):  # a model that hears notes in every frame: only the gate decides
        frames = num_frames(reader.samples)
        for start in range(0, frames, 30):  # in chunks, as salience_chunks gives them
            salience = torch.zeros(440, min(frames, start + 30) - start)
            salience[::10] = 0.9
            yield start, start + salience.shape[1], salience

    monkeypatch.setattr(mpe_ssl.transcribe, "salience_chunks", notes_everywhere)
    audio = np.zeros(22050, dtype=np.float32)
    if noise_db is not None:
        audio = (10 ** (noise_db / 20) * np.random.default_rng(0).standard_normal(22050)).astype(np.float32)
    sf.write(tmp_path / "a.wav", audio, 22050, subtype="FLOAT")
    status, _, _ = _run(capsys, tmp_path / "a.wav", "--ckpt", tiny_checkpoint, "--out", tmp_path / "out",
                        f"--silence-db={silence_db}")
    assert status == 0
    frequencies = _frequencies(tmp_path / "out" / "a.multipitch.txt")
    assert all(len(f) > 0 for f in frequencies) if notes else sum(len(f) for f in frequencies) == 0


@pytest.mark.parametrize("value", ["nan", "3"])
def test_silence_db_above_0_dbfs_is_refused_before_loading(value, tmp_path, monkeypatch, capsys):
    _refuse_to_load(monkeypatch)
    sf.write(tmp_path / "a.wav", tone([220.0], 0.5), 22050)
    status, _, errors = _run(capsys, tmp_path / "a.wav", "--ckpt", tmp_path / "x.ckpt", "--out", tmp_path / "out",
                             "--silence-db", value)
    assert status == 2 and len(errors) == 1 and "--silence-db" in errors[0] and value in errors[0]


def test_silent_frames_measures_the_level_in_dbfs():
    from mpe_ssl.audio.silence import silent_frames

    noise = np.random.default_rng(0).standard_normal(22050).astype(np.float32)  # RMS 1: 0 dBFS
    for level, silent in ((-90.0, True), (-65.0, True), (-55.0, False), (-20.0, False)):
        gated = silent_frames(10 ** (level / 20) * noise, -60.0)
        assert gated.shape == (num_frames(22050),)
        assert gated[4:-4].all() if silent else not gated.any()
    assert silent_frames(np.zeros(1000, dtype=np.float32), -60.0).all()
    assert not silent_frames(10 ** (-70 / 20) * noise, -80.0).any()


# ----------------------------------------------------------------- an unusable --out
def test_out_that_is_a_file_is_a_one_line_error_before_loading(tmp_path, monkeypatch, capsys):
    _refuse_to_load(monkeypatch)
    sf.write(tmp_path / "a.wav", tone([220.0], 0.5), 22050)
    out = tmp_path / "taken"
    out.write_text("not a folder")
    status, _, errors = _run(capsys, tmp_path / "a.wav", "--ckpt", tmp_path / "x.ckpt", "--out", out)
    assert status == 2 and len(errors) == 1 and str(out) in errors[0]


def test_out_under_a_file_is_a_one_line_error_before_loading(tmp_path, monkeypatch, capsys):
    # a folder that cannot be created, even by root (for whom chmod 0o555 does not stop writes)
    _refuse_to_load(monkeypatch)
    sf.write(tmp_path / "a.wav", tone([220.0], 0.5), 22050)
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "sub"
    status, _, errors = _run(capsys, tmp_path / "a.wav", "--ckpt", tmp_path / "x.ckpt", "--out", out)
    assert status == 2 and len(errors) == 1 and str(out) in errors[0]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("where", ["out itself", "its parent"])
def test_read_only_out_is_a_one_line_error_before_loading(where, tmp_path, monkeypatch, capsys):
    _refuse_to_load(monkeypatch)
    sf.write(tmp_path / "a.wav", tone([220.0], 0.5), 22050)
    locked = tmp_path / "locked"
    locked.mkdir()
    out = locked if where == "out itself" else locked / "out"
    locked.chmod(0o555)
    try:
        status, _, errors = _run(capsys, tmp_path / "a.wav", "--ckpt", tmp_path / "x.ckpt", "--out", out)
    finally:
        locked.chmod(0o755)
    assert status == 2 and len(errors) == 1 and str(out) in errors[0]


# ----------------------------------------------------------------- --threshold and --device
@pytest.mark.parametrize("option, value", [("threshold", v) for v in ["-1", "0", "1", "1.5", "nan"]]
                         + [("batch", "0"), ("batch", "-2")])
def test_bad_option_values_are_refused_before_loading(option, value, tmp_path, monkeypatch, capsys):
    """--threshold outside (0, 1), --batch below 1: one line naming the option and the value."""
    _refuse_to_load(monkeypatch)
    sf.write(tmp_path / "a.wav", tone([220.0], 0.5), 22050)
    status, _, errors = _run(capsys, tmp_path / "a.wav", "--ckpt", tmp_path / "x.ckpt", "--out", tmp_path / "out",
                             f"--{option}={value}")
    assert status == 2 and len(errors) == 1 and option in errors[0] and value in errors[0]


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "not-a-device"])
def test_unavailable_device_is_refused_before_loading(device, tmp_path, monkeypatch, capsys):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    _refuse_to_load(monkeypatch)
    sf.write(tmp_path / "a.wav", tone([220.0], 0.5), 22050)
    status, _, errors = _run(capsys, tmp_path / "a.wav", "--ckpt", tmp_path / "x.ckpt", "--out", tmp_path / "out",
                             "--device", device)
    assert status == 2 and len(errors) == 1 and device in errors[0]


# ----------------------------------------------------------------- a folder as input
def test_a_folder_input_transcribes_the_audio_files_inside_it(tmp_path, tiny_checkpoint, capsys):
    folder = tmp_path / "album"
    (folder / "nested").mkdir(parents=True)
    for name in ("b.flac", "a.wav", "c.ogg", "nested/deep.wav"):
        sf.write(folder / name, tone([220.0], 0.5), 22050)
    (folder / "notes.txt").write_text("not audio")
    out = tmp_path / "out"
    status, lines, errors = _run(capsys, folder, "--ckpt", tiny_checkpoint, "--out", out)
    assert status == 0 and not errors
    assert [line.split(" -> ")[0] for line in lines] == [str(folder / n) for n in ("a.wav", "b.flac", "c.ogg")]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{n}{ext}" for n in "abc" for ext in (".multipitch.txt", ".mid", ".notes.csv"))


def test_a_folder_without_audio_files_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    _refuse_to_load(monkeypatch)
    folder = tmp_path / "empty"
    (folder / "nested").mkdir(parents=True)
    sf.write(folder / "nested" / "deep.wav", tone([220.0], 0.5), 22050)
    (folder / "notes.txt").write_text("not audio")
    status, _, errors = _run(capsys, folder, "--ckpt", tmp_path / "x.ckpt", "--out", tmp_path / "out")
    assert status == 2 and len(errors) == 1 and str(folder) in errors[0]


# ----------------------------------------------------------------- chunks without seams
@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint):
    from mpe_ssl.pretrained import load_transcriber

    return load_transcriber(tiny_checkpoint)


@pytest.fixture(scope="module")
def chords() -> np.ndarray:
    """About 8 s of chords of unequal lengths, louder and quieter: with 86-frame chunks the
    middle chunks' context (2 x 193 frames) is cut on both sides."""
    parts = [(0.5, [220.0, 330.0], 1.3), (0.2, [261.6, 392.0, 523.3], 1.7), (1.0, [98.0, 146.8], 1.1),
             (0.05, [440.0], 0.9), (0.7, [174.6, 220.0, 261.6, 349.2], 1.6), (0.3, [82.4, 123.5], 1.4)]
    return np.concatenate([level * tone(pitches, seconds) for level, pitches, seconds in parts]).astype(np.float32)


def _borders(total: int, chunk: int) -> np.ndarray:
    borders = np.arange(chunk, total, chunk)
    return np.unique(np.concatenate([borders - 2, borders - 1, borders, borders + 1]))


def test_receptive_fields_are_worked_out_from_the_layers(tiny_model):
    from mpe_ssl.transcribe import receptive_field

    # level 8 (86 Hz): kernel half 16 samples = 4096 at 22050 Hz, plus 8 cascaded 255-tap
    # decimation filters: 127 * (2**8 - 1) = 32385 samples; 36481 / 256 -> 143 frames.
    # Network: input conv 1 + 8 residual stacks of dilations 1, 2, 3 + output conv 1.
    assert receptive_field(tiny_model) == (143, 50)


def test_chunked_transcription_equals_the_whole_file_at_once(tiny_model, chords):
    from mpe_ssl.transcribe import transcribe_audio

    whole = transcribe_audio(tiny_model, chords, chunk_frames=10**6)
    with torch.no_grad():  # the plain model on the whole file: what the chunks must give
        plain = tiny_model.salience(torch.from_numpy(chords)[None])[0]
    assert (whole - plain).abs().max() < 1e-5
    chunked = transcribe_audio(tiny_model, chords, chunk_frames=86)
    assert chunked.shape == whole.shape == (440, num_frames(len(chords)))
    # float32 rounding of the HCQT's decimation differs between excerpts: about 1e-4 at most
    assert (chunked - whole).abs().max() < 1e-3
    assert whole.max() > 0.5 and len(_borders(whole.shape[1], 86)) >= 4 * 7


def test_without_context_the_chunk_borders_show(tiny_model, chords, monkeypatch):
    """Negative control: the same chunks without context differ at their borders."""
    import mpe_ssl.transcribe as transcribe

    whole = transcribe.transcribe_audio(tiny_model, chords, chunk_frames=10**6)
    monkeypatch.setattr(transcribe, "CONTEXT_FRAMES", 0)
    seamed = transcribe.transcribe_audio(tiny_model, chords, chunk_frames=86)
    assert (seamed - whole).abs().amax(dim=0)[_borders(whole.shape[1], 86)].max() > 1e-2


@pytest.mark.parametrize("samples", [255, int(0.3 * 22050), 3 * 86 * 256 - 256, 3 * 86 * 256, 2 * 86 * 256 + 1001])
def test_every_length_gets_its_frames(tiny_model, samples):
    from mpe_ssl.transcribe import transcribe_audio

    audio = tone([196.0, 293.7], samples / 22050 + 1.0)[:samples]
    chunked = transcribe_audio(tiny_model, audio, chunk_frames=86)
    assert chunked.shape == (440, num_frames(samples))
    assert (chunked - transcribe_audio(tiny_model, audio, chunk_frames=10**6)).abs().max() < 1e-3


def test_a_lightning_system_and_its_transcriber_transcribe_alike(tiny_checkpoint, tiny_model, chords):
    """transcribe_audio takes a system too (the network as it is, no time-major twin there)."""
    from mpe_ssl.systems import load_system
    from mpe_ssl.transcribe import transcribe_audio

    system = load_system(tiny_checkpoint)
    assert (transcribe_audio(system, chords) - transcribe_audio(tiny_model, chords)).abs().max() < 1e-5


# ----------------------------------------------------------------- decoding long files
def _dense_semitone_notes(salience, threshold):
    """The note tracker's first step as it was: dense float64 reductions over all bins."""
    from mpe_ssl.grid import bin_to_midi
    from mpe_ssl.notes import peak_mask

    salience = np.asarray(salience, dtype=np.float64)
    peaks = peak_mask(salience, threshold)
    midi = bin_to_midi(np.arange(salience.shape[0], dtype=np.float64))
    starts = np.flatnonzero(np.r_[True, np.diff(np.rint(midi)) != 0])
    peak_salience = np.where(peaks, salience, 0.0)
    present = np.logical_or.reduceat(peaks, starts, axis=0)
    rows, frames = np.nonzero(present)
    return (rows, frames, np.maximum.reduceat(peak_salience, starts, axis=0)[rows, frames],
            np.add.reduceat(peak_salience, starts, axis=0)[rows, frames],
            np.add.reduceat(peak_salience * midi[:, None], starts, axis=0)[rows, frames])


@pytest.mark.parametrize("kind", ["random", "alternate bins"])
def test_sparse_note_tables_equal_the_dense_ones_to_the_last_bit(kind):
    from mpe_ssl.notes import semitone_peaks

    rng = np.random.default_rng(0)
    salience = rng.random((440, 9000)) ** 3
    if kind == "alternate bins":  # up to 3 peaks in one semitone's 5 bins
        salience[1::2] *= 0.2
    for threshold in (0.2, 0.5):
        whole = semitone_peaks(salience, threshold)
        # blocks of frames (as a streamed transcription feeds them) give the same peaks
        blocks = [semitone_peaks(salience[:, a : a + 1234], threshold, a) for a in range(0, 9000, 1234)]
        assert all(np.array_equal(a, np.concatenate(b)) for a, b in zip(whole, zip(*blocks)))
        order = np.lexsort((whole[1], whole[0]))  # by semitone, then frame: the dense tables' order
        sparse, dense = [column[order] for column in whole], _dense_semitone_notes(salience, threshold)
        assert all(np.array_equal(a, b) for a, b in zip(sparse, dense))


def test_multipitch_frames_equal_the_metrics_peak_picking():
    from mpe_ssl.formats import salience_to_multipitch
    from mpe_ssl.metrics.multipitch import salience_to_multipitch as metrics_multipitch

    rng = np.random.default_rng(1)
    salience = torch.from_numpy(rng.random((440, 5000)).astype(np.float32) ** 3)
    salience[1::2] *= 0.2
    for args in ((salience, 0.5), (salience.numpy().astype(np.float64), 0.3, "bin"), (salience[:, :0], 0.5)):
        ours, theirs = salience_to_multipitch(*args), metrics_multipitch(*args)
        assert np.array_equal(ours[0], theirs[0]) and len(ours[1]) == len(theirs[1])
        assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(ours[1], theirs[1]))


def test_midi_files_are_pretty_midis_byte_for_byte():
    import io

    from mpe_ssl.notes import NoteEvent, midi_bytes, notes_to_midi

    rng = np.random.default_rng(2)
    onsets = np.sort(rng.random(300) * 60)
    cases = [[], [NoteEvent(0.0, 0.5, 60, 100, 0.9), NoteEvent(0.5, 1.0, 60, 90, 0.9), NoteEvent(0.5, 0.7, 64, 1, 0.9),
                  NoteEvent(0.25, 0.5, 130.0, 10, 0.9), NoteEvent(-0.1, 0.0023, 61.4, 127, 0.5)],
             [NoteEvent(float(a), float(a + rng.random() + 0.01), float(rng.integers(-3, 131) + rng.random() - 0.5),
                        int(rng.integers(1, 128)), 0.5) for a in onsets]]
    for notes in cases:
        for program in (0, 41):
            expected = io.BytesIO()
            notes_to_midi(notes, program).write(expected)
            assert midi_bytes(notes, program) == expected.getvalue()


def _chorale_file(rendered_root, path, rate: int, channels: int, seconds: float | None = None):
    """The rendered test chorale (its first ``seconds``), written at ``rate`` with ``channels``."""
    from scipy.signal import resample_poly

    from mpe_ssl.data.render import load_manifest

    piece = next(p for p in load_manifest(rendered_root)["pieces"] if p["split"] == "test")
    audio, sr = sf.read(rendered_root / piece["mix"], dtype="float32")
    audio = audio[: int(seconds * sr)] if seconds else audio
    audio = resample_poly(audio, rate // 50, sr // 50) if rate != sr else audio
    sf.write(path, np.stack([audio, 0.5 * audio], axis=1)[:, :channels], rate, subtype="FLOAT")
    return path


def test_streamed_transcription_writes_the_files_of_the_whole_salience_gram(tmp_path, rendered_root, monkeypatch):
    """transcribe_file reads, transcribes and decodes a chunk at a time; its files are those of
    the whole file's salience-gram decoded at once (write_salience), byte for byte."""
    from mpe_ssl import transcribe
    from mpe_ssl.audio.io import load_audio
    from mpe_ssl.pretrained import DECODE_DEFAULTS, write_salience

    model = transcribe.load_system(None)
    monkeypatch.setattr(transcribe, "CHUNK_FRAMES", 300)  # a dozen chunks, each border a seam to get right
    monkeypatch.setattr(transcribe, "PEAK_CHUNK_FRAMES", 700)
    path = _chorale_file(rendered_root, tmp_path / "chorale.wav", 44100, 2, seconds=40)
    audio = np.concatenate([load_audio(path), np.zeros(22050, np.float32)])  # and a silent end: the gate acts
    sf.write(path, np.stack([audio, audio], axis=1), 22050, subtype="FLOAT")
    for folder in ("streamed", "whole"):
        (tmp_path / folder).mkdir()
    streamed = transcribe.transcribe_file(model, path, tmp_path / "streamed")
    decode = {**DECODE_DEFAULTS, **model.decode}
    # the same chunks' salience in one tensor (chunked and unchunked salience agree up to float
    # rounding: test_chunked_transcription_has_no_seams), gated and decoded at once
    whole = write_salience(tmp_path / "whole", "chorale", transcribe.transcribe_audio(model, audio), audio, **decode)
    assert [p.name for p in streamed] == [p.name for p in whole]
    for a, b in zip(streamed, whole):
        assert a.read_bytes() == b.read_bytes(), a.name
    notes = (tmp_path / "whole" / "chorale.notes.csv").read_text().splitlines()
    assert len(notes) > 50  # a real transcription, not an empty one
    times, frequencies = mir_eval.io.load_ragged_time_series(str(streamed[0]))
    assert len(times) == num_frames(len(audio)) and not any(len(f) for f in frequencies[-40:])


def test_transcription_memory_does_not_grow_with_the_files_length(tmp_path, rendered_root, monkeypatch):
    """numpy's allocations (tracemalloc sees them; the audio, the silence gate, the decoding)
    peak at about the same size for a file 4x longer: nothing holds the whole recording. (The
    shipped model: its outputs are a transcription's few peaks per frame, which are kept.)"""
    import tracemalloc

    from mpe_ssl import transcribe

    model = transcribe.load_system(None)
    monkeypatch.setattr(transcribe, "CHUNK_FRAMES", 200)
    monkeypatch.setattr(transcribe, "PEAK_CHUNK_FRAMES", 400)
    peaks = {}
    (tmp_path / "out").mkdir()
    for seconds in (10, 40):
        path = _chorale_file(rendered_root, tmp_path / f"{seconds}.wav", 44100, 2, seconds=seconds)
        tracemalloc.start()
        transcribe.transcribe_file(model, path, tmp_path / "out")
        peaks[seconds] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    # the 30 s more would be 10 MiB of float32 stereo at 44.1 kHz, or 2.5 MiB at 22.05 kHz mono
    assert peaks[40] - peaks[10] < 1.0, peaks


# ----------------------------------------------------------------- --batch: the windows of several files at once
def _small_chunks(monkeypatch):
    """86-frame chunks: windows of 186 frames through the network and 472 through the front end."""
    from mpe_ssl import transcribe

    monkeypatch.setattr(transcribe, "CHUNK_FRAMES", 86)
    monkeypatch.setattr(transcribe, "PEAK_CHUNK_FRAMES", 200)


def _recordings(chords) -> dict[str, np.ndarray]:
    """Recordings of unequal lengths: two (of one length) shorter than a chunk, one of a few
    chunks shorter than a window, and three of several windows, two of one length and loudness
    apart (each window must get its own recording's 0 dB)."""
    return {"short": tone([220.0], 0.3), "short2": 0.2 * tone([330.0, 440.0], 0.3),
            "medium": tone([196.0, 293.7], 1.5), "chords": chords,
            "quiet": (0.05 * chords[::-1]).astype(np.float32), "cut": chords[: len(chords) - 3000]}


@pytest.mark.parametrize("batch", [2, 3, 8])
def test_batched_windows_give_each_recording_its_salience_in_order(batch, tiny_model, chords, monkeypatch):
    from mpe_ssl.transcribe import batched_salience_chunks, salience_chunks

    _small_chunks(monkeypatch)
    recordings = list(_recordings(chords).values())
    alone = [list(salience_chunks(tiny_model, audio)) for audio in recordings]
    drawn = []

    def lazily():
        for audio in recordings:
            drawn.append(audio)
            yield audio

    batched = [[] for _ in recordings]
    for index, start, stop, piece in batched_salience_chunks(tiny_model, lazily(), batch):
        batched[index].append((start, stop, piece))
        assert len(drawn) <= index + batch  # only the recordings of this batch's windows are drawn
    for ours, theirs in zip(batched, alone):
        assert [(a, b) for a, b, _ in ours] == [(a, b) for a, b, _ in theirs]
        # CPU kernels may sum in another order for a batch (short windows): float rounding only
        assert max((p - q).abs().max().item() for (_, _, p), (_, _, q) in zip(ours, theirs)) < 1e-5
    assert sum(len(pieces) for pieces in alone) > 3 * batch


def test_batched_transcription_writes_the_files_of_one_at_a_time(tmp_path, tiny_checkpoint, chords, monkeypatch,
                                                                  capsys):
    from mpe_ssl.notes import read_notes_csv

    _small_chunks(monkeypatch)
    paths = []
    for name, audio in _recordings(chords).items():
        paths.append(tmp_path / f"{name}.wav")
        sf.write(paths[-1], audio, 22050, subtype="FLOAT")
    for batch in (1, 3):
        out = tmp_path / f"out{batch}"
        status, lines, errors = _run(capsys, *paths, "--ckpt", tiny_checkpoint, "--out", out, "--batch", batch,
                                     "--threshold", 0.3)
        assert status == 0 and not errors
        assert sorted(line.split(" -> ")[0] for line in lines) == sorted(map(str, paths))
    notes = 0
    for path in paths:
        one, three = (tmp_path / f"out{batch}" / path.stem for batch in (1, 3))
        (times, frequencies), (times3, frequencies3) = (
            mir_eval.io.load_ragged_time_series(f"{stem}.multipitch.txt") for stem in (one, three))
        assert np.array_equal(times, times3) and len(times) == num_frames(sf.info(path).frames)
        assert all(np.array_equal(a, b) for a, b in zip(frequencies, frequencies3))
        a, b = read_notes_csv(f"{one}.notes.csv"), read_notes_csv(f"{three}.notes.csv")
        assert [(n.onset_s, n.offset_s) for n in a] == [(n.onset_s, n.offset_s) for n in b]
        assert all(abs(m.pitch_midi - n.pitch_midi) < 1e-3 and abs(m.confidence - n.confidence) < 1e-3
                   and abs(m.velocity - n.velocity) <= 1 for m, n in zip(a, b))
        notes += len(a)
    assert notes > 10  # real transcriptions, not empty ones


def test_batched_bad_files_get_one_line_errors_and_the_rest_are_transcribed(tmp_path, tiny_checkpoint, monkeypatch,
                                                                           capsys):
    _small_chunks(monkeypatch)
    good = [tmp_path / "good.wav", tmp_path / "long.wav", tmp_path / "short.wav"]
    for path, seconds in zip(good, (1.0, 6.0, 0.3)):
        sf.write(path, tone([440.0], seconds), 22050)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF not really a wave file" * 10)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0,), dtype=np.float32), 22050)
    nans = {}
    for name, seconds in (("nan_short", 0.3), ("nan_long", 3.0)):  # found reading a window, or in the first pass
        nans[name] = tmp_path / f"{name}.wav"
        audio = tone([330.0], seconds)
        audio[len(audio) // 2] = np.nan
        sf.write(nans[name], audio, 22050, subtype="FLOAT")
    bad = [tmp_path / "missing.wav", corrupt, nans["nan_short"], empty, nans["nan_long"]]
    inputs = [bad[0], good[0], bad[1], bad[2], good[1], bad[3], bad[4], good[2]]
    out = tmp_path / "out"
    status, lines, errors = _run(capsys, *inputs, "--ckpt", tiny_checkpoint, "--out", out, "--batch", 3)
    assert status == 1
    errors = [line for line in errors if line.startswith("error:")]
    assert len(errors) == len(bad) and all(any(path.name in line for line in errors) for path in bad)
    assert sorted(line.split(" -> ")[0] for line in lines) == sorted(map(str, good))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{path.stem}{ext}" for path in good for ext in (".multipitch.txt", ".mid", ".notes.csv"))
