"""MAJL stage I -> pseudo labels: ``mpe-ssl pseudo-label --ckpt STAGE1.ckpt --out DIR``.

A stage-I :class:`~mpe_ssl.systems.MAJL` (trained on the fully labelled bucket) labels the
single-labelled buckets of :class:`~mpe_ssl.data.majl.MAJLChorales`, whole piece by whole
piece:

* a ``separation`` piece (it has the stems) gets a pseudo **f0**: the pitch network run on
  its *true* target stem, hz 0 where the frame's confidence is not above the system's
  ``voicing_threshold``; confidence: the mean pitch confidence of the voiced frames (0 when
  none is voiced);
* a ``pitch`` piece (it has the f0) gets a pseudo **target stem**: the separator's output on
  the mixture (its accompaniment is the mixture minus it); confidence: the raw pitch
  accuracy (50 cents) of the pitch network on that separated stem against the piece's *true*
  f0 (0 when the f0 is never voiced).

The data are chosen by ``--config`` (a training config: the MAJLChorales of its first train
stream, e.g. ``experiments/majl.yaml``; only its data selection is used: root or render,
split, target, fractions, bucket_seed, first_piece, max_pieces), by ``--root``, or both
(the options override the config). The layout of ``DIR`` and its ``manifest.json`` are in
:mod:`mpe_ssl.data.pseudo`; stage II reads it with :class:`~mpe_ssl.data.pseudo.PseudoLabelled`.

**Adaptive threshold** (``--calibrate``; beyond the paper, whose threshold is a fixed 0.7):
stage I also labels the pieces of a *labelled* split (``--calibrate-split``, default
``val``), where the truth is known, both ways: the pseudo f0 from the true stem (its quality:
mir_eval's overall accuracy against the true f0, 50 cents) and the pseudo stem from the
separator (its quality: BSSEval v4 SDR against the true stem, museval). Per bucket, a label
is *good* when its quality reaches the median quality of those pieces, and the threshold is
the confidence that best tells good from bad labels: the cut maximising Youden's
J = TPR - FPR (the lowest such cut on ties, which keeps the most data). The thresholds, the
cut's J and the Spearman correlation of confidence and quality go into the manifest's
``calibration`` (each piece's figures into ``calibration.csv``);
``PseudoLabelled(threshold="adaptive")`` uses them.

Every label file is written to a hidden temporary file and renamed into place, then the
manifest (rewritten atomically) gains its entry. A rerun with the same checkpoint and
settings skips the pieces of the manifest whose file exists with the recorded size, redoes
the rest and removes the temporary files a killed run left, so an interrupted run resumes
and a label file is either whole or absent. One run at a time per ``DIR`` (a lock file).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

from mpe_ssl.atomic import atomic_write
from mpe_ssl.data.majl import HOP_LENGTH, SAMPLE_RATE, MAJLChorales
from mpe_ssl.data.render import file_sha1
from mpe_ssl.data.pseudo import FORMAT, MANIFEST, PSEUDO_BUCKETS, label_file, read_pseudo_manifest
from mpe_ssl.errors import MpeSslError
from mpe_ssl.formats import write_f0_csv
from mpe_ssl.models.crepe import decode_pitch
from mpe_ssl.systems import MAJL, load_system
from mpe_ssl.systems.majl import pitch_accuracy
from mpe_ssl.transcribe import check_device

__all__ = ["adaptive_threshold", "calibrate", "label_piece", "main", "pseudo_label"]

VERSION = 1
RPA_CENTS = 50.0
LOCK = ".pseudo-label.lock"
CALIBRATION_CSV = "calibration.csv"
#: MAJLChorales arguments that select the data (the rest, excerpts and caching, do not matter here)
SELECTION = ("root", "split", "target", "fractions", "bucket_seed", "first_piece", "max_pieces", "render")


# ----------------------------------------------------------------------------- the labels
def label_piece(system: MAJL, item: dict, chunk_seconds: float = 10.0) -> dict:
    """The pseudo label of one whole-piece item of MAJLChorales (``bucket`` ``separation`` or
    ``pitch``): ``{"hz", "confidence"}`` per frame and ``score`` (separation), or
    ``{"target"}`` and ``score`` (pitch); ``score`` is the piece's confidence in [0, 1]."""
    bucket = item["bucket"]
    if bucket == "separation":
        logits = system.pitch_logits_long(item["stems"][0], chunk_seconds)
        hz, confidence, voiced = decode_pitch(logits[None], system.voicing_threshold)
        hz, confidence, voiced = hz[0], confidence[0], voiced[0]
        score = float(confidence[voiced].mean()) if voiced.any() else 0.0
        return {"hz": torch.where(voiced, hz, torch.zeros_like(hz)).numpy(), "confidence": confidence.numpy(),
                "score": score, "voiced_fraction": float(voiced.float().mean())}
    if bucket == "pitch":
        target = system.separate_long(item["audio"], chunk_seconds)
        logits = system.pitch_logits_long(target, chunk_seconds)
        f0 = item["f0"]
        frames = min(len(f0), logits.shape[0])
        voiced = bool((f0[:frames] > 0).any())
        score = float(pitch_accuracy(logits[None, :frames], f0[None, :frames], RPA_CENTS)[0]) if voiced else 0.0
        return {"target": target.numpy(), "score": score, "rpa": score}
    raise MpeSslError(f"piece {item.get('track')}: bucket {bucket!r} gets no pseudo labels")


