"""The batch contract: stream kind and name kept apart, needs checked with one-line errors."""

from __future__ import annotations

import pytest
import torch

from mpe_ssl.batch import check_batch, split_streams, tag_item
from mpe_ssl.errors import MpeSslError
from mpe_ssl.systems import SelfSupervisedMPE, SupervisedMPE
from tests.tiny import tiny_network

ITEM = {"audio": torch.zeros(4), "targets": torch.ones(2, 3), "f0": torch.zeros(3), "track": "a"}


def test_tagging_keeps_kind_and_name_apart_and_hides_labels_of_unlabelled_training_items():
    tagged = tag_item(ITEM, "unlabelled", "nsynth", hide_labels=True)
    assert tagged["kind"] == "unlabelled" and tagged["stream"] == "nsynth"
    assert "targets" not in tagged and "f0" not in tagged and "audio" in tagged
    kept = tag_item(ITEM, "unlabelled", "nsynth", hide_labels=False)  # evaluation keeps what it has
    assert "targets" in kept
    assert "targets" in tag_item(ITEM, "labelled", "a", hide_labels=True)


def test_a_mixed_batch_splits_by_name_and_a_plain_one_is_one_stream():
    mixed = {"musicnet": {"audio": 1, "kind": ["unlabelled"]}, "fma": {"audio": 2, "kind": ["unlabelled"]}}
    assert list(split_streams(mixed)) == ["musicnet", "fma"]  # two unlabelled sources stay two streams
    assert list(split_streams({"audio": torch.zeros(1, 4), "stream": ["x"], "kind": ["pseudo"]})) == ["x"]
    assert list(split_streams({"audio": torch.zeros(1, 4)})) == ["labelled"]


@pytest.mark.parametrize(
    "batch, words",
    [
        ({"audio": 1, "kind": ["labelled"]}, ["stream 'drums' (labelled)", "'targets'", "SupervisedMPE"]),
        ({"targets": 1, "kind": ["labelled"]}, ["'audio' or 'features'"]),
        ({"audio": 1, "kind": ["unlabelled"]}, ["does not take unlabelled"]),
        ({"audio": 1, "kind": ["unlabeled"]}, ["'unlabeled'"]),
    ],
)
def test_a_missing_key_is_a_one_line_error_naming_the_key_and_the_stream(batch, words):
    with pytest.raises(MpeSslError) as error:
        check_batch(batch, "drums", SupervisedMPE.train_needs, "SupervisedMPE")
    message = str(error.value)
    assert "\n" not in message and all(word in message for word in words), message


def test_a_system_trains_on_features_instead_of_audio():
    """A feature cache hands in ``features``: the front end is skipped, the result is the same."""
    torch.manual_seed(0)
    system = SupervisedMPE(network=tiny_network())
    audio = 0.1 * torch.randn(2, 22050)
    targets = (torch.rand(2, 440, 87) > 0.99).float()
    from_audio = system.training_step({"audio": audio, "targets": targets}, 0)
    features = system.features(audio)
    from_features = system.training_step({"features": features, "targets": targets}, 0)
    assert torch.equal(from_audio, from_features)


def test_two_unlabelled_sources_are_logged_apart():
    torch.manual_seed(0)
    system = SelfSupervisedMPE(weights={"timbre": 1.0}, network=tiny_network())
    logged = []
    system.log = lambda name, *args, **kwargs: logged.append(name)
    batch = {name: {"audio": 0.1 * torch.randn(1, 11025), "kind": ["unlabelled"], "stream": [name]}
             for name in ("musicnet", "fma")}
    system.training_step(batch, 0)
    assert "train/musicnet/timbre" in logged and "train/fma/timbre" in logged
    assert "train/unlabelled/timbre" not in logged
