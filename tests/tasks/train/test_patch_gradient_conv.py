"""The shifted-products weight gradient equals oneDNN's, and its layer trains and saves as Keras' Conv2D."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from visionflow.tasks.train import patch_gradient_conv
from visionflow.tasks.train.build_model import ModelConfig, build_model
from visionflow.tasks.train.patch_gradient_conv import PatchGradientConv2D, conv2d, patch_weight_gradient


@pytest.mark.parametrize(("side", "kernel_side", "channels", "filters"), [(7, 3, 5, 6), (3, 3, 4, 4), (6, 5, 3, 2)])
def test_the_weight_gradient_equals_tensorflows_kernel(side, kernel_side, channels, filters):
    generator = np.random.default_rng(side)
    inputs = tf.constant(generator.standard_normal((4, side, side + 1, channels)), tf.float32)
    output_gradient = tf.constant(generator.standard_normal((4, side, side + 1, filters)), tf.float32)
    kernel_shape = (kernel_side, kernel_side, channels, filters)
    expected = tf.raw_ops.Conv2DBackpropFilter(
        input=inputs,
        filter_sizes=list(kernel_shape),
        out_backprop=output_gradient,
        strides=[1, 1, 1, 1],
        padding="SAME",
    )
    computed = patch_weight_gradient(inputs, output_gradient, kernel_shape)
    np.testing.assert_allclose(computed.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def twin_convs(dtype: str = "float32", **settings):
    """A PatchGradientConv2D and a Conv2D with the same settings and weights, built for (2, 7, 7, 5) inputs."""
    settings = {"filters": 6, "kernel_size": 3, "padding": "same", **settings}
    patched, plain = PatchGradientConv2D(dtype=dtype, **settings), keras.layers.Conv2D(dtype=dtype, **settings)
    patched.build((2, 7, 7, 5))
    plain.build((2, 7, 7, 5))
    plain.set_weights(patched.get_weights())
    return patched, plain


def outputs_and_gradients(layer, inputs):
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs)
        loss = tf.reduce_sum(tf.cast(outputs, tf.float32) ** 2)
    input_gradient, *weight_gradients = tape.gradient(loss, [inputs, *layer.trainable_variables])
    return [tf.cast(tensor, tf.float32).numpy() for tensor in (outputs, input_gradient, *weight_gradients)]


@pytest.mark.parametrize(
    ("dtype", "tolerance"), [("float32", 1e-4), ("mixed_bfloat16", 3e-2)], ids=["float32", "bfloat16"]
)
def test_the_layer_computes_and_differentiates_as_conv2d_does(dtype, tolerance):
    patched, plain = twin_convs(dtype, use_bias=True)
    assert patched._patch_product_applies()
    inputs = tf.constant(np.random.default_rng(1).standard_normal((2, 7, 7, 5)), tf.float32)
    for computed, expected in zip(
        outputs_and_gradients(patched, inputs), outputs_and_gradients(plain, inputs), strict=True
    ):
        scale = max(np.abs(expected).max(), 1.0)
        np.testing.assert_allclose(computed / scale, expected / scale, atol=tolerance)


@pytest.mark.parametrize("settings", [{"strides": 2}, {"padding": "valid"}, {"kernel_size": (3, 1)}])
def test_other_convolutions_fall_back_to_conv2ds_own_code(settings):
    patched, plain = twin_convs(**settings)
    assert not patched._patch_product_applies()
    inputs = tf.constant(np.random.default_rng(2).standard_normal((2, 7, 7, 5)), tf.float32)
    for computed, expected in zip(
        outputs_and_gradients(patched, inputs), outputs_and_gradients(plain, inputs), strict=True
    ):
        np.testing.assert_allclose(computed, expected, rtol=1e-5, atol=1e-5)


def test_conv2d_picks_the_layer_by_the_machines_largest_side(monkeypatch):
    monkeypatch.setattr(patch_gradient_conv, "largest_patch_gradient_side", lambda: 7)
    assert type(conv2d(True, 7, filters=4, kernel_size=3, padding="same")) is PatchGradientConv2D
    assert type(conv2d(True, 15, filters=4, kernel_size=3, padding="same")) is keras.layers.Conv2D
    assert type(conv2d(False, 3, filters=4, kernel_size=3, padding="same")) is keras.layers.Conv2D
    monkeypatch.setattr(patch_gradient_conv, "largest_patch_gradient_side", lambda: 0)
    assert type(conv2d(True, 3, filters=4, kernel_size=3, padding="same")) is keras.layers.Conv2D


def patched_layer_names(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers if isinstance(layer, PatchGradientConv2D)]


def test_build_model_uses_it_on_small_images_in_bfloat16_only(monkeypatch):
    monkeypatch.setattr(patch_gradient_conv, "largest_patch_gradient_side", lambda: 7)
    stats = ([0.0] * 3, [1.0] * 3)
    # 28x28 images: the blocks' convs see 28, 14 (after the first pool), 14, 7, 7 and 3 pixels.
    settings = {"conv_filters": [4, 8, 8], "stem_filters": 0, "precision": "mixed_bfloat16"}
    model = build_model(ModelConfig(**settings), (28, 28, 3), 3, channel_stats=stats)
    assert patched_layer_names(model) == ["block2_2_conv", "block3_conv1", "block3_2_conv"]
    for changed in ({"precision": "float32"}, {"patch_weight_gradient": False}):
        model = build_model(ModelConfig(**{**settings, **changed}), (28, 28, 3), 3, channel_stats=stats)
        assert patched_layer_names(model) == []
