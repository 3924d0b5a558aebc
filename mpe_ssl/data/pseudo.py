"""MAJL stage II data: the single-labelled chorales completed with stage I's pseudo labels.

``mpe-ssl pseudo-label`` (:mod:`mpe_ssl.pseudo_label`) runs a stage-I
:class:`~mpe_ssl.systems.MAJL` over the ``separation`` and ``pitch`` buckets of
:class:`~mpe_ssl.data.majl.MAJLChorales` and writes, into a *pseudo directory*::

    manifest.json                   what is there (below); rewritten atomically per piece
    separation/<piece>.f0.csv       pseudo f0 of a separation-only piece: time_s, hz (0 where
                                    unvoiced), confidence; one row per 20 ms frame of the
                                    whole piece (``1 + samples // 320`` rows at 16 kHz)
    pitch/<piece>.target.wav        pseudo target stem of a pitch-only piece: the separator's
                                    output on the whole mixture, 16 kHz float32 mono

``manifest.json``: ``format`` (:data:`FORMAT`), ``version``, ``checkpoint`` (``path``,
``sha1``), ``settings`` (the data selection: ``root``, ``split``, ``target``, ``fractions``,
``bucket_seed``, ``first_piece``, ``max_pieces``, ``render``; and how labels were made),
``complete`` (every piece of both buckets is labelled) and ``pieces``: one entry per
labelled piece with ``piece``, ``bucket``, ``file`` (relative to the directory), ``bytes``
(the file's size), ``confidence`` in [0, 1] and per-bucket details. A label file is renamed
into place before its manifest entry is written, so the manifest never names a
half-written file.

The per-piece **confidence**: for a separation piece, the mean pitch confidence (CREPE's
peak salience) of the frames the pitch network calls voiced on the *true* target stem (0
when it calls none voiced); for a pitch piece, the raw pitch accuracy (50 cents) of the
pitch network on the *separated* target against the piece's *true* f0 (0 when the f0 is
never voiced).

:class:`PseudoLabelled` serves excerpts of those pieces with both labels, like a ``full``
bucket item of :class:`~mpe_ssl.data.majl.MAJLChorales`, for a ``pseudo`` stream of
:class:`~mpe_ssl.data.mixing.MixedStreamDataModule`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from mpe_ssl.data.majl import HOP_LENGTH, SAMPLE_RATE, SOURCE_HOP, MAJLChorales
from mpe_ssl.errors import MpeSslError

__all__ = ["FORMAT", "MANIFEST", "PSEUDO_BUCKETS", "PseudoLabelled", "label_file", "read_pseudo_manifest"]

FORMAT = "mpe-ssl pseudo labels"
MANIFEST = "manifest.json"
#: the buckets that get pseudo labels, and the label each one gets
PSEUDO_BUCKETS = {"separation": "f0", "pitch": "stems"}


def label_file(bucket: str, piece: str) -> str:
    """The label file of ``piece`` in ``bucket``, relative to the pseudo directory."""
    if bucket not in PSEUDO_BUCKETS:
        raise MpeSslError(f"bucket: {bucket!r} has no pseudo labels (only {', '.join(PSEUDO_BUCKETS)})")
    if not piece or "/" in piece or piece.startswith("."):
        raise MpeSslError(f"piece id {piece!r} cannot name a file")
    return f"{bucket}/{piece}.f0.csv" if bucket == "separation" else f"{bucket}/{piece}.target.wav"


def read_pseudo_manifest(pseudo_dir: str | os.PathLike) -> dict:
    """The manifest of a pseudo directory; a one-line :class:`MpeSslError` when the directory
    or its manifest is missing or is not one of ``mpe-ssl pseudo-label``."""
    path = Path(pseudo_dir) / MANIFEST
    if not Path(pseudo_dir).is_dir():
        raise MpeSslError(f"{pseudo_dir}: no such pseudo-label directory; make it with mpe-ssl pseudo-label")
    if not path.is_file():
        raise MpeSslError(f"{path}: missing; make the pseudo labels with mpe-ssl pseudo-label")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MpeSslError(f"{path}: not a readable manifest ({type(error).__name__})") from None
    valid = isinstance(manifest, dict) and manifest.get("format") == FORMAT and isinstance(manifest.get("pieces"), list)
    if not valid:
        raise MpeSslError(f"{path}: not a manifest of mpe-ssl pseudo-label")
    return manifest


def read_f0_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``hz`` and ``confidence`` per frame of a pseudo f0 file (``time_s,hz,confidence``)."""
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as error:
        raise MpeSslError(f"{path}: not a readable f0 file ({type(error).__name__})") from None
    if table.shape[1] != 3:
        raise MpeSslError(f"{path}: has {table.shape[1]} columns, not time_s,hz,confidence")
    return table[:, 1].astype(np.float32), table[:, 2].astype(np.float32)


