"""AugmentedChorales: part subsets with their own labels, the effects, determinism."""

import numpy as np
import pytest
import soundfile as sf
import torch

from mpe_ssl import grid
from mpe_ssl.data import Augmentation, AugmentedChorales, note_targets
from mpe_ssl.data.augmented import colored_noise, equalize, reverberate
from mpe_ssl.data.render import DEFAULT_PROGRAMS, HELD_OUT_PROGRAMS, TRAINING_PROGRAMS
from mpe_ssl.errors import MpeSslError

#: every effect off, every part at 0 dB, the result at -6 dBFS peak
PLAIN = dict(part_gain_db=(0.0, 0.0), empty_prob=0.0, eq_prob=0.0, reverb_prob=0.0, drums_prob=0.0,
             noise_prob=0.0, peak_db=(-6.0, -6.0))


def dataset(root, **augmentation) -> AugmentedChorales:
    return AugmentedChorales(roots=[str(root)], split="train", excerpt_seconds=3.0, items_per_epoch=50,
                             seed=3, augmentation=Augmentation(**{**PLAIN, **augmentation}))


def test_pools_are_disjoint_and_broad():
    assert set(DEFAULT_PROGRAMS) <= set(TRAINING_PROGRAMS)
    assert not set(TRAINING_PROGRAMS) & set(HELD_OUT_PROGRAMS)
    assert len(set(TRAINING_PROGRAMS)) == len(TRAINING_PROGRAMS) >= 30


def test_all_parts_give_the_mixture_and_its_labels(rendered_root):
    data = dataset(rendered_root, min_parts=4)
    item = data[0]
    piece = data.pieces[0][1]
    start = item["start_frame"] * grid.HOP_LENGTH
    n = data.excerpt_samples
    mix = sf.read(str(rendered_root / piece["mix"]), start=start, stop=start + n, dtype="float32")[0]
    mix = np.pad(mix, (0, n - len(mix)))
    audio = item["audio"].numpy()
    scale = float(np.dot(audio, mix) / np.dot(mix, mix))
    assert np.max(np.abs(audio - scale * mix)) < 1e-3 * np.max(np.abs(audio))  # PCM_16 rounding of stems vs mix
    assert np.isclose(np.max(np.abs(audio)), 10 ** (-6 / 20), rtol=1e-5)
    notes = np.concatenate([notes for _, notes in data.part_notes(0)])
    assert torch.equal(item["targets"], note_targets(notes, start, n))


def test_one_part_gets_that_parts_notes_only(rendered_root):
    data = dataset(rendered_root, max_parts=1)
    parts = data.part_notes(0)
    seen = set()
    for index in range(12):
        item = data[index]
        start = item["start_frame"] * grid.HOP_LENGTH
        matches = [name for name, notes in parts
                   if torch.equal(item["targets"], note_targets(notes, start, data.excerpt_samples))]
        assert matches, "the targets are not the notes of any single part"
        assert item["targets"].sum(0).max() <= 1  # a chorale part sings one note at a time
        seen.add(matches[0])
        stem = data._stem(0, matches[0], start)  # the audio is that part's stem
        audio = item["audio"].numpy()
        assert np.corrcoef(audio, stem)[0, 1] > 0.999
    assert len(seen) >= 2  # the part is drawn, not always the same


def test_items_are_a_function_of_the_index(rendered_root):
    data = dataset(rendered_root, eq_prob=1.0, reverb_prob=1.0, noise_prob=1.0)
    again = dataset(rendered_root, eq_prob=1.0, reverb_prob=1.0, noise_prob=1.0)
    assert torch.equal(data[7]["audio"], again[7]["audio"])
    assert torch.equal(data[7]["targets"], again[7]["targets"])
    assert not torch.equal(data[7]["audio"], data[8]["audio"])


def test_empty_excerpts_have_no_labels_but_sound(rendered_root):
    item = dataset(rendered_root, empty_prob=1.0, noise_prob=1.0)[0]
    assert item["targets"].sum() == 0
    assert item["audio"].abs().max() > 0.1


