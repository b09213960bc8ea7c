"""Alternating flips: each image mirrored in exactly one of every two epochs, by the epoch Keras reports."""

from __future__ import annotations

import numpy as np
import pytest

from visionflow.network.build_model import ModelConfig
from visionflow.tasks.train.recipe.alternating_flip import AlternatingFlip, alternating_flip_for
from visionflow.tasks.train.recipe.presets import TrainConfig
from visionflow.tasks.train.recipe.training_input import make_dataset

IMAGES = 40


def marked_images(count: int) -> np.ndarray:
    """count 2x3 one-channel images whose left column holds index + 1 and the rest zeros: a
    mirrored image has the mark in its right column instead."""
    images = np.zeros((count, 2, 3, 1), dtype=np.uint8)
    images[:, :, 0, 0] = np.arange(1, count + 1)[:, None]
    return images


def mirrored_by_epoch(flips: AlternatingFlip, epochs: int) -> np.ndarray:
    """epochs x IMAGES booleans: whether the pipeline gave each image mirrored in each epoch."""
    images = marked_images(IMAGES)
    dataset = make_dataset(
        images, np.zeros(IMAGES, np.int64), TrainConfig(batch_size=16), 2, True, augmentations=[flips]
    )
    mirrored = np.zeros((epochs, IMAGES), dtype=bool)
    seen = np.zeros((epochs, IMAGES), dtype=int)
    for epoch in range(epochs):
        flips.on_epoch_begin(epoch)
        for batch, _labels in dataset:
            for image in batch.numpy():
                index = int(image[0].max()) - 1
                # The mark moves from the left to the right column and the image is otherwise untouched.
                assert sorted(image[0, :, 0].tolist()) == [0, 0, index + 1]
                mirrored[epoch, index] = image[0, 2, 0] == index + 1
                seen[epoch, index] += 1
    assert (seen == 1).all()  # Flipping leaves the shuffle's one-pass-per-epoch alone.
    return mirrored


def test_every_image_is_mirrored_in_exactly_one_of_two_consecutive_epochs():
    mirrored = mirrored_by_epoch(AlternatingFlip(IMAGES, seed=0), epochs=4)
    assert (mirrored[0] != mirrored[1]).all() and (mirrored[1] != mirrored[2]).all()
    np.testing.assert_array_equal(mirrored[0], mirrored[2])
    assert 0.2 < mirrored[0].mean() < 0.8  # A random half, not all or none.


def test_the_halves_follow_the_seed():
    same = mirrored_by_epoch(AlternatingFlip(IMAGES, seed=3), epochs=1)
    np.testing.assert_array_equal(same, mirrored_by_epoch(AlternatingFlip(IMAGES, seed=3), epochs=1))
    assert (same != mirrored_by_epoch(AlternatingFlip(IMAGES, seed=4), epochs=1)).any()


def test_an_empty_training_split_is_refused():
    with pytest.raises(ValueError, match="at least one training image"):
        AlternatingFlip(0, seed=0)


def test_only_a_network_that_asks_for_alternating_flips_gets_them():
    assert alternating_flip_for(ModelConfig(), IMAGES, 0) is None
    assert isinstance(alternating_flip_for(ModelConfig(alternating_flip=True), IMAGES, 0), AlternatingFlip)
    with pytest.raises(ValueError, match="alternating_flip needs augment and horizontal_flip"):
        ModelConfig(alternating_flip=True, horizontal_flip=False)
