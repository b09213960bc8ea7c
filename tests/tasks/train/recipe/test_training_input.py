"""The training input pipeline: every image once an epoch, seeded order, labels, the epoch's augmentations."""

from __future__ import annotations

import numpy as np
import pytest

from visionflow.network.build_model import UnsuitableInputError
from visionflow.tasks.train.recipe.alternating_flip import AlternatingFlip
from visionflow.tasks.train.recipe.low_resolution import LowResolutionEpochs
from visionflow.tasks.train.recipe.presets import PRESETS, TrainConfig
from visionflow.tasks.train.recipe.training_input import epoch_augmentations, make_dataset

IMAGES = 50


def numbered_images(count: int) -> tuple[np.ndarray, np.ndarray]:
    """count 2x2 one-channel images filled with their own index, labelled index % 3."""
    images = np.repeat(np.arange(count, dtype=np.uint8), 4).reshape(count, 2, 2, 1)
    return images, np.arange(count) % 3


def order(config: TrainConfig, training: bool) -> list[int]:
    images, labels = numbered_images(IMAGES)
    seen = []
    for batch, batch_labels in make_dataset(images, labels, config, 3, training):
        numbers = batch.numpy()[:, 0, 0, 0].astype(int)
        expected = np.eye(3)[numbers % 3] if config.label_smoothing > 0 else numbers % 3
        np.testing.assert_array_equal(batch_labels.numpy(), expected)
        assert len(numbers) <= config.batch_size
        seen.extend(numbers.tolist())
    return seen


def test_each_epoch_gives_every_image_once_in_a_seeded_shuffle():
    config = TrainConfig(batch_size=16, seed=3)
    shuffled = order(config, training=True)
    assert sorted(shuffled) == list(range(IMAGES)) and shuffled != list(range(IMAGES))
    assert order(config, training=True) == shuffled
    assert order(config, training=False) == list(range(IMAGES))  # Validation stays in order.
    assert order(config.model_copy(update={"label_smoothing": 0.0}), training=True) == shuffled


def test_the_epoch_augmentations_are_those_the_preset_asks_for():
    images, _labels = numbered_images(IMAGES)
    default = PRESETS["default"]
    assert epoch_augmentations(default, images) == []
    both = default.model_copy(
        update={
            "model": default.model.model_copy(update={"alternating_flip": True}),
            "train": default.train.model_copy(update={"low_resolution_epoch_fraction": 0.5}),
        }
    )
    wide = np.zeros((IMAGES, 32, 32, 3), dtype=np.uint8)
    assert [type(found) for found in epoch_augmentations(both, wide)] == [AlternatingFlip, LowResolutionEpochs]


def test_crops_too_small_for_the_images_are_refused_before_training():
    default = PRESETS["default"]
    cropped = default.model_copy(
        update={"train": default.train.model_copy(update={"low_resolution_epoch_fraction": 0.5})}
    )
    with pytest.raises(UnsuitableInputError, match="minimum"):
        epoch_augmentations(cropped, np.zeros((IMAGES, 10, 10, 3), dtype=np.uint8))


def test_the_pipeline_runs_at_fixed_depths_without_tf_data_autotuning():
    # Autotuning held about half of the epochs on a 2-core CPU to a slower fixed rate
    # (benchmarks/input_autotune_benchmark.py); the pipeline must keep it off, for training and validation.
    images, labels = numbered_images(IMAGES)
    for training in (True, False):
        options = make_dataset(images, labels, TrainConfig(batch_size=8), 3, training).options()
        assert options.autotune.enabled is False