def test_effects_on_real_audio(rendered_root):
    audio = sf.read(str(rendered_root / "train" / next((rendered_root / "train").iterdir()).name / "mix.wav"),
                    frames=3 * grid.SAMPLE_RATE, dtype="float32")[0]
    assert np.allclose(equalize(audio, np.zeros(6)), audio, atol=1e-6)
    louder = equalize(audio, np.full(6, 6.0))
    assert np.isclose(np.sqrt(np.mean(louder**2) / np.mean(audio**2)), 10 ** (6 / 20), rtol=1e-3)
    rng = np.random.default_rng(0)
    assert np.allclose(reverberate(audio, 0.5, 0.0, rng), audio)
    wet = reverberate(audio, 1.0, 1.0, rng)
    assert wet.shape == audio.shape and 0.3 < np.sqrt(np.mean(wet**2) / np.mean(audio**2)) < 3
    white, pink = colored_noise(2**16, False, rng), colored_noise(2**16, True, rng)
    for noise in (white, pink):
        assert np.isclose(np.sqrt(np.mean(noise**2)), 1.0, rtol=1e-3)
    power = lambda x, lo, hi: np.mean(np.abs(np.fft.rfft(x)[lo:hi]) ** 2)  # noqa: E731
    assert power(pink, 10, 100) > 10 * power(pink, 10_000, 20_000)
    assert power(white, 10, 100) < 2 * power(white, 10_000, 20_000)


def test_bad_settings_are_one_line_errors(rendered_root):
    with pytest.raises(MpeSslError, match="eq_prob"):
        dataset(rendered_root, eq_prob=1.5)
    with pytest.raises(MpeSslError, match="max_parts"):
        dataset(rendered_root, min_parts=3, max_parts=2)
    with pytest.raises(MpeSslError, match="renders"):
        AugmentedChorales(renders=[{"colour": "blue"}])
    with pytest.raises(MpeSslError, match="longer than every piece"):
        AugmentedChorales(roots=[str(rendered_root)], split="train", excerpt_seconds=600.0)


def test_overlay_adds_a_second_excerpt_with_its_labels(rendered_root, tmp_path):
    data = dataset(rendered_root, min_parts=4, overlay_prob=1.0)
    plain = dataset(rendered_root, min_parts=4)
    item, base = data[0], plain[0]
    assert torch.all(item["targets"] >= base["targets"])  # the first excerpt's labels stay
    assert item["targets"].sum() > base["targets"].sum()  # and the second one's are added
    assert item["targets"].sum(0).max() > 4  # more notes at once than a chorale has parts


def test_count_keeps_the_first_pieces_and_renders_only_those(tmp_path, monkeypatch):
    from mpe_ssl.data import augmented
    from mpe_ssl.data.render import RenderConfig, load_manifest, render_dataset

    root = render_dataset(RenderConfig(seed=0, counts={"train": 3, "val": 0, "test": 0}), root=tmp_path / "r",
                          progress=False)
    names = [p["id"] for p in load_manifest(root)["pieces"] if p["split"] == "train"]
    two = AugmentedChorales(roots=[str(root)], split="train", excerpt_seconds=2.0, items_per_epoch=4, count=2)
    assert [p["id"] for _, p in two.pieces] == names[:2]
    every = AugmentedChorales(roots=[str(root)], split="train", excerpt_seconds=2.0, items_per_epoch=4)
    assert len(every.pieces) == 3
    asked = []
    monkeypatch.setattr(augmented, "render_dataset", lambda config, progress: asked.append(config) or root)
    AugmentedChorales(renders=[{"seed": 5}], split="train", excerpt_seconds=2.0, items_per_epoch=4, count=2)
    assert asked[0].counts == {"train": 2, "val": 0, "test": 0}
    with pytest.raises(MpeSslError, match="count"):
        AugmentedChorales(roots=[str(root)], count=0)