def write_label(path: Path, label: dict) -> None:
    """The label file of :func:`label_piece`'s output, atomically (temp file + rename)."""
    if "target" in label:
        atomic_write(path, lambda tmp: sf.write(tmp, label["target"], SAMPLE_RATE, format="WAV", subtype="FLOAT"))
        return
    times = np.arange(len(label["hz"])) * HOP_LENGTH / SAMPLE_RATE
    write_f0_csv(path, times, label["hz"], label["confidence"])


# ----------------------------------------------------------------------------- the adaptive threshold
def adaptive_threshold(confidence: np.ndarray, quality: np.ndarray) -> dict:
    """The confidence cut that best separates good labels (quality at least the median
    quality) from bad ones, by Youden's J = TPR - FPR over the cuts at each observed
    confidence; the lowest cut among equal J (it keeps the most labels).

    Args:
        confidence, quality: ``(pieces,)`` of labels whose true quality is known.

    Returns:
        ``threshold``, ``youden_j``, ``kept`` (the fraction of these pieces kept),
        ``spearman`` (rank correlation of confidence and quality; NaN if undefined),
        ``good_quality`` (the median), ``pieces``.

    Raises:
        MpeSslError: fewer than 4 pieces, or every quality alike (nothing to tell apart).
    """
    from scipy.stats import spearmanr

    confidence, quality = np.asarray(confidence, dtype=np.float64), np.asarray(quality, dtype=np.float64)
    finite = np.isfinite(confidence) & np.isfinite(quality)
    confidence, quality = confidence[finite], quality[finite]
    if confidence.size < 4:
        raise MpeSslError(f"adaptive threshold: {confidence.size} calibration pieces with a defined quality; "
                          "need at least 4 (a larger --calibrate-split)")
    median = float(np.median(quality))
    good = quality >= median
    if good.all():
        raise MpeSslError("adaptive threshold: every calibration piece has the same quality; nothing to tell apart")
    best = None
    for cut in np.unique(confidence):  # ascending: the first of equal J is the lowest cut
        kept = confidence >= cut
        j = float(kept[good].mean() - kept[~good].mean())
        if best is None or j > best[1] + 1e-12:
            best = (float(cut), j, float(kept.mean()))
    rho = spearmanr(confidence, quality).statistic if np.ptp(confidence) > 0 else np.nan
    return {"threshold": best[0], "youden_j": best[1], "kept": best[2], "spearman": float(rho),
            "good_quality": median, "pieces": int(confidence.size)}


