"""Reading user audio a stretch at a time: AudioReader gives load_audio's samples exactly."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from mpe_ssl.audio.io import AudioReader, load_audio
from mpe_ssl.errors import MpeSslError
from mpe_ssl.grid import SAMPLE_RATE


@pytest.mark.parametrize("rate, channels", [(48000, 2), (44100, 1), (16000, 1), (22050, 2), (8000, 3)])
def test_stretches_equal_the_whole_files_resampling(tmp_path, rate, channels):
    from scipy.signal import resample_poly

    rng = np.random.default_rng(rate)
    samples = (0.1 * rng.standard_normal((rate * 3 + 17, channels))).astype(np.float32)
    path = tmp_path / "noise.wav"
    sf.write(path, samples, rate, subtype="FLOAT")
    mono = samples.mean(axis=1, dtype=np.float32)
    common = np.gcd(rate, SAMPLE_RATE)
    expected = resample_poly(mono, SAMPLE_RATE // common, rate // common).astype(np.float32) if rate != SAMPLE_RATE \
        else mono
    whole = load_audio(path)
    assert whole.dtype == np.float32 and np.array_equal(whole, expected)
    with AudioReader(path) as reader:
        assert reader.samples == len(expected)
        for size in (1000, 4097, 12345):
            stretches = [reader.read(start, start + size) for start in range(0, reader.samples, size)]
            assert np.array_equal(np.concatenate(stretches), expected)
        assert np.array_equal(reader.read(777, 5000), expected[777:5000])
        assert np.array_equal(reader.read(-50, 10), expected[:10])  # clipped to the recording
        assert reader.read(reader.samples, reader.samples + 10).size == 0


def test_bad_files_are_named_in_one_line(tmp_path):
    with pytest.raises(MpeSslError, match="no such audio file"):
        AudioReader(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really")
    with pytest.raises(MpeSslError, match="junk.wav: cannot read audio"):
        AudioReader(tmp_path / "junk.wav")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 22050)
    with pytest.raises(MpeSslError, match="empty.wav: the audio file holds no samples"):
        AudioReader(tmp_path / "empty.wav")
    audio = np.zeros(44100, np.float32)
    audio[30000] = np.nan
    sf.write(tmp_path / "nan.wav", audio, 22050, subtype="FLOAT")
    with AudioReader(tmp_path / "nan.wav") as reader:
        assert not reader.read(0, 22050).any()  # the stretches before the NaN read fine
        with pytest.raises(MpeSslError, match="nan.wav: the audio holds NaN"):
            reader.read(22050, 44100)
