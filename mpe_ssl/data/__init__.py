"""The embedded dataset: Bach chorales of music21's corpus rendered with SoundFont instruments.

``mpe-ssl data render`` (:func:`main`) writes a dataset root; :class:`RenderedChorales`
reads one split of it as torch items; :class:`MixedStreamDataModule` serves labelled,
pseudo-labelled and unlabelled streams of it (or of any dataset) to the systems.
"""

from mpe_ssl.data.augmented import Augmentation, AugmentedChorales
from mpe_ssl.data.datasets import RenderedChorales, load_notes, note_targets
from mpe_ssl.data.mixing import MixedStreamDataModule, StreamSpec
from mpe_ssl.data.render import (
    DEFAULT_PROGRAMS,
    HELD_OUT_PROGRAMS,
    TRAINING_PROGRAMS,
    RenderConfig,
    load_manifest,
    load_multipitch,
    main,
    read_notes,
    render_dataset,
    split_assignment,
)

__all__ = [
    "Augmentation",
    "AugmentedChorales",
    "DEFAULT_PROGRAMS",
    "HELD_OUT_PROGRAMS",
    "TRAINING_PROGRAMS",
    "MixedStreamDataModule",
    "StreamSpec",
    "RenderConfig",
    "RenderedChorales",
    "load_manifest",
    "load_multipitch",
    "load_notes",
    "main",
    "note_targets",
    "read_notes",
    "render_dataset",
    "split_assignment",
]
