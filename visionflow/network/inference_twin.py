"""A registered model's inference twin: the same function in float32, without the training-only layers.

Inference engines take a graph of plain float32 arithmetic. A trained model has two things such a
graph cannot hold: augmentation layers (RandomFlip, RandomTranslation), identities at inference
whose stateless random ops have no ONNX equivalent, and bfloat16 compute on machines that have it,
which ONNX Runtime's CPU convolutions do not take. The twin has the same layers and weights, with
the augmentation layers as Identity and every layer computing in float32, so it predicts what the
model predicts up to bfloat16's rounding.
"""

from __future__ import annotations

import keras
import numpy as np

# Layers that change images only in training: at inference each passes its input through unchanged.
AUGMENTATION_LAYERS = ("RandomFlip", "RandomTranslation", "RandomCrop", "RandomRotation", "RandomZoom")


def inference_twin(model: keras.Model) -> keras.Model:
    """A float32 copy of a functional model with its augmentation layers as Identity, weights shared by value."""
    twin = keras.models.clone_model(model, clone_function=_float32_inference_layer)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            twin.get_layer(layer.name).set_weights(weights)
    return twin


def _float32_inference_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    """The layer's float32 copy: an Identity for an augmentation layer, an affine Rescaling for a
    Normalization layer, else the same layer class and settings."""
    if type(layer).__name__ in AUGMENTATION_LAYERS:
        return keras.layers.Identity(name=layer.name, dtype="float32")
    if isinstance(layer, keras.layers.Normalization) and not layer.invert:
        return _as_rescaling(layer)
    return type(layer).from_config({**layer.get_config(), "dtype": "float32"})


def _as_rescaling(layer: keras.layers.Normalization) -> keras.layers.Rescaling:
    """(x - mean) / sqrt(variance) as x * scale + offset per channel.

    Normalization holds its mean and variance as tensors captured from outside the traced graph,
    which ONNX converters leave as unfed inputs; Rescaling's scale and offset become constants of
    the graph. The two differ by float32 rounding only (about 1e-7 of a feature).
    """
    mean = np.asarray(keras.ops.convert_to_numpy(layer.mean), dtype=np.float64).reshape(-1)
    variance = np.asarray(keras.ops.convert_to_numpy(layer.variance), dtype=np.float64).reshape(-1)
    scale = 1.0 / np.maximum(np.sqrt(variance), keras.config.epsilon())
    return keras.layers.Rescaling(
        scale=scale.tolist(), offset=(-mean * scale).tolist(), name=layer.name, dtype="float32"
    )
