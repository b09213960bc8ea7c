"""A trained model's training-only layers become the Keras layers they stand in for when it is saved."""

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

SHAPE = (12, 12, 3)
STATS = ([100.0] * 3, [900.0] * 3)
# Fused BatchNorm, and in bfloat16 the shifted-products weight gradient on the convs that see 6x6
# and 3x3 pixels: both training-only layers.
CONFIG = ModelConfig(conv_filters=[8, 8], stem_filters=4, precision="mixed_bfloat16", augment=False)


def test_plain_layers_config_leaves_other_layers_alone_and_refuses_a_non_functional_config():
    entries = [{"class_name": "Conv2D", "module": "keras.layers", "name": "conv"}]
    assert plain_layers_config({"name": "m", "layers": entries})["layers"] == entries
    with pytest.raises(ValueError, match="functional model"):
        plain_layers_config({"name": "sequential without layers"})


def twin_models(monkeypatch) -> tuple[keras.Model, keras.Model]:
    """The network with its training-only layers, and with Keras' own conv weight gradients, same weights."""
    monkeypatch.setattr(patch_gradient_conv, "largest_patch_gradient_side", lambda: 6)
    keras.utils.set_random_seed(0)
    faster = build_model(CONFIG, SHAPE, 3, channel_stats=STATS)
    plain = build_model(CONFIG.model_copy(update={"patch_weight_gradient": False}), SHAPE, 3, channel_stats=STATS)
    plain.set_weights(faster.get_weights())
    return faster, plain


def gradients(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, model(images, training=True)))
    return [gradient.numpy() for gradient in tape.gradient(loss, model.trainable_variables)]


def test_the_training_only_layers_train_as_keras_layers_do_and_save_as_them(monkeypatch, tmp_path):
    faster, plain = twin_models(monkeypatch)
    used = {type(layer).__name__ for layer in faster.layers}
    assert set(BUILT_IN_EQUIVALENTS) <= used
    images = np.random.default_rng(0).integers(0, 256, size=(32, *SHAPE), dtype=np.uint8)
    labels = np.arange(32) % 3
    # The same gradients, to bfloat16's rounding, for every variable.
    for variable, computed, expected in zip(
        faster.trainable_variables, gradients(faster, images, labels), gradients(plain, images, labels), strict=True
    ):
        difference = np.abs(computed - expected).max() / max(np.abs(expected).max(), 1e-12)
        assert difference < 2e-2, f"{variable.path}: {difference}"
    faster.compile(keras.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
    faster.fit(images, labels, epochs=2, batch_size=8, verbose=0)
    saved = without_training_state(faster)
    assert not set(BUILT_IN_EQUIVALENTS) & {type(layer).__name__ for layer in saved.layers}
    path = tmp_path / "model.keras"
    saved.save(path)
    # A fresh interpreter that never imports visionflow, as a user's own script would be.
    script = "import sys, keras; print(type(keras.models.load_model(sys.argv[1], safe_mode=True)).__name__)"
    loaded = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    reloaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), faster.predict(images, verbose=0), atol=1e-6)
