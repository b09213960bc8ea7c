"""A trained model's training-only layers compute what the Keras layers they stand in for compute, and become them
when it is saved."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from visionflow.network import patch_gradient_conv
from visionflow.network.build_model import ModelConfig, build_model
from visionflow.network.plain_layers import BUILT_IN_EQUIVALENTS, plain_layers_config
from visionflow.tasks.train.train_model import without_training_state

from tests.visionflow.network.rounding_bounds import (
    BFLOAT16_ROUNDING,
    as_float64,
    assert_kernel_gradient_within_rounding,
    assert_within,
    within_rounding,
)

SHAPE = (12, 12, 3)
STATS = ([100.0] * 3, [900.0] * 3)
# Fused BatchNorm, and in bfloat16 the shifted-products weight gradient on the convs that see 6x6
# and 3x3 pixels: both training-only layers.
CONFIG = ModelConfig(conv_filters=[8, 8], stem_filters=4, precision="mixed_bfloat16", augment=False)
PATCHED_CONVS = {"block1_2_conv", "block2_conv1", "block2_2_conv"}

# BatchNorm's results pass through at most four float32 sums on their way (the input gradient: the
# mean, the variance, and two means of the gradient), and carry each one's error.
BATCH_NORM_SUMS = 4


def test_plain_layers_config_leaves_other_layers_alone_and_refuses_a_non_functional_config():
    entries = [{"class_name": "Conv2D", "module": "keras.layers", "name": "conv"}]
    assert plain_layers_config({"name": "m", "layers": entries})["layers"] == entries
    with pytest.raises(ValueError, match="functional model"):
        plain_layers_config({"name": "sequential without layers"})


def network_step(model: keras.Model, names: list[str], images: np.ndarray, labels: np.ndarray):
    """Each named layer's input, and the loss's gradient at its output, in one training step of model."""
    taken = [model.get_layer(name) for name in names]
    tapped = keras.Model(
        model.input, [model.output, *(layer.input for layer in taken), *(layer.output for layer in taken)]
    )
    with tf.GradientTape() as tape:
        probabilities, *taps = tapped(images, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, probabilities))
    return taps[: len(names)], tape.gradient(loss, taps[len(names) :])


def keras_twin(layer: keras.layers.Layer, input_shape) -> keras.layers.Layer:
    """The keras.layers layer a training-only layer is saved as, from its configuration, with its weights."""
    twin = getattr(keras.layers, BUILT_IN_EQUIVALENTS[type(layer).__name__]).from_config(layer.get_config())
    twin.build(input_shape)
    twin.set_weights(layer.get_weights())
    return twin


def layer_step(layer: keras.layers.Layer, inputs, output_gradient) -> list[tf.Tensor]:
    """The layer's training output, the gradients by its input and trainable weights, its other weights after."""
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs, training=True)
    gradients = tape.gradient(outputs, [inputs, *layer.trainable_variables], output_gradients=output_gradient)
    return [outputs, *gradients, *(tf.convert_to_tensor(weight) for weight in layer.non_trainable_variables)]


def check_conv(layer, inputs, output_gradient) -> bool:
    """Compare a PatchGradientConv2D's training step with Conv2D's; whether it took the shifted products."""
    computed = layer_step(layer, inputs, output_gradient)
    expected = layer_step(keras_twin(layer, inputs.shape), inputs, output_gradient)
    patched = layer.patch_product_applies(inputs.shape)
    # The forward pass and the input gradient are Conv2D's own ops on the same operands: equal bit
    # for bit. So is the kernel gradient where the layer left it to Conv2D.
    for computed_part, expected_part in zip(computed[: 2 if patched else None], expected, strict=False):
        np.testing.assert_array_equal(computed_part.numpy(), expected_part.numpy(), err_msg=layer.name)
    if patched:
        # Its own kernel gradient is held to the exact sum, not to Conv2D's (rounding_bounds.py).
        assert_kernel_gradient_within_rounding(computed[2], inputs, output_gradient, f"{layer.name} kernel gradient")
    return patched


