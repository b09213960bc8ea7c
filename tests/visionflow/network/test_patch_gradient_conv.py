"""The shifted-products weight gradient equals TensorFlow's, and its layer takes it only where it should."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from visionflow.network import patch_gradient_conv
from visionflow.network.build_model import ModelConfig, build_model
from visionflow.network.hardware import GpuFacts, MachineFacts
from visionflow.network.patch_gradient_conv import (
    PatchGradientConv2D,
    convolve_with_patch_gradient,
    largest_patch_gradient_side,
    patch_weight_gradient,
)

from tests.visionflow.network.rounding_bounds import assert_kernel_gradient_within_rounding

INPUT_SHAPE = (2, 7, 7, 5)


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


def test_the_convolution_computes_and_differentiates_as_tensorflows_does():
    generator = np.random.default_rng(1)
    inputs = tf.constant(generator.standard_normal(INPUT_SHAPE), tf.float32)
    kernel = tf.Variable(generator.standard_normal((3, 3, 5, 6)), dtype=tf.float32)
    results = []
    for convolve in (convolve_with_patch_gradient, lambda x, k: tf.nn.conv2d(x, k, strides=1, padding="SAME")):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = convolve(inputs, kernel)
            loss = tf.reduce_sum(outputs**2)
        results.append([outputs.numpy(), *(gradient.numpy() for gradient in tape.gradient(loss, [inputs, kernel]))])
    for computed, expected in zip(*results, strict=True):
        np.testing.assert_allclose(computed, expected, rtol=1e-4, atol=1e-3)


@pytest.fixture
def counted_patch_products(monkeypatch) -> list[int]:
    """Every call of the shifted-products convolution, counted; this machine's rule set to 7 pixels."""
    calls = []

    def counting(inputs, kernel):
        calls.append(1)
        return convolve_with_patch_gradient(inputs, kernel)

    monkeypatch.setattr(patch_gradient_conv, "convolve_with_patch_gradient", counting)
    monkeypatch.setattr(patch_gradient_conv, "largest_patch_gradient_side", lambda: 7)
    return calls


def layer_gradients(layer, inputs):
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs)
        loss = tf.reduce_sum(tf.cast(outputs, tf.float32) ** 2)
    gradients = tape.gradient(loss, [inputs, *layer.trainable_variables])
    return [tf.cast(tensor, tf.float32).numpy() for tensor in (outputs, *gradients)]


def test_the_layer_takes_the_products_in_bfloat16_and_matches_conv2d(counted_patch_products):
    settings = {"filters": 6, "kernel_size": 3, "padding": "same", "use_bias": True, "dtype": "mixed_bfloat16"}
    patched, plain = PatchGradientConv2D(**settings), keras.layers.Conv2D(**settings)
    patched.build(INPUT_SHAPE)
    plain.build(INPUT_SHAPE)
    plain.set_weights(patched.get_weights())
    inputs = tf.constant(np.random.default_rng(1).standard_normal(INPUT_SHAPE), tf.float32)
    computed, expected = layer_gradients(patched, inputs), layer_gradients(plain, inputs)
    assert counted_patch_products == [1]
    # The output, the input gradient and the bias gradient are Conv2D's own ops: equal bit for bit.
    for index in (0, 1, 3):
        np.testing.assert_array_equal(computed[index], expected[index])
    # The kernel gradient is the layer's own, held to the exact sum of its bfloat16 operands (the
    # inputs as the layer casts them, and the loss's gradient 2 x outputs), not to Conv2D's.
    operands = tf.cast(inputs, tf.bfloat16), 2 * computed[0]
    assert_kernel_gradient_within_rounding(computed[2], *operands, "kernel gradient")


@pytest.mark.parametrize(
    "settings",
    [{"dtype": "float32"}, {"strides": 2}, {"padding": "valid"}, {"kernel_size": (3, 1)}],
    ids=["float32", "strides", "valid", "not-square"],
)
def test_other_convolutions_run_conv2ds_own_code(settings, counted_patch_products):
    settings = {"filters": 6, "kernel_size": 3, "padding": "same", "dtype": "mixed_bfloat16", **settings}
    layer = PatchGradientConv2D(**settings)
    layer(tf.zeros(INPUT_SHAPE))
    assert counted_patch_products == []


def test_larger_images_than_the_machines_rule_run_conv2ds_own_code(counted_patch_products):
    layer = PatchGradientConv2D(filters=4, kernel_size=3, padding="same", dtype="mixed_bfloat16")
    layer(tf.zeros((1, 8, 7, 3)))
    assert counted_patch_products == []
    assert layer.patch_product_applies((1, 7, 7, 3)) and not layer.patch_product_applies((1, None, None, 3))


@pytest.mark.parametrize(
    ("flags", "gpus", "side"),
    [({"amx_bf16", "avx512_bf16"}, [], 7), ({"avx512_bf16"}, [], 0), ({"amx_bf16"}, [GpuFacts(name="GPU:0")], 0)],
    ids=["amx", "avx512-only", "gpu"],
)
def test_the_machines_rule(monkeypatch, flags, gpus, side):
    facts = MachineFacts(flags=sorted(flags), gpus=gpus)
    monkeypatch.setattr(patch_gradient_conv, "read_machine_facts", lambda: facts)
    largest_patch_gradient_side.cache_clear()
    try:
        assert largest_patch_gradient_side() == side
    finally:
        largest_patch_gradient_side.cache_clear()


def test_build_model_gives_every_block_conv_the_layer_unless_switched_off():
    settings = {"conv_filters": [4, 8], "stem_filters": 0}
    stats = ([0.0] * 3, [1.0] * 3)
    model = build_model(ModelConfig(**settings), (12, 12, 3), 3, channel_stats=stats)
    patched = [layer.name for layer in model.layers if isinstance(layer, PatchGradientConv2D)]
    assert patched == ["block1_conv1", "block1_2_conv", "block2_conv1", "block2_2_conv"]
    model = build_model(ModelConfig(**settings, patch_weight_gradient=False), (12, 12, 3), 3, channel_stats=stats)
    assert not any(isinstance(layer, PatchGradientConv2D) for layer in model.layers)


def test_weights_saved_on_one_machine_load_on_another(monkeypatch, tmp_path):
    # Keras files weights by layer class, so a backup restores only where the same classes are
    # built: the machine's rule must not change them (a run may resume on another machine).
    config = ModelConfig(conv_filters=[4, 8], stem_filters=0, precision="mixed_bfloat16")
    stats = ([0.0] * 3, [1.0] * 3)
    monkeypatch.setattr(patch_gradient_conv, "largest_patch_gradient_side", lambda: 7)
    saved = build_model(config, (12, 12, 3), 3, channel_stats=stats)
    saved.save_weights(tmp_path / "backup.weights.h5")
    monkeypatch.setattr(patch_gradient_conv, "largest_patch_gradient_side", lambda: 0)
    restored = build_model(config, (12, 12, 3), 3, channel_stats=stats)
    restored.load_weights(tmp_path / "backup.weights.h5")
    for saved_weights, restored_weights in zip(saved.get_weights(), restored.get_weights(), strict=True):
        np.testing.assert_array_equal(saved_weights, restored_weights)
