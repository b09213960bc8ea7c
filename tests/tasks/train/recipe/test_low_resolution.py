"""Low-resolution first epochs: crops in the pipeline by the epoch, a twin of any input size, refusals."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from visionflow.network.build_model import ModelConfig, UnsuitableInputError, build_model, channel_statistics
from visionflow.tasks.train.recipe.low_resolution import (
    LowResolutionEpochs,
    low_resolution_epochs,
    low_resolution_for,
    with_input_shape,
)
from visionflow.tasks.train.recipe.presets import PRESETS, TrainConfig
from visionflow.tasks.train.recipe.training_input import make_dataset

SIDE = 16
IMAGES = 64


def position_images(count: int) -> np.ndarray:
    """count SIDE x SIDE one-channel images whose pixel at (y, x) holds y * SIDE + x: a crop shows where it was cut."""
    grid = np.arange(SIDE * SIDE, dtype=np.uint8).reshape(SIDE, SIDE, 1)
    return np.repeat(grid[None], count, axis=0)


def batches_by_epoch(crops: LowResolutionEpochs, epochs: int, seed: int = 0) -> list[list[np.ndarray]]:
    images = position_images(IMAGES)
    config = TrainConfig(batch_size=16, seed=seed)
    dataset = make_dataset(images, np.zeros(IMAGES, np.int64), config, 2, True, augmentations=[crops])
    seen = []
    for epoch in range(epochs):
        crops.on_epoch_begin(epoch)
        seen.append([batch.numpy() for batch, _labels in dataset])
    return seen


def test_the_first_epochs_train_on_whole_windows_of_the_images_and_the_rest_on_the_images():
    seen = batches_by_epoch(LowResolutionEpochs(2, 12, 10, IMAGES, seed=0), epochs=3)
    grid = position_images(1)[0]
    offsets = set()
    for batch in seen[0] + seen[1]:
        assert batch.shape[1:] == (12, 10, 1)
        top, left = divmod(int(batch[0, 0, 0, 0]), SIDE)
        # One window per batch, cut whole from the image, never past its edges.
        assert top + 12 <= SIDE and left + 10 <= SIDE
        np.testing.assert_array_equal(batch, np.broadcast_to(grid[top : top + 12, left : left + 10], batch.shape))
        offsets.add((top, left))
    assert len(offsets) > 2  # The windows move from batch to batch.
    assert all(batch.shape[1:] == (SIDE, SIDE, 1) for batch in seen[2])


def test_a_seeded_run_cuts_the_same_windows_again():
    first = batches_by_epoch(LowResolutionEpochs(1, 8, 8, IMAGES, seed=5), epochs=1, seed=5)
    again = batches_by_epoch(LowResolutionEpochs(1, 8, 8, IMAGES, seed=5), epochs=1, seed=5)
    for one, other in zip(first[0], again[0], strict=True):
        np.testing.assert_array_equal(one, other)


def test_the_share_of_epochs_rounds_down_and_zero_means_none():
    assert low_resolution_epochs(TrainConfig(epochs=9, low_resolution_epoch_fraction=0.45)) == 4
    assert low_resolution_epochs(TrainConfig(epochs=2, low_resolution_epoch_fraction=0.45)) == 0
    assert low_resolution_for(ModelConfig(), TrainConfig(), (SIDE, SIDE, 3), IMAGES) is None


def test_networks_that_cannot_take_crops_are_refused_with_what_to_change():
    config = TrainConfig(epochs=4, low_resolution_epoch_fraction=0.5)
    with pytest.raises(UnsuitableInputError, match="pools globally"):
        low_resolution_for(PRESETS["seed"].model, config, (32, 32, 3), IMAGES)
    small = config.model_copy(update={"low_resolution_crop_fraction": 0.25})
    with pytest.raises(UnsuitableInputError, match="smaller than the network's minimum of 9x9"):
        low_resolution_for(PRESETS["default"].model, small, (32, 32, 3), IMAGES)
    crops = low_resolution_for(PRESETS["default"].model, config, (32, 32, 3), IMAGES)
    assert (crops.epochs, crops.crop_height, crops.crop_width) == (2, 24, 24)


def test_the_twin_of_any_input_size_shares_every_weight_and_predicts_the_same():
    config = ModelConfig(architecture="airbench", stem_filters=0, conv_filters=[8, 8], augment=False)
    images = np.random.default_rng(0).integers(0, 256, size=(4, SIDE, SIDE, 3), dtype=np.uint8)
    model = build_model(config, (SIDE, SIDE, 3), 3, channel_stats=channel_statistics(images))
    twin = with_input_shape(model, (None, None, 3))
    assert {id(weight) for weight in twin.weights} == {id(weight) for weight in model.weights}
    np.testing.assert_allclose(twin.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    assert twin.predict(images[:, :12, :10], verbose=0).shape == (4, 3)
    back = with_input_shape(twin, (SIDE, SIDE, 3))
    assert back.input_shape == (None, SIDE, SIDE, 3)


def test_a_model_that_is_not_a_chain_is_refused():
    inputs = keras.Input(shape=(4,))
    branched = keras.Model(inputs, keras.layers.Add()([keras.layers.Dense(4)(inputs), keras.layers.Dense(4)(inputs)]))
    with pytest.raises(ValueError, match="not a chain of layers"):
        with_input_shape(branched, (4,))
