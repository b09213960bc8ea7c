"""The networks: exact seed architecture, uint8 input normalised inside, augmentation, bad inputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from visionflow.errors import BadInputError
from visionflow.network.build_model import (
    ModelConfig,
    UnsuitableInputError,
    build_model,
    channel_statistics,
    resolve_precision,
)
from visionflow.network.initializers import patch_whitening_kernel
from visionflow.tasks.train.recipe.presets import PRESETS

SHAPE = (16, 16, 3)


def random_images(count: int = 5, shape=SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, *shape), dtype=np.uint8)


@pytest.mark.parametrize("preset_name", sorted(PRESETS))
def test_every_preset_maps_uint8_images_to_class_probabilities(preset_name):
    images = random_images()
    config = PRESETS[preset_name].model
    stats = channel_statistics(images)
    whitening = patch_whitening_kernel(images, stats) if config.whiten else None
    model = build_model(config, SHAPE, 4, channel_stats=stats, whitening_kernel=whitening)
    assert model.inputs[0].dtype == "uint8"
    assert tuple(model.inputs[0].shape) == (None, *SHAPE)
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (5, 4)
    assert probabilities.dtype == np.float32
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_seed_network_is_exactly_the_classic_keras_cifar10_cnn():
    model = build_model(PRESETS["seed"].model, (32, 32, 3), 10)
    described = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            described.append((kind, layer.filters, layer.kernel_size, layer.padding, layer.activation.__name__))
        elif kind == "MaxPooling2D":
            described.append((kind, layer.pool_size))
        elif kind == "Dropout":
            described.append((kind, layer.rate))
        elif kind == "Dense":
            described.append((kind, layer.units, layer.activation.__name__))
        else:
            described.append((kind,))
    assert described == [
        ("InputLayer",),
        ("Rescaling",),
        ("Conv2D", 32, (3, 3), "same", "relu"),
        ("MaxPooling2D", (2, 2)),
        ("Dropout", 0.25),
        ("Conv2D", 64, (3, 3), "same", "relu"),
        ("MaxPooling2D", (2, 2)),
        ("Dropout", 0.25),
        ("Flatten",),
        ("Dense", 512, "relu"),
        ("Dropout", 0.5),
        ("Dense", 10, "softmax"),
    ]
    assert model.get_layer("rescale").scale == pytest.approx(1 / 255)
    # The classic CNN's parameter count: 896 + 18,496 + 2,097,664 + 5,130.
    assert model.count_params() == 2_122_186


def test_rescaling_and_standardisation_happen_inside_the_model():
    images = np.stack([np.full(SHAPE, value, dtype=np.uint8) for value in (0, 51, 255)])
    rescaled = build_model(PRESETS["seed"].model, SHAPE, 3)
    rescale_output = keras.Model(rescaled.inputs, rescaled.get_layer("rescale").output).predict(images, verbose=0)
    np.testing.assert_allclose(rescale_output[:, 0, 0, 0], [0.0, 0.2, 1.0], atol=1e-6)

    mean, variance = [51.0, 100.0, 0.0], [4.0, 25.0, 1.0]
    config = ModelConfig(precision="float32")
    standardized = build_model(config, SHAPE, 3, channel_stats=(mean, variance))
    output = keras.Model(standardized.inputs, standardized.get_layer("standardize").output).predict(images, verbose=0)
    np.testing.assert_allclose(output[1, 0, 0], [(51 - 51) / 2, (51 - 100) / 5, 51.0], rtol=1e-5)


def test_channel_statistics_match_numpy():
    images = random_images(count=9)
    mean, variance = channel_statistics(images)
    pixels = images.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(mean, pixels.mean(axis=0))
    np.testing.assert_allclose(variance, pixels.var(axis=0))


def test_augmentation_is_switchable_and_inactive_at_inference():
    images = random_images()
    augmented_config = ModelConfig(architecture="classic_cnn", conv_filters=[4], normalization="rescale", augment=True)
    names = [layer.name for layer in build_model(augmented_config, SHAPE, 3).layers]
    assert "random_crop" in names and "random_flip" in names
    plain = build_model(augmented_config.model_copy(update={"augment": False}), SHAPE, 3)
    assert not {"random_crop", "random_flip"} & {layer.name for layer in plain.layers}

    model = build_model(augmented_config, SHAPE, 3)
    crop_and_flip = keras.Model(model.inputs, model.get_layer("random_flip").output)
    inference = crop_and_flip([images], training=False)
    np.testing.assert_allclose(inference, images / 255.0, atol=1e-6)
    training = crop_and_flip([images], training=True)
    assert not np.allclose(training, images / 255.0)


def test_an_image_too_small_for_the_network_is_refused_with_the_minimum_size():
    with pytest.raises(ValueError, match="at least 4x4 pixels"):
        build_model(PRESETS["seed"].model, (3, 3, 3), 10)
    with pytest.raises(UnsuitableInputError, match="at least 9x9 pixels"):
        build_model(PRESETS["default"].model, (8, 8, 3), 10, channel_stats=([0.0] * 3, [1.0] * 3))
    with pytest.raises(UnsuitableInputError, match="at least 8x8 pixels"):
        build_model(ModelConfig(), (6, 6, 3), 10, channel_stats=([0.0] * 3, [1.0] * 3))


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="at least 2 classes") as raised:
        build_model(PRESETS["tiny"].model, SHAPE, 1)
    assert isinstance(raised.value, BadInputError)


def test_standardisation_without_statistics_is_a_clear_error():
    with pytest.raises(ValueError, match="channel_stats"):
        build_model(PRESETS["default"].model, SHAPE, 3)


def test_precision_policy_is_explicit_or_follows_the_hardware():
    assert resolve_precision(ModelConfig(precision="float32")) == "float32"
    assert resolve_precision(ModelConfig(precision="auto")) in {"float32", "mixed_bfloat16"}
    model = build_model(ModelConfig(precision="mixed_bfloat16"), SHAPE, 3, channel_stats=([0.0] * 3, [1.0] * 3))
    assert model.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert model.get_layer("probabilities").compute_dtype == "float32"


def test_the_airbench_net_can_drop_its_stem_and_use_relu():
    config = ModelConfig(stem_filters=0, activation="relu", precision="float32")
    model = build_model(config, SHAPE, 3, channel_stats=([0.0] * 3, [1.0] * 3))
    names = {layer.name for layer in model.layers}
    assert "stem_conv" not in names and "block1_conv1" in names
    assert model.get_layer("block1_2_relu").get_config()["activation"] == "relu"
    assert not any("gelu" in name for name in names)


def test_batchnorm_can_keep_its_scale_at_one_as_airbench_does():
    stats = ([0.0] * 3, [1.0] * 3)
    learned = build_model(ModelConfig(precision="float32"), SHAPE, 3, channel_stats=stats)
    fixed = build_model(ModelConfig(batchnorm_scale=False, precision="float32"), SHAPE, 3, channel_stats=stats)
    norms = [layer for layer in fixed.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(not layer.scale and "gamma" not in [w.name for w in layer.weights] for layer in norms)
    assert fixed.count_params() == learned.count_params() - sum(layer.weights[0].shape[0] for layer in norms)


def test_batchnorm_takes_its_momentum_and_epsilon_from_the_config():
    config = ModelConfig(batchnorm_momentum=0.4, batchnorm_epsilon=1e-5, precision="float32")
    model = build_model(config, SHAPE, 3, channel_stats=([0.0] * 3, [1.0] * 3))
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and {(layer.momentum, layer.epsilon) for layer in norms} == {(0.4, 1e-5)}


def test_identity_init_makes_each_block_conv_pass_its_input_channels_through():
    config = ModelConfig(conv_filters=[32, 128, 128], identity_init=True, precision="float32")
    model = build_model(config, SHAPE, 3, channel_stats=([0.0] * 3, [1.0] * 3))
    convs = [layer for layer in model.layers if layer.name.startswith("block") and "conv" in layer.name]
    assert len(convs) == 2 * len(config.conv_filters)
    features = np.random.default_rng(0).normal(size=(2, 4, 4, 32)).astype(np.float32)
    conv = model.get_layer("block1_2_conv")  # 32 filters in and out: all of them are the identity.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(conv(features)), features, atol=1e-6)
    widening = model.get_layer("block2_conv1")  # 32 in, 128 out: the first 32 pass through, the rest stay random.
    output = keras.ops.convert_to_numpy(widening(features))
    np.testing.assert_allclose(output[..., :32], features, atol=1e-6)
    assert np.abs(output[..., 32:]).mean() > 0.01
    stats = ([0.0] * 3, [1.0] * 3)
    plain = build_model(config.model_copy(update={"identity_init": False}), SHAPE, 3, channel_stats=stats)
    plain_output = keras.ops.convert_to_numpy(plain.get_layer("block1_2_conv")(features))
    assert not np.allclose(plain_output, features, atol=1e-2)


@pytest.mark.parametrize("fill", ["constant", "reflect"])
def test_the_random_crop_pads_with_zeros_or_the_mirrored_border(fill):
    config = ModelConfig(architecture="classic_cnn", conv_filters=[4], normalization="rescale", crop_fill=fill)
    model = build_model(config, SHAPE, 3)
    crop = keras.Model(model.inputs, model.get_layer("random_crop").output)
    keras.utils.set_random_seed(0)
    bright = np.full((32, *SHAPE), 255, dtype=np.uint8)  # Any shift shows only padding at the borders.
    shifted = keras.ops.convert_to_numpy(crop([bright], training=True))
    has_black_border = (shifted == 0).any(axis=(1, 2, 3))
    assert has_black_border.any() if fill == "constant" else not has_black_border.any()