def calibrate(system: MAJL, selection: dict, split: str = "val", chunk_seconds: float = 10.0,
              max_pieces: int | None = None, log=print) -> tuple[dict, list[dict]]:
    """Label the pieces of a labelled ``split`` both ways and fit each bucket's adaptive
    threshold (see the module docstring); returns ``(calibration, rows)``, a row per piece
    with its confidences and qualities."""
    from mpe_ssl.metrics.melody import melody_scores
    from mpe_ssl.metrics.separation import bss_eval

    chosen = {**selection, "split": split, "fractions": (1.0, 0.0, 0.0), "first_piece": 0, "max_pieces": max_pieces}
    data = MAJLChorales(**{k: v for k, v in chosen.items() if k != "bucket_seed"}, excerpt_seconds=None)
    rows = []
    for i in range(len(data)):
        item = data[i]
        f0_label = label_piece(system, {**item, "bucket": "separation"}, chunk_seconds)
        stem_label = label_piece(system, {**item, "bucket": "pitch"}, chunk_seconds)
        f0 = item["f0"].numpy()
        frames = min(len(f0), len(f0_label["hz"]))
        f0_quality = melody_scores(f0_label["hz"][:frames], f0[:frames], HOP_LENGTH / SAMPLE_RATE)["overall_accuracy"]
        sdr = float(bss_eval(item["stems"][:1], stem_label["target"][None], SAMPLE_RATE)["sdr"][0])
        rows.append({"piece": data.pieces[i]["id"], "f0_confidence": f0_label["score"], "f0_overall_accuracy": f0_quality,
                     "stem_confidence": stem_label["score"], "stem_sdr": sdr})
        log(f"calibration {rows[-1]['piece']}: f0 confidence {f0_label['score']:.3f} (overall accuracy "
            f"{f0_quality:.3f}); stem confidence {stem_label['score']:.3f} (SDR {sdr:.2f} dB)")
    column = {key: np.array([row[key] for row in rows]) for key in rows[0]} if rows else {}
    if not rows:
        raise MpeSslError(f"--calibrate-split {split}: no piece with the target part")
    calibration = {
        "split": split, "rule": "per bucket: Youden's J cut of confidence, good = quality >= median quality",
        "separation": {**adaptive_threshold(column["f0_confidence"], column["f0_overall_accuracy"]),
                       "quality": "mir_eval overall accuracy of the pseudo f0 (50 cents)"},
        "pitch": {**adaptive_threshold(column["stem_confidence"], column["stem_sdr"]),
                  "quality": "BSSEval v4 SDR (dB) of the pseudo stem"},
    }
    return calibration, rows


def write_calibration_csv(path: Path, rows: list[dict]) -> None:
    """The calibration pieces' figures, atomically."""
    def write(tmp) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()} for row in rows)
    atomic_write(path, write)


