"""mpe-ssl separate --ckpt: a MAJL model's target, accompaniment and f0 for many files (or every part's)."""

import numpy as np
import pytest
import soundfile as sf

from mpe_ssl.data.majl import HOP_LENGTH, SAMPLE_RATE, SATB
from mpe_ssl.errors import MpeSslError
from mpe_ssl.separate import main, separate_with_majl
from mpe_ssl.systems import load_system
from tests.conftest import majl_checkpoint as train_majl


@pytest.fixture(scope="module")
def majl_checkpoint(rendered_root, tmp_path_factory) -> str:
    """A real Lightning checkpoint of a small MAJL after two steps on a rendered chorale."""
    return train_majl(rendered_root, tmp_path_factory.mktemp("majl") / "majl.ckpt", steps=2, excerpt_seconds=1.0)


@pytest.fixture(scope="module")
def parts_checkpoint(rendered_root, tmp_path_factory) -> str:
    """The same with one output per part (Soprano, Alto, Tenor, Bass), after one step."""
    return train_majl(rendered_root, tmp_path_factory.mktemp("majl") / "parts.ckpt", steps=1, excerpt_seconds=1.0,
                      parts=list(SATB))


def test_many_files_any_rate_bad_ones_named(majl_checkpoint, rendered_root, tmp_path, capsys):
    mix = next(rendered_root.glob("*/*/mix.wav"))
    audio, rate = sf.read(str(mix), frames=5 * 22050, dtype="float32")
    stereo = tmp_path / "song.wav"
    sf.write(str(stereo), np.stack([audio, 0.5 * audio], axis=1), rate)  # 22050 Hz, 2 channels
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not audio")
    out = tmp_path / "out"
    code = main([str(broken), str(stereo), str(tmp_path / "missing.wav"), "--ckpt", majl_checkpoint,
                 "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.wav" in err and "missing.wav" in err and len(err.strip().splitlines()) == 2
    target, rate_t = sf.read(str(out / "song.target.wav"), dtype="float32")
    rest, _ = sf.read(str(out / "song.accompaniment.wav"), dtype="float32")
    assert rate_t == SAMPLE_RATE and len(target) == len(rest) == 5 * SAMPLE_RATE
    from mpe_ssl.audio.io import load_audio

    mono = load_audio(stereo, sample_rate=SAMPLE_RATE)
    assert np.allclose(target + rest, mono, atol=1e-5)
    rows = (out / "song.f0.csv").read_text().splitlines()
    assert rows[0] == "time_s,hz,confidence" and len(rows) - 1 == 1 + len(mono) // HOP_LENGTH
    values = np.array([[float(x) for x in row.split(",")] for row in rows[1:]])
    assert np.all(values[:, 1] >= 0) and np.all((0 <= values[:, 2]) & (values[:, 2] <= 1))
    assert not list(out.glob("broken*")) and not list(out.glob("*.tmp*"))


def test_chunks_do_not_change_the_result(majl_checkpoint, rendered_root):
    system = load_system(majl_checkpoint)
    mix = next(rendered_root.glob("*/*/mix.wav"))
    from mpe_ssl.audio.io import load_audio

    audio = load_audio(mix, sample_rate=SAMPLE_RATE)[: 8 * SAMPLE_RATE]
    whole = separate_with_majl(system, audio, chunk_seconds=60.0)
    chunked = separate_with_majl(system, audio, chunk_seconds=2.0, context_seconds=1.0)
    assert np.max(np.abs(whole["target"] - chunked["target"])) < 1e-3 * np.max(np.abs(whole["target"]))
    assert np.allclose(whole["hz"], chunked["hz"], rtol=1e-3, atol=1e-3)


def test_wrong_checkpoint_and_mixed_modes_are_one_line_errors(tiny_checkpoint, majl_checkpoint, tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(str(wav), np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(MpeSslError, match="not a MAJL"):
        main([str(wav), "--ckpt", tiny_checkpoint, "--out", str(tmp_path / "o")])
    with pytest.raises(MpeSslError, match="no --score"):
        main([str(wav), "--ckpt", majl_checkpoint, "--score", "x.mid"])
    with pytest.raises(MpeSslError, match="--score MIDI"):
        main([str(wav)])


def test_a_four_part_model_writes_every_parts_stem_and_f0(parts_checkpoint, rendered_root, tmp_path, capsys):
    assert load_system(parts_checkpoint).part_names == SATB
    mix = next(rendered_root.glob("*/*/mix.wav"))
    audio, rate = sf.read(str(mix), frames=3 * 22050, dtype="float32")
    song = tmp_path / "song.wav"
    sf.write(str(song), audio, rate)
    out = tmp_path / "out"
    assert main([str(song), "--ckpt", parts_checkpoint, "--out", str(out)]) == 0
    expected = {f"song.{part}.wav" for part in SATB} | {f"song.{part}.f0.csv" for part in SATB}
    assert {p.name for p in out.iterdir()} == expected  # no target/accompaniment, no temporary files
    assert set(capsys.readouterr().out.split()) == {str(out / name) for name in expected}
    stems = []
    for part in SATB:
        stem, rate_s = sf.read(str(out / f"song.{part}.wav"), dtype="float32")
        assert rate_s == SAMPLE_RATE and len(stem) == 3 * SAMPLE_RATE
        stems.append(stem)
        rows = (out / f"song.{part}.f0.csv").read_text().splitlines()
        assert rows[0] == "time_s,hz,confidence" and len(rows) - 1 == 1 + 3 * SAMPLE_RATE // HOP_LENGTH
        values = np.array([[float(x) for x in row.split(",")] for row in rows[1:]])
        assert np.all(values[:, 1] >= 0) and np.all((0 <= values[:, 2]) & (values[:, 2] <= 1))
    assert all(not np.array_equal(stems[0], other) for other in stems[1:])  # four different masks
    # chunked separation is the whole one, part by part
    from mpe_ssl.audio.io import load_audio

    mono = load_audio(song, sample_rate=SAMPLE_RATE)
    system = load_system(parts_checkpoint)
    whole, chunked = separate_with_majl(system, mono, 60.0), separate_with_majl(system, mono, 1.0, 1.0)
    assert whole["parts"] == SATB and whole["sources"].shape == (4, len(mono)) and whole["hz"].shape == (4, 151)
    np.testing.assert_allclose(chunked["sources"], whole["sources"], atol=1e-3 * np.abs(whole["sources"]).max())
    np.testing.assert_allclose(whole["sources"], np.stack(stems), atol=1e-6)