class PseudoLabelled(MAJLChorales):
    """Excerpts of the pseudo-labelled pieces, each with both labels (the true one of its
    bucket and the pseudo one), for pieces whose confidence reaches ``threshold``.

    Items have the keys of a ``full`` :class:`~mpe_ssl.data.majl.MAJLChorales` item
    (``audio``, ``stems``, ``f0``, ``kind``, ``track``, ``start_frame``; ``bucket`` is the
    piece's own bucket, ``separation`` or ``pitch``), plus ``pseudo`` (the pseudo label's
    key: ``f0`` or ``stems``), ``confidence`` (the piece's, float32) and ``weight`` (float32:
    the confidence with ``weight_by_confidence``, else 1), which
    :meth:`~mpe_ssl.systems.MAJL.stream_loss` multiplies each sample's loss by. The pseudo
    target replaces ``stems[0]`` and the accompaniment is the mixture minus it.

    Args:
        pseudo_dir: a directory written by ``mpe-ssl pseudo-label``.
        threshold: keep the pieces whose confidence is at least this, in [0, 1]; or
            ``"adaptive"``: each bucket's threshold of the labels' calibration
            (``mpe-ssl pseudo-label --calibrate``, :func:`mpe_ssl.pseudo_label.adaptive_threshold`).
        weight_by_confidence: ``weight`` is the piece's confidence (else 1).
        buckets: the buckets whose pseudo-labelled pieces to serve.
        root, split, target, fractions, bucket_seed, first_piece, max_pieces, render: the data
            selection of :class:`~mpe_ssl.data.majl.MAJLChorales`; each one left out is the
            pseudo labels' (their manifest's ``settings``). Every kept piece must fall into
            the bucket it was labelled in.
        excerpt_seconds, random_excerpts, items_per_epoch, excerpts_per_piece, seed,
            cache_audio: as :class:`~mpe_ssl.data.majl.MAJLChorales`.

    Raises:
        MpeSslError: the directory or its manifest is missing, the labelling run did not
            finish, no piece reaches ``threshold``, or a label file is damaged.
    """

    def __init__(
        self,
        pseudo_dir: str | os.PathLike,
        threshold: float | str = 0.7,
        weight_by_confidence: bool = False,
        buckets: tuple[str, ...] = ("separation", "pitch"),
        root: str | os.PathLike | None = None,
        split: str | None = None,
        target: str | None = None,
        fractions: tuple[float, float, float] | None = None,
        bucket_seed: int | None = None,
        excerpt_seconds: float | None = None,
        random_excerpts: bool | None = None,
        items_per_epoch: int | None = None,
        excerpts_per_piece: int | None = None,
        seed: int = 0,
        max_pieces: int | None = None,
        first_piece: int | None = None,
        cache_audio: bool = False,
        render: dict | None = None,
    ):
        adaptive = isinstance(threshold, str)
        if adaptive and threshold != "adaptive":
            raise MpeSslError(f"threshold: {threshold!r} must be a number in [0, 1] or 'adaptive'")
        if not adaptive and not 0.0 <= float(threshold) <= 1.0:
            raise MpeSslError(f"threshold: {threshold} must be in [0, 1]")
        unknown = [b for b in buckets if b not in PSEUDO_BUCKETS]
        if unknown or not buckets:
            raise MpeSslError(f"buckets: {list(buckets)!r} must be some of {', '.join(PSEUDO_BUCKETS)}")
        self.pseudo_dir = Path(pseudo_dir)
        self.weight_by_confidence = bool(weight_by_confidence)
        manifest = read_pseudo_manifest(self.pseudo_dir)
        where = self.pseudo_dir / MANIFEST
        if adaptive and "calibration" not in manifest:
            raise MpeSslError(f"{where}: threshold 'adaptive' needs the labels' calibration; run mpe-ssl "
                              "pseudo-label again with --calibrate (the labels are kept)")
        #: the threshold of each bucket
        self.thresholds = {bucket: float(manifest["calibration"][bucket]["threshold"] if adaptive else threshold)
                           for bucket in buckets}
        self.threshold = threshold if adaptive else float(threshold)
        if not manifest.get("complete"):
            raise MpeSslError(f"{where}: the pseudo-label run did not finish ({len(manifest['pieces'])} pieces "
                              "so far); run mpe-ssl pseudo-label again to finish it")
        candidates = [e for e in manifest["pieces"] if e.get("bucket") in buckets]
        self.entries = {e["piece"]: e for e in candidates if float(e["confidence"]) >= self.thresholds[e["bucket"]]}
        if not self.entries:
            best = max((float(e["confidence"]) for e in candidates), default=float("nan"))
            raise MpeSslError(f"{where}: no piece of {', '.join(buckets)} has confidence >= {self._cuts()} "
                              f"({len(candidates)} pieces, the highest {best:.3f})")
        settings = manifest.get("settings", {})
        if root is None and render is None:
            root = settings.get("root")
        self._selecting = True  # the pieces setter keeps only the kept pieces (see below)
        super().__init__(
            root, split=split or settings.get("split", "train"), target=target or settings.get("target", "Soprano"),
            fractions=tuple(fractions if fractions is not None else settings.get("fractions", (1.0, 0.0, 0.0))),
            bucket_seed=int(bucket_seed if bucket_seed is not None else settings.get("bucket_seed", 0)),
            bucket=None, excerpt_seconds=excerpt_seconds, random_excerpts=random_excerpts,
            items_per_epoch=items_per_epoch, excerpts_per_piece=excerpts_per_piece, seed=seed,
            max_pieces=max_pieces if max_pieces is not None else settings.get("max_pieces"),
            first_piece=int(first_piece if first_piece is not None else settings.get("first_piece", 0)),
            cache_audio=cache_audio, render=render,
        )
        self._selecting = False
        self._pseudo_f0: dict[int, np.ndarray] = {}
        self._pseudo_audio: dict[int, np.ndarray] = {}
        for i, piece in enumerate(self.pieces):
            self._check_label(i, self.entries[piece["id"]])

    # MAJLChorales.__init__ picks its pieces into ``self.pieces`` before it lays out the
    # excerpts over them: while it runs, this setter keeps only the pseudo-labelled pieces
    # that pass the threshold, so every excerpt rule is MAJLChorales' own.
    @property
    def pieces(self) -> list[dict]:
        return self._pieces

    @pieces.setter
    def pieces(self, pieces: list[dict]) -> None:
        if not getattr(self, "_selecting", False):
            self._pieces = pieces
            return
        kept = [p for p in pieces if p["id"] in self.entries]
        if not kept:
            raise MpeSslError(f"{self.pseudo_dir}: none of its {len(self.entries)} pieces with confidence >= "
                              f"{self._cuts()} is among the {self.split} pieces of {self.root}")
        for piece in kept:
            labelled, here = self.entries[piece["id"]]["bucket"], self.buckets[piece["id"]]
            if labelled != here:
                raise MpeSslError(f"{self.pseudo_dir}: piece {piece['id']} was pseudo-labelled in bucket {labelled} "
                                  f"but falls into {here} here (fractions/bucket_seed differ from the labels')")
        self._pieces = kept

    def piece_bucket(self, i: int) -> str:
        """``full``: with its pseudo label, every piece has both labels (its own bucket is
        :meth:`source_bucket`)."""
        return "full"

    def source_bucket(self, i: int) -> str:
        """The bucket of piece ``i`` (``separation`` or ``pitch``): which label is pseudo."""
        return self.entries[self.pieces[i]["id"]]["bucket"]

    # ------------------------------------------------------------------ the pseudo labels
    def _samples(self, i: int) -> int:
        """Samples of the whole piece ``i`` at 16 kHz (a whole number of hops)."""
        return -(-int(self.lengths[i]) // SOURCE_HOP) * HOP_LENGTH

    def _check_label(self, i: int, entry: dict) -> None:
        path = self.pseudo_dir / entry["file"]
        samples = self._samples(i)
        try:
            size = path.stat().st_size
        except OSError:
            raise MpeSslError(f"{path}: missing; run mpe-ssl pseudo-label again to repair it") from None
        if size != int(entry["bytes"]):
            raise MpeSslError(f"{path}: damaged ({size} bytes; the manifest says {entry['bytes']}); "
                              "run mpe-ssl pseudo-label again to repair it")
        if entry["bucket"] == "separation":
            hz, _ = read_f0_csv(path)
            if len(hz) != 1 + samples // HOP_LENGTH:
                raise MpeSslError(f"{path}: {len(hz)} frames, not the piece's {1 + samples // HOP_LENGTH}")
            self._pseudo_f0[i] = hz
        else:
            try:
                info = sf.info(str(path))
            except RuntimeError:
                raise MpeSslError(f"{path}: not a readable WAV file") from None
            if info.samplerate != SAMPLE_RATE or info.frames != samples or info.channels != 1:
                raise MpeSslError(f"{path}: {info.frames} samples at {info.samplerate} Hz x {info.channels}, not the "
                                  f"piece's {samples} at {SAMPLE_RATE} Hz mono")

    def _pseudo_target(self, i: int, start: int, stop: int) -> np.ndarray:
        """Samples ``start .. stop`` (16 kHz) of the pseudo target of piece ``i``, zeros after its end."""
        path = self.pseudo_dir / self.entries[self.pieces[i]["id"]]["file"]
        n = self._samples(i)
        a, b = min(start, n), min(stop, n)
        if self.cache_audio:
            if i not in self._pseudo_audio:
                self._pseudo_audio[i] = sf.read(str(path), dtype="float32")[0]
            audio = self._pseudo_audio[i][a:b]
        else:
            audio = sf.read(str(path), start=a, stop=b, dtype="float32")[0]
        return np.pad(audio, (0, stop - start - len(audio)))

    def excerpt(self, i: int, start_frame: int, frames: int) -> dict:
        """:meth:`MAJLChorales.excerpt` with the piece's missing label replaced by its pseudo one."""
        out = super().excerpt(i, start_frame, frames)
        if self.source_bucket(i) == "separation":
            f0 = self._pseudo_f0[i][start_frame : start_frame + frames + 1]
            out["f0"] = torch.from_numpy(np.pad(f0, (0, frames + 1 - len(f0))))
        else:
            start = start_frame * HOP_LENGTH
            target = self._pseudo_target(i, start, start + frames * HOP_LENGTH)
            out["stems"] = torch.from_numpy(np.stack([target, out["audio"].numpy() - target]))
        return out

    def __getitem__(self, item: int) -> dict:
        out = super().__getitem__(item)
        entry = self.entries[out["track"]]
        confidence = float(entry["confidence"])
        out.update(bucket=entry["bucket"], pseudo=PSEUDO_BUCKETS[entry["bucket"]],
                   confidence=torch.tensor(confidence, dtype=torch.float32),
                   weight=torch.tensor(confidence if self.weight_by_confidence else 1.0, dtype=torch.float32))
        return out

    def _cuts(self) -> str:
        """The thresholds in words: ``0.7``, or ``separation 0.85, pitch 0.91`` when they differ."""
        cuts = set(self.thresholds.values())
        if len(cuts) == 1:
            return f"{cuts.pop():g}"
        return ", ".join(f"{bucket} {cut:g}" for bucket, cut in self.thresholds.items())

    def __repr__(self) -> str:
        return (f"PseudoLabelled({str(self.pseudo_dir)!r}, threshold {self._cuts()}, "
                f"{len(self.pieces)} pieces, {len(self)} items)")