# ----------------------------------------------------------------------------- the run
@contextmanager
def _exclusive(out: Path):
    """Hold ``out/.pseudo-label.lock`` (flock) or fail at once: one run per directory."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(out / LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise MpeSslError(f"{out}: another mpe-ssl pseudo-label run is writing there") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(out: Path) -> list[Path]:
    """Delete the temporary files of a killed run (``.NAME.XXXX.tmp`` of atomic_write)."""
    removed = []
    for folder in [out, *(out / b for b in PSEUDO_BUCKETS)]:
        for path in folder.glob(".*.tmp") if folder.is_dir() else ():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def data_selection(config: str | None, overrides: dict) -> dict:
    """The MAJLChorales data selection (:data:`SELECTION` keys) of a training config's first
    MAJLChorales train stream, updated with the ``overrides`` that are not None."""
    selection: dict = {}
    if config is not None:
        try:
            tree = yaml.safe_load(Path(config).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise MpeSslError(f"--config {config}: cannot read it ({type(error).__name__})") from None
        try:
            streams = tree["data"]["init_args"]["train_streams"]
            args = next(s["dataset"].get("init_args", {}) for s in streams
                        if isinstance(s.get("dataset"), dict) and
                        str(s["dataset"].get("class_path", "")).endswith("MAJLChorales"))
        except (KeyError, TypeError, AttributeError, StopIteration):
            raise MpeSslError(f"--config {config}: no MAJLChorales dataset in data.init_args.train_streams") from None
        selection = {k: v for k, v in args.items() if k in SELECTION}
    selection.update({k: v for k, v in overrides.items() if v is not None})
    if "root" in selection:
        selection.pop("render", None)  # an explicit root wins over the config's render settings
    if selection.get("root") is None and selection.get("render") is None:
        raise MpeSslError("give the data: --config (a MAJL training config) or --root (a rendered chorale root)")
    return selection


def _compared(settings: dict | None) -> dict | None:
    """The settings a rerun must share: all but ``render`` (the resolved ``root`` stands for it)."""
    return None if settings is None else {k: v for k, v in settings.items() if k != "render"}


def pseudo_label(ckpt: str, out: str | os.PathLike, selection: dict, device: str = "cpu",
                 chunk_seconds: float = 10.0, log=print, calibrate_split: str | None = None,
                 calibrate_pieces: int | None = None) -> dict:
    """Label every piece of the separation and pitch buckets of ``selection`` (MAJLChorales
    arguments) with the MAJL checkpoint ``ckpt`` into ``out``; returns the manifest. With
    ``calibrate_split``, also the adaptive thresholds (:func:`calibrate`, on at most
    ``calibrate_pieces`` of that split's pieces) once every piece is labelled."""
    if chunk_seconds <= 0:
        raise MpeSslError(f"--chunk-seconds: {chunk_seconds} must be positive")
    data = MAJLChorales(**selection, excerpt_seconds=None)  # whole pieces, each with its bucket's labels
    system = load_system(ckpt, map_location=check_device(device))
    if not isinstance(system, MAJL):
        raise MpeSslError(f"--ckpt {ckpt}: a {type(system).__name__} checkpoint, not a MAJL one")
    if system.separator.sources != 1:
        raise MpeSslError(f"--ckpt {ckpt}: a MAJL of {system.separator.sources} parts; pseudo labels are made for "
                          "one target part only (a stage-I model with one separator source)")
    settings = {
        "root": str(Path(data.root).resolve()), "split": data.split, "target": data.target,
        "fractions": list(data.fractions), "bucket_seed": data.bucket_seed,
        "first_piece": int(selection.get("first_piece", 0)), "max_pieces": selection.get("max_pieces"),
        "render": selection.get("render"), "voicing_threshold": system.voicing_threshold, "rpa_cents": RPA_CENTS,
    }
    checkpoint = {"path": str(Path(ckpt).resolve()), "sha1": file_sha1(str(ckpt))}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(len(data.pieces)) if data.piece_bucket(i) in PSEUDO_BUCKETS]
    if not todo:
        raise MpeSslError(f"no {data.split} piece of {data.root} falls into the separation or pitch bucket "
                          f"(fractions {list(data.fractions)}): nothing to pseudo-label")
    with _exclusive(out):
        for path in _remove_leftovers(out):
            log(f"removed {path} (left by an interrupted run)")
        done: dict[str, dict] = {}
        old_manifest: dict = {}
        if (out / MANIFEST).exists():
            old = old_manifest = read_pseudo_manifest(out)
            same = old.get("checkpoint", {}).get("sha1") == checkpoint["sha1"]
            if not same or _compared(old.get("settings")) != _compared(settings):
                raise MpeSslError(f"{out}: holds pseudo labels of another checkpoint or other settings; "
                                  "give another --out (or delete it)")
            for entry in old["pieces"]:
                path = out / entry["file"]
                if path.is_file() and path.stat().st_size == entry["bytes"]:
                    done[entry["piece"]] = entry
        manifest = {"format": FORMAT, "version": VERSION, "checkpoint": checkpoint, "settings": settings,
                    "complete": False, "pieces": list(done.values())}
        if "calibration" in old_manifest:  # labels of the same checkpoint: its calibration stands
            manifest["calibration"] = old_manifest["calibration"]

        def publish() -> None:
            atomic_write(out / MANIFEST, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1) + "\n"))

        for bucket in PSEUDO_BUCKETS:
            (out / bucket).mkdir(exist_ok=True)
        for i in todo:
            piece, bucket = data.pieces[i]["id"], data.piece_bucket(i)
            if piece in done:
                log(f"{bucket} {piece}: done already (confidence {done[piece]['confidence']:.3f})")
                continue
            label = label_piece(system, data[i], chunk_seconds)
            name = label_file(bucket, piece)
            write_label(out / name, label)
            entry = {"piece": piece, "bucket": bucket, "file": name, "bytes": (out / name).stat().st_size,
                     "confidence": round(min(max(label["score"], 0.0), 1.0), 6)}
            entry.update({k: round(v, 6) for k, v in label.items() if k in ("voiced_fraction", "rpa")})
            manifest["pieces"] = [e for e in manifest["pieces"] if e["piece"] != piece] + [entry]
            publish()
            log(f"{bucket} {piece}: confidence {entry['confidence']:.3f} -> {out / name}")
        if calibrate_split is not None and "calibration" not in manifest:
            calibration, rows = calibrate(system, selection, calibrate_split, chunk_seconds, calibrate_pieces, log)
            write_calibration_csv(out / CALIBRATION_CSV, rows)
            manifest["calibration"] = calibration
        manifest["complete"] = True
        publish()
    return manifest


