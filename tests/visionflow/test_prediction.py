"""Prediction: batched class probabilities, and flip test-time augmentation as the mean with the mirror."""

from __future__ import annotations

import keras
import numpy as np

from visionflow.prediction import predict_probabilities, uses_flip_tta

SHAPE = (4, 6, 3)


def tiny_model(classes: int = 3, seed: int = 7) -> keras.Model:
    """uint8 input, rescaled, flattened, one softmax layer with seeded weights: not flip-invariant."""
    inputs = keras.Input(shape=SHAPE, dtype="uint8")
    hidden = keras.layers.Flatten()(keras.layers.Rescaling(1.0 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(hidden))
    kernel = np.random.default_rng(seed).normal(0.0, 1.0, size=(int(np.prod(SHAPE)), classes)).astype(np.float32)
    model.layers[-1].set_weights([kernel, np.zeros(classes, dtype=np.float32)])
    return model


def random_images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, *SHAPE), dtype=np.uint8)


def test_predictions_are_batched_probabilities_and_flip_tta_is_the_mean_with_the_mirror():
    model = tiny_model()
    images = random_images(7)
    plain = predict_probabilities(model, images, 3)
    assert plain.shape == (7, 3) and plain.dtype == np.float32
    np.testing.assert_allclose(plain.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(plain, model.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    mirrored = predict_probabilities(model, images[:, :, ::-1, :].copy(), 3)
    assert not np.allclose(plain, mirrored, atol=1e-3), "the test model must not be flip-invariant"
    tta = predict_probabilities(model, images, 3, flip_tta=True)
    np.testing.assert_allclose(tta, (plain + mirrored) / 2, rtol=1e-5, atol=1e-6)


def test_no_images_give_an_empty_table_with_a_column_per_class():
    empty = predict_probabilities(tiny_model(classes=4), random_images(0), 8)
    assert empty.shape == (0, 4) and empty.dtype == np.float32


def test_flip_tta_follows_the_model_unless_asked():
    inputs = keras.Input((4, 4, 3), dtype="uint8")
    features = keras.layers.Rescaling(1 / 255)(inputs)
    flat = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(features)))
    flipped = keras.layers.RandomFlip("horizontal")(features)
    trained_with_flips = keras.Model(
        inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(flipped))
    )
    assert uses_flip_tta(flat, None) is False
    assert uses_flip_tta(trained_with_flips, None) is True
    assert uses_flip_tta(trained_with_flips, False) is False
    assert uses_flip_tta(flat, True) is True
