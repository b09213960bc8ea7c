"""Patch-whitening initialisation of the airbench network's first layer."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from visionflow.network.build_model import ModelConfig, UnsuitableInputError, build_model, channel_statistics
from visionflow.network.initializers import normalized, patch_matrix, patch_whitening_kernel, whitening_filters

SHAPE = (16, 16, 3)


def correlated_images(count: int = 300, shape=SHAPE, seed: int = 0) -> np.ndarray:
    """Smooth random images: neighbouring pixels and channels strongly correlated, as in photos."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(count, shape[0] // 4, shape[1] // 4, 1))
    smooth = np.kron(coarse, np.ones((1, 4, 4, 1)))
    pixels = 128 + 40 * smooth + rng.normal(scale=12, size=(count, *shape[:2], shape[2]))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def whitening_config(**changes) -> ModelConfig:
    settings = {"stem_filters": 0, "activation": "relu", "whiten": True, "precision": "float32", "augment": False}
    return ModelConfig(**{**settings, **changes})


def test_patch_rows_follow_the_conv2d_kernel_layout():
    pixels = np.random.default_rng(1).normal(size=(2, 5, 6, 3)).astype(np.float32)
    kernel = np.random.default_rng(2).normal(size=(2, 2, 3, 4)).astype(np.float32)
    convolved = keras.ops.convert_to_numpy(keras.ops.conv(pixels, kernel, padding="valid"))
    by_rows = (patch_matrix(pixels.astype(np.float64)) @ kernel.reshape(12, 4)).reshape(2, 4, 5, 4)
    np.testing.assert_allclose(convolved, by_rows, rtol=1e-4, atol=1e-4)


def test_whitening_kernel_decorrelates_the_training_patches():
    images = correlated_images()
    stats = channel_statistics(images)
    kernel = patch_whitening_kernel(images, stats)
    assert kernel.shape == (2, 2, 3, whitening_filters(3)) == (2, 2, 3, 24)
    np.testing.assert_array_equal(kernel[..., 12:], -kernel[..., :12])
    whitened = patch_matrix(normalized(images, stats)) @ kernel.reshape(12, 24)[:, :12].astype(np.float64)
    second_moment = whitened.T @ whitened / len(whitened)
    # The epsilon shrinks each direction by eigenvalue / (eigenvalue + epsilon); all are large here.
    np.testing.assert_allclose(second_moment, np.eye(12), atol=0.02)
    raw = patch_matrix(normalized(images, stats))
    assert np.abs(np.corrcoef(raw.T) - np.eye(12)).max() > 0.5


def test_whitening_works_for_one_channel_and_for_rescaled_pixels():
    images = correlated_images(shape=(12, 12, 1))
    kernel = patch_whitening_kernel(images, None)
    assert kernel.shape == (2, 2, 1, 8)
    assert np.isfinite(kernel).all()


def test_whitened_network_freezes_its_first_layer_and_survives_save_and_load(tmp_path):
    images = correlated_images(count=64)
    labels = np.arange(64) % 3
    stats = channel_statistics(images)
    kernel = patch_whitening_kernel(images, stats)
    model = build_model(whitening_config(), SHAPE, 3, channel_stats=stats, whitening_kernel=kernel)
    whiten = model.get_layer("whiten")
    assert not whiten.trainable and whiten.get_config()["padding"] == "valid"
    assert model.get_layer("block1_conv1").input.shape[1:] == (15, 15, 24)
    model.compile(keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=1, batch_size=16, verbose=0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(whiten.kernel), kernel)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)


def test_whitening_without_its_kernel_or_on_tiny_images_is_refused():
    stats = ([128.0] * 3, [900.0] * 3)
    with pytest.raises(ValueError, match="whitening_kernel of shape"):
        build_model(whitening_config(), SHAPE, 3, channel_stats=stats)
    with pytest.raises(ValueError, match="whitening_kernel of shape"):
        build_model(whitening_config(), SHAPE, 3, channel_stats=stats, whitening_kernel=np.zeros((2, 2, 1, 8)))
    with pytest.raises(UnsuitableInputError, match="at least 9x9 pixels"):
        build_model(whitening_config(), (8, 8, 3), 3, channel_stats=stats, whitening_kernel=np.zeros((2, 2, 3, 24)))


def test_whitening_samples_the_whole_split_even_when_it_is_stored_class_by_class():
    smooth = correlated_images(count=6000, seed=1)
    noisy = np.random.default_rng(2).integers(0, 256, size=smooth.shape, dtype=np.uint8)
    stored_by_class = np.concatenate([smooth, noisy])
    from_both = patch_whitening_kernel(stored_by_class, None)
    from_first_class = patch_whitening_kernel(smooth, None)
    assert not np.allclose(from_both, from_first_class, rtol=0.1, atol=0.1)