def batch_norm_exact(layer, inputs, output_gradient) -> list[tuple[np.ndarray, np.ndarray]]:
    """BatchNormalization's training step in float64, as layer_step lists it, each result with its condition."""
    x, g = as_float64(inputs), as_float64(output_gradient)
    gamma, beta = (np.asarray(weight, np.float64) for weight in (layer.gamma, layer.beta))
    moving_mean, moving_variance = (np.asarray(weight, np.float64) for weight in layer.non_trainable_variables)
    axes, momentum = (0, 1, 2), layer.momentum
    mean, root = x.mean(axes), np.sqrt(x.var(axes) + layer.epsilon)
    normalised = (x - mean) / root
    # Bounds |normalised| and, in units of root, the terms its mean and variance add up.
    spread = (np.abs(x) + np.abs(x).mean(axes)) / root
    size = np.abs(g)
    return [
        (normalised * gamma + beta, spread * np.abs(gamma) + np.abs(beta)),
        (
            gamma / root * (g - g.mean(axes) - normalised * (g * normalised).mean(axes)),
            np.abs(gamma) / root * (size + size.mean(axes) + spread * (size * spread).mean(axes)),
        ),
        ((g * normalised).sum(axes), (size * spread).sum(axes)),
        (g.sum(axes), size.sum(axes)),
        # Keras keeps the batch's biased variance in its running statistics.
        (
            momentum * moving_mean + (1 - momentum) * mean,
            momentum * np.abs(moving_mean) + (1 - momentum) * np.abs(x).mean(axes),
        ),
        (
            momentum * moving_variance + (1 - momentum) * x.var(axes),
            momentum * np.abs(moving_variance) + (1 - momentum) * ((spread * root) ** 2).mean(axes),
        ),
    ]


def check_batch_norm(layer, inputs, output_gradient) -> None:
    """FusedBatchNormalization's training step, and BatchNormalization's, within rounding of the exact one."""
    exact = batch_norm_exact(layer, inputs, output_gradient)
    twin = keras_twin(layer, inputs.shape)
    terms = np.prod(inputs.shape[:3])
    for source in (layer, twin):
        computed = layer_step(source, inputs, output_gradient)
        for index, (result, (value, condition)) in enumerate(zip(computed, exact, strict=True)):
            rounding = BFLOAT16_ROUNDING if result.dtype == tf.bfloat16 else 0.0
            bound = within_rounding(value, condition, BATCH_NORM_SUMS * terms, rounding)
            assert_within(result, value, bound, f"{layer.name} as {type(source).__name__}, result {index}")


def move_batch_norm_weights_off_their_start(model: keras.Model) -> None:
    """Scales and shifts away from 1 and 0, so a BatchNorm that mishandled either would show."""
    generator = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.gamma.assign(generator.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(generator.uniform(-0.5, 0.5, layer.beta.shape))


def test_the_training_only_layers_train_as_keras_layers_do_and_save_as_them(monkeypatch, tmp_path):
    monkeypatch.setattr(patch_gradient_conv, "largest_patch_gradient_side", lambda: 6)
    keras.utils.set_random_seed(0)
    model = build_model(CONFIG, SHAPE, 3, channel_stats=STATS)
    move_batch_norm_weights_off_their_start(model)
    images = np.random.default_rng(0).integers(0, 256, size=(32, *SHAPE), dtype=np.uint8)
    labels = np.arange(32) % 3
    names = [layer.name for layer in model.layers if type(layer).__name__ in BUILT_IN_EQUIVALENTS]
    assert {type(model.get_layer(name)).__name__ for name in names} == set(BUILT_IN_EQUIVALENTS)
    # Each layer is compared on its own, fed the activations and the output gradient the network
    # gives it in one training step. Compared network against network, one bfloat16 rounding apart
    # in a layer becomes another max-pool's choice in the next, and no bound follows from the
    # arithmetic; layer by layer, each is held to its own (rounding_bounds.py).
    patched = set()
    for name, inputs, output_gradient in zip(names, *network_step(model, names, images, labels), strict=True):
        layer = model.get_layer(name)
        if isinstance(layer, keras.layers.Conv2D):
            patched |= {name} if check_conv(layer, inputs, output_gradient) else set()
        else:
            check_batch_norm(layer, inputs, output_gradient)
    assert patched == PATCHED_CONVS
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=2, batch_size=8, verbose=0)
    saved = without_training_state(model)
    assert not set(BUILT_IN_EQUIVALENTS) & {type(layer).__name__ for layer in saved.layers}
    path = tmp_path / "model.keras"
    saved.save(path)
    # A fresh interpreter that never imports visionflow, as a user's own script would be.
    script = "import sys, keras; print(type(keras.models.load_model(sys.argv[1], safe_mode=True)).__name__)"
    loaded = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    reloaded = keras.models.load_model(path, safe_mode=True)
    # Predicting, both run Keras' own ops on the same weights: any difference is not rounding.
    np.testing.assert_array_equal(reloaded.predict(images, verbose=0), model.predict(images, verbose=0))
