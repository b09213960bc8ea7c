"""The fused-training BatchNorm computes what Keras' BatchNormalization computes, and is saved as it."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from visionflow.network.build_model import ModelConfig, build_model
from visionflow.network.fused_batch_norm import FUSED_CLASS_NAME, FusedBatchNormalization
from visionflow.tasks.train.train_model import without_training_state

SHAPE = (12, 12, 3)


def twin_layers(dtype: str = "float32", **settings):
    """A fused and a plain BatchNorm with the same settings and the same (non-trivial) weights."""
    fused = FusedBatchNormalization(dtype=dtype, **settings)
    plain = keras.layers.BatchNormalization(dtype=dtype, **settings)
    shape = (4, 5, 5, 6)
    fused.build(shape)
    plain.build(shape)
    generator = np.random.default_rng(1)
    weights = [generator.uniform(0.5, 1.5, size=weight.shape).astype("float32") for weight in plain.get_weights()]
    fused.set_weights(weights)
    plain.set_weights(weights)
    return fused, plain


def activations(shape=(4, 5, 5, 6), seed: int = 0) -> np.ndarray:
    """Activations with a mean and spread per channel far from 0 and 1, so a wrong statistic shows."""
    generator = np.random.default_rng(seed)
    return (generator.normal(size=shape) * np.arange(1, shape[-1] + 1) + 3.0).astype("float32")


def output_and_gradients(layer, inputs: np.ndarray):
    """The layer's training output, and the gradients of a fixed weighted sum of it by input and weights."""
    inputs = tf.constant(inputs)
    weighting = tf.constant(activations(inputs.shape, seed=2))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs, training=True)
        loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * weighting)
    gradients = tape.gradient(loss, [inputs, *layer.trainable_variables])
    return [np.asarray(value, dtype="float32") for value in [outputs, *gradients]]


@pytest.mark.parametrize("settings", [{}, {"scale": False}, {"center": False, "momentum": 0.6}])
def test_training_step_matches_keras_batchnorm_in_float32(settings):
    fused, plain = twin_layers(**settings)
    inputs = activations()
    fused_values, plain_values = output_and_gradients(fused, inputs), output_and_gradients(plain, inputs)
    for fused_value, plain_value in zip(fused_values, plain_values, strict=True):
        np.testing.assert_allclose(fused_value, plain_value, rtol=1e-4, atol=1e-4)
    # The running statistics move the same way, with the batch's biased variance as Keras keeps it.
    for fused_weight, plain_weight in zip(fused.non_trainable_weights, plain.non_trainable_weights, strict=True):
        np.testing.assert_allclose(np.asarray(fused_weight), np.asarray(plain_weight), rtol=1e-5)
    assert not np.allclose(np.asarray(fused.moving_mean), 1.0, atol=0.05)


def test_training_step_matches_keras_batchnorm_in_mixed_bfloat16():
    fused, plain = twin_layers(dtype="mixed_bfloat16")
    inputs = activations()
    fused_values, plain_values = output_and_gradients(fused, inputs), output_and_gradients(plain, inputs)
    assert fused(inputs, training=True).dtype == plain(inputs, training=True).dtype == "bfloat16"
    for fused_value, plain_value in zip(fused_values, plain_values, strict=True):
        # bfloat16 keeps 8 bits of mantissa: about 0.4 % per rounding.
        scale = np.abs(plain_value).max()
        np.testing.assert_allclose(fused_value, plain_value, atol=0.03 * scale)


def test_inference_uses_the_moving_statistics_exactly_as_keras_does():
    fused, plain = twin_layers()
    inputs = activations()
    np.testing.assert_array_equal(np.asarray(fused(inputs, training=False)), np.asarray(plain(inputs, training=False)))


@pytest.mark.parametrize(
    ("settings", "shape"),
    [
        ({"epsilon": 1e-6}, (4, 5, 5, 6)),
        ({"synchronized": True}, (4, 5, 5, 6)),
        ({"renorm": True}, (4, 5, 5, 6)),
        ({}, (4, 6)),
    ],
)
def test_what_the_fused_kernel_cannot_compute_falls_back_to_keras(settings, shape):
    fused = FusedBatchNormalization(**settings)
    plain = keras.layers.BatchNormalization(**settings)
    inputs = activations(shape)
    fused(inputs[:1], training=False), plain(inputs[:1], training=False)
    assert not fused._fusable(tf.constant(inputs), None)
    np.testing.assert_array_equal(np.asarray(fused(inputs, training=True)), np.asarray(plain(inputs, training=True)))


def test_a_keras_without_batch_renormalisation_still_trains_through_the_fused_kernel():
    layer = FusedBatchNormalization()
    inputs = tf.constant(activations())
    layer(inputs, training=False)
    del layer.renorm  # Keras 3 releases before batch renormalisation have no such attribute.
    assert not hasattr(layer, "renorm") and layer._fusable(inputs, None)


def test_build_model_uses_it_only_when_configured():
    stats = ([0.0] * 3, [1.0] * 3)
    fused = build_model(ModelConfig(conv_filters=[8, 8], stem_filters=4), SHAPE, 3, channel_stats=stats)
    plain_config = ModelConfig(conv_filters=[8, 8], stem_filters=4, fused_batchnorm=False)
    plain = build_model(plain_config, SHAPE, 3, channel_stats=stats)
    assert any(isinstance(layer, FusedBatchNormalization) for layer in fused.layers)
    assert not any(isinstance(layer, FusedBatchNormalization) for layer in plain.layers)
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers) == sum(
        isinstance(layer, keras.layers.BatchNormalization) for layer in fused.layers
    )


def test_the_saved_model_has_only_keras_layers_and_predicts_the_same(tmp_path):
    config = ModelConfig(conv_filters=[8, 8], stem_filters=4)
    model = build_model(config, SHAPE, 3, channel_stats=([100.0] * 3, [900.0] * 3))
    images = np.random.default_rng(0).integers(0, 256, size=(16, *SHAPE), dtype=np.uint8)
    model.compile(keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    model.fit(images, np.arange(16) % 3, epochs=1, batch_size=8, verbose=0)
    saved = without_training_state(model)
    assert FUSED_CLASS_NAME not in str(saved.get_config())
    path = tmp_path / "model.keras"
    saved.save(path)
    # A fresh interpreter that never imports visionflow, as a user's own script would be.
    script = "import sys, keras; print(type(keras.models.load_model(sys.argv[1], safe_mode=True)).__name__)"
    loaded = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    reloaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)


def test_a_network_trained_with_it_ends_where_keras_batchnorm_ends():
    images = np.random.default_rng(3).integers(0, 256, size=(32, *SHAPE), dtype=np.uint8)
    labels = np.arange(32) % 3
    predictions = []
    for fused in (True, False):
        keras.utils.set_random_seed(0)
        config = ModelConfig(conv_filters=[8, 8], stem_filters=4, precision="float32", fused_batchnorm=fused)
        model = build_model(
            config.model_copy(update={"augment": False}), SHAPE, 3, channel_stats=([100.0] * 3, [900.0] * 3)
        )
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
        model.fit(images, labels, epochs=3, batch_size=8, shuffle=False, verbose=0)
        predictions.append(model.predict(images, verbose=0))
    # Twelve steps of the same arithmetic in another order: the probabilities agree to rounding.
    np.testing.assert_allclose(predictions[0], predictions[1], atol=2e-3)
    assert np.abs(predictions[0] - 1 / 3).max() > 0.05
