"""The batch contract: the keys a batch may carry, and where each sample comes from.

Every dataset item (and so every collated batch) may carry these keys; shapes are per batch:

=============== ======================================================================
key             content
=============== ======================================================================
``audio``       ``(batch, samples)`` mono float32 at the system's sample rate
``features``    ``(batch, channels, bins, frames)`` a front end's output, computed ahead
                (a feature cache hands these in instead of ``audio``)
``targets``     ``(batch, bins, frames)`` binary multi-pitch labels on the grid's bins
``f0``          ``(batch, frames)`` fundamental frequency in Hz, 0 where unvoiced
``stems``       ``(batch, sources, samples)`` the sources whose sum is ``audio``
``score``       ``(batch, units, frames)`` weak labels from a score (1 = may be active)
``confidence``  ``(batch,)`` confidence in [0, 1] of pseudo labels
``weight``      ``(batch,)`` per-sample loss weight >= 0 (e.g. that confidence; not a label)
``track``       ``list[str]`` the piece or file each sample comes from
``start_frame`` ``(batch,)`` frame of the track at which the excerpt starts
``kind``        ``list[str]`` the stream *kind*: ``labelled``, ``pseudo`` or ``unlabelled``
``stream``      ``list[str]`` the stream *name* (unique per split; two unlabelled sources
                have two names and are logged apart)
=============== ======================================================================

A training batch of a mixed DataModule is ``{stream name: batch}``; a plain DataLoader's
batch is one such batch (its stream is named by its ``stream`` key, else ``labelled``).
Labels (``LABEL_KEYS``) are absent, not zero-filled, where a stream does not have them.

A system declares what it needs per stream kind as a :data:`Needs` mapping, e.g.
``{"labelled": (("audio", "features"), "targets"), "unlabelled": (("audio", "features"),)}``:
each entry is a key, or a tuple of keys of which one must be present. :func:`check_batch`
checks a batch against it at the system's edge and raises a one-line error naming the
missing key and the stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mpe_ssl.errors import MpeSslError

KINDS = ("labelled", "pseudo", "unlabelled")
KEYS = ("audio", "features", "targets", "f0", "stems", "score", "confidence", "weight", "track", "start_frame",
        "kind", "stream")
LABEL_KEYS = ("targets", "f0", "stems", "score", "confidence")

#: per stream kind, the keys a batch must carry (a tuple entry: one of these keys)
Needs = Mapping[str, Sequence[str | tuple[str, ...]]]


def check_kind(kind: str) -> str:
    """``kind`` itself if it is one of :data:`KINDS`; else a one-line :class:`MpeSslError`."""
    if kind not in KINDS:
        raise MpeSslError(f"stream kind {kind!r} is not one of {', '.join(KINDS)}")
    return kind


def tag_item(item: Mapping, kind: str, name: str, hide_labels: bool) -> dict:
    """A copy of a dataset item with its stream ``kind`` and ``name``; with ``hide_labels``,
    an unlabelled stream's item loses every label key."""
    tagged = dict(item)
    tagged["kind"], tagged["stream"] = kind, name
    if hide_labels and kind == "unlabelled":
        for key in LABEL_KEYS:
            tagged.pop(key, None)
    return tagged


def _first(value, default: str) -> str:
    if isinstance(value, (list, tuple)) and value:
        return str(value[0])
    return default if value is None else str(value)


def stream_kind(batch: Mapping) -> str:
    """The kind of a one-stream batch (``labelled`` when it does not say)."""
    return check_kind(_first(batch.get("kind"), "labelled"))


def split_streams(batch: Mapping) -> dict[str, dict]:
    """``{stream name: batch}`` of a mixed batch, or of a plain one-stream batch."""
    if batch and all(isinstance(part, Mapping) for part in batch.values()):
        return {str(name): dict(part) for name, part in batch.items()}
    return {_first(batch.get("stream"), stream_kind(batch)): dict(batch)}


def check_batch(batch: Mapping, name: str, needs: Needs, who: str) -> str:
    """Check one stream's batch against ``needs``; returns its kind.

    Raises:
        MpeSslError: the stream's kind is unknown or not in ``needs``, or a needed key is
            missing; the message names the stream, the key and ``who`` needs it.
    """
    kind = stream_kind(batch)
    if kind not in needs:
        raise MpeSslError(f"stream '{name}' ({kind}): {who} does not take {kind} streams (it takes {', '.join(needs)})")
    for need in needs[kind]:
        options = (need,) if isinstance(need, str) else tuple(need)
        if not any(key in batch for key in options):
            wanted = " or ".join(f"'{key}'" for key in options)
            raise MpeSslError(
                f"stream '{name}' ({kind}): the batch has no {wanted}, which {who} needs "
                f"(it has {', '.join(sorted(map(str, batch))) or 'nothing'})"
            )
    return kind
