"""The inference twin: the default network in float32, its augmentation layers identities, predicting as
the same network built in float32 does."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from visionflow.network.build_model import build_model, channel_statistics
from visionflow.network.inference_twin import AUGMENTATION_LAYERS, inference_twin
from visionflow.network.initializers import patch_whitening_kernel
from visionflow.tasks.train.recipe.presets import PRESETS

SHAPE = (12, 12, 3)
CLASSES = 3
# The default network, computing in bfloat16 on any machine (on one without bfloat16, "auto" would
# pick float32 and the twin would change nothing worth testing).
BFLOAT16_DEFAULT = PRESETS["default"].model.model_copy(update={"precision": "mixed_bfloat16"})
# Standardised features are (x - mean) / sqrt(variance) against x * scale + offset: two float32
# roundings each side, about 2^-23 of the feature each; 1e-6 of it holds them with room to spare.
FEATURE_RELATIVE_TOLERANCE = 1e-6


def images(count: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, *SHAPE), dtype=np.uint8)


def default_network(config=BFLOAT16_DEFAULT) -> keras.Model:
    """The default preset's network as fit.compiled_model builds it, its weights moved off their initial
    values (BatchNorm's statistics too), so a twin that did not copy every weight would predict otherwise."""
    train = images(seed=1)
    stats = channel_statistics(train)
    keras.utils.set_random_seed(0)
    model = build_model(
        config, SHAPE, CLASSES, channel_stats=stats, whitening_kernel=patch_whitening_kernel(train, stats)
    )
    generator = np.random.default_rng(2)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights or not layer.trainable or layer.name == "probabilities":
            continue  # Untrainable: the frozen whitening filters and the standardisation's statistics.
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = weights
            layer.set_weights([
                generator.uniform(0.5, 1.5, gamma.shape), generator.normal(0, 0.2, beta.shape),
                generator.normal(0, 0.3, mean.shape), generator.uniform(0.5, 2.0, variance.shape),
            ])  # fmt: skip
        else:
            layer.set_weights([weight + generator.normal(0, 0.02, weight.shape) for weight in weights])
    # A classifier whose logits spread by about 1, so its probabilities are far from 0 and 1 and
    # differences in them show (a saturated softmax hides any difference before it).
    features = run(keras.Model(model.input, model.get_layer("global_max_pool").output), train)
    kernel = generator.normal(0, 1, (features.shape[1], CLASSES)) / (np.std(features) * np.sqrt(features.shape[1]))
    model.get_layer("probabilities").set_weights([kernel, np.zeros(CLASSES)])
    return model


def as_float32_network(model: keras.Model) -> keras.Model:
    """The same network built in float32 from the same statistics and weights."""
    train = images(seed=1)
    stats = channel_statistics(train)
    rebuilt = build_model(
        BFLOAT16_DEFAULT.model_copy(update={"precision": "float32"}),
        SHAPE,
        CLASSES,
        channel_stats=stats,
        whitening_kernel=patch_whitening_kernel(train, stats),
    )
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def run(model: keras.Model, inputs) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(inputs, training=False))


@pytest.fixture(scope="module")
def networks():
    """(the bfloat16 default network, its twin, the network rebuilt in float32)."""
    model = default_network()
    return model, inference_twin(model), as_float32_network(model)


def test_the_model_under_test_computes_in_bfloat16_and_augments(networks):
    model, _twin, _float32 = networks
    assert "bfloat16" in {layer.compute_dtype for layer in model.layers}
    assert {"RandomTranslation", "RandomFlip"} <= {type(layer).__name__ for layer in model.layers}


def test_the_twin_has_no_random_layers_and_every_layer_computes_in_float32(networks):
    model, twin, _float32 = networks
    assert [layer.name for layer in twin.layers] == [layer.name for layer in model.layers]
    kinds = {type(layer).__name__ for layer in twin.layers}
    assert not {kind for kind in kinds if kind.startswith("Random")}
    assert not set(AUGMENTATION_LAYERS) & kinds
    assert isinstance(twin.get_layer("random_flip"), keras.layers.Identity)
    assert {layer.compute_dtype for layer in twin.layers} == {"float32"}
    assert {variable.dtype for variable in twin.weights} == {"float32"}


def test_the_twin_holds_the_models_weights(networks):
    model, twin, _float32 = networks
    for layer in model.layers:
        if layer.name == "standardize":
            continue  # Its mean and variance become the Rescaling's constants (tested below).
        for original, copied in zip(layer.get_weights(), twin.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(copied, original)


def test_the_swapped_standardisation_gives_normalizations_features(networks):
    model, twin, _float32 = networks
    assert isinstance(model.get_layer("standardize"), keras.layers.Normalization)
    assert isinstance(twin.get_layer("standardize"), keras.layers.Rescaling)
    batch = images(seed=3)
    expected = run(keras.Model(model.input, model.get_layer("standardize").output), batch)
    swapped = run(keras.Model(twin.input, twin.get_layer("standardize").output), batch)
    np.testing.assert_allclose(swapped, expected, rtol=FEATURE_RELATIVE_TOLERANCE, atol=FEATURE_RELATIVE_TOLERANCE)


def test_a_near_constant_channel_is_standardised_alike():
    # A channel of variance 1e-6 (channel_statistics' floor) divides by 1e-3: features of up to 255,000.
    inputs = keras.Input(SHAPE, dtype="uint8")
    normalized = keras.layers.Normalization(mean=[51.0, 100.0, 0.0], variance=[4.0, 25.0, 1e-6])(
        keras.layers.Rescaling(1.0)(inputs)
    )
    model = keras.Model(inputs, normalized)
    batch = images(seed=4)
    np.testing.assert_allclose(
        run(inference_twin(model), batch), run(model, batch), rtol=FEATURE_RELATIVE_TOLERANCE, atol=1e-6
    )


def test_after_the_standardisation_the_twin_is_the_float32_network_exactly(networks):
    _model, twin, float32 = networks
    features = run(keras.Model(float32.input, float32.get_layer("standardize").output), images(seed=5))
    twin_tail = keras.Model(twin.get_layer("standardize").output, twin.output)
    float32_tail = keras.Model(float32.get_layer("standardize").output, float32.output)
    # The same float32 operations on the same operands, with the augmentation layers identities at inference.
    np.testing.assert_array_equal(run(twin_tail, features), run(float32_tail, features))


def test_the_twin_predicts_what_the_float32_network_predicts(networks):
    model, twin, float32 = networks
    batch = images(seed=6)
    predicted = run(twin, batch)
    assert predicted.shape == (len(batch), CLASSES)
    # The two differ only by the standardisation's float32 rounding (above) carried through the network:
    # a hundredth of the 1e-3 an export's parity check allows.
    np.testing.assert_allclose(predicted, run(float32, batch), rtol=0, atol=1e-5)
    # ...and the bfloat16 model itself predicts otherwise, so the twin is not merely the model.
    assert np.abs(run(model, batch) - predicted).max() > 1e-5