def main(argv: list[str] | None = None) -> int:
    """``mpe-ssl pseudo-label --ckpt STAGE1.ckpt --out DIR (--config YAML | --root DIR)``."""
    parser = argparse.ArgumentParser(
        prog="mpe-ssl pseudo-label",
        description="MAJL stage I -> pseudo labels of the separation-only and pitch-only buckets "
                    "(f0 from the true stem; target stem from the separator), with a confidence per piece.",
    )
    parser.add_argument("--ckpt", required=True, help="stage-I MAJL checkpoint (mpe-ssl fit)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="pseudo-label folder (resumed if there)")
    parser.add_argument("--config", default=None, metavar="YAML",
                        help="training config whose first MAJLChorales train stream selects the data "
                             "(e.g. experiments/majl.yaml)")
    parser.add_argument("--root", default=None, help="rendered chorale root (instead of the config's)")
    parser.add_argument("--split", default=None, help="split (default: the config's, else train)")
    parser.add_argument("--target", default=None, help="target part (default: the config's, else Soprano)")
    parser.add_argument("--fractions", type=float, nargs=3, default=None, metavar=("FULL", "SEP", "PITCH"),
                        help="bucket shares (default: the config's)")
    parser.add_argument("--bucket-seed", type=int, default=None, help="bucket seed (default: the config's, else 0)")
    parser.add_argument("--chunk-seconds", type=float, default=10.0,
                        help="the networks run on this much audio at a time (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ... (default: cpu)")
    parser.add_argument("--calibrate", action="store_true",
                        help="also fit the adaptive thresholds on a labelled split (PseudoLabelled(threshold='adaptive'))")
    parser.add_argument("--calibrate-split", default="val", help="the labelled split of --calibrate (default: val)")
    parser.add_argument("--calibrate-pieces", type=int, default=None, metavar="N",
                        help="at most N pieces of that split (default: all)")
    args = parser.parse_args(argv)
    selection = data_selection(args.config, {"root": args.root, "split": args.split, "target": args.target,
                                             "fractions": args.fractions, "bucket_seed": args.bucket_seed})
    manifest = pseudo_label(args.ckpt, args.out, selection, args.device, args.chunk_seconds,
                            calibrate_split=args.calibrate_split if args.calibrate else None,
                            calibrate_pieces=args.calibrate_pieces)
    passed = sum(e["confidence"] >= 0.7 for e in manifest["pieces"])
    print(f"{len(manifest['pieces'])} pieces pseudo-labelled ({passed} with confidence >= 0.7): "
          f"{args.out / MANIFEST}")
    for bucket, fit in manifest.get("calibration", {}).items():
        if isinstance(fit, dict):
            print(f"adaptive threshold, {bucket}: {fit['threshold']:.3f} (Youden's J {fit['youden_j']:.2f}, "
                  f"Spearman {fit['spearman']:.2f}, {fit['pieces']} {manifest['calibration']['split']} pieces)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MpeSslError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
