"""Low-resolution first epochs for the training stage: cheaper epochs while the network is far off.

The first epochs of a run move the weights a long way and need little detail. Trained on random
crops of, say, three quarters of each side, an epoch costs a little over half as much, and the
network sees its objects at the same scale as in the whole images (a crop, not a resize). The
last epochs train on the whole images, so BatchNorm's statistics and the classifier settle on
what evaluation and scoring feed the network. This is progressive resizing (fast.ai's
DAWNBench ImageNet runs) in the form that keeps the pixel scale.

The crops happen in tf.data (tasks/train/recipe/training_input.py, make_dataset), one window per batch,
placed by a stateless random draw from the seed, the epoch and the batch's first image, so a
seeded run repeats. LowResolutionEpochs, a Keras callback, tells the pipeline which epoch is
starting (Keras makes each epoch's iterator after the callbacks' on_epoch_begin). The network
trains through a twin whose input takes any height and width (with_input_shape), sharing every
layer and weight; the saved model is the twin at the images' own shape, so scoring is unchanged.
Networks that end in global pooling (airbench) can; classic_cnn's dense layers cannot.
"""

from __future__ import annotations

from itertools import pairwise

import keras
import tensorflow as tf

from visionflow.network.build_model import ModelConfig, UnsuitableInputError, minimum_side
from visionflow.tasks.train.recipe.presets import TrainConfig


def low_resolution_epochs(config: TrainConfig) -> int:
    """How many of the run's first epochs train on crops: the configured share, rounded down."""
    return int(config.low_resolution_epoch_fraction * config.epochs)


def crop_side(image_side: int, config: TrainConfig) -> int:
    """Pixels of a crop's side for an image side of image_side."""
    return max(1, round(image_side * config.low_resolution_crop_fraction))


class LowResolutionEpochs(keras.callbacks.Callback):
    """Crop every training batch to a random window of crop_height x crop_width in the first epochs."""

    def __init__(self, epochs: int, crop_height: int, crop_width: int, image_count: int, seed: int):
        """epochs: how many first epochs crop; image_count: images in the training split (to vary the draws)."""
        super().__init__()
        self.epochs, self.crop_height, self.crop_width = epochs, crop_height, crop_width
        self.image_count, self.seed = image_count, seed
        self.epoch = tf.Variable(0, trainable=False, dtype=tf.int64, name="low_resolution_epoch")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)

    def transform(self, images: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
        """The N x H x W x C batch (split rows indices), cropped while this epoch is a low-resolution one."""

        def cropped() -> tf.Tensor:
            draw = tf.stack([tf.constant(self.seed, tf.int64), self.epoch * self.image_count + indices[0]])
            room = tf.cast(tf.shape(images)[1:3] - [self.crop_height, self.crop_width] + 1, tf.float32)
            top, left = tf.unstack(tf.cast(tf.random.stateless_uniform([2], seed=draw) * room, tf.int32))
            return images[:, top : top + self.crop_height, left : left + self.crop_width, :]

        return tf.cond(self.epoch < self.epochs, cropped, lambda: images)


def low_resolution_for(
    model_config: ModelConfig, config: TrainConfig, image_shape: tuple[int, int, int], image_count: int
) -> LowResolutionEpochs | None:
    """The LowResolutionEpochs a run trains with, or None when it trains at full resolution throughout.

    Raises UnsuitableInputError when the network cannot take crops (dense layers need one input
    size) or the crops would be smaller than the network's smallest input.
    """
    epochs = low_resolution_epochs(config)
    if epochs == 0:
        return None
    if model_config.architecture != "airbench":
        raise UnsuitableInputError(
            f"low-resolution epochs need a network that pools globally (airbench), not {model_config.architecture}: "
            "set low_resolution_epoch_fraction to 0"
        )
    height, width = (crop_side(side, config) for side in image_shape[:2])
    smallest = minimum_side(model_config)
    if min(height, width) < smallest:
        raise UnsuitableInputError(
            f"low-resolution crops of {height}x{width} pixels are smaller than the network's minimum of "
            f"{smallest}x{smallest}: raise low_resolution_crop_fraction or set low_resolution_epoch_fraction to 0"
        )
    return LowResolutionEpochs(epochs, height, width, image_count, config.seed)


def with_input_shape(model: keras.Model, input_shape: tuple) -> keras.Model:
    """A twin of model taking images of input_shape (None for any height or width), sharing its layers.

    The model must be a chain, each layer fed by the one before, as build_model's networks are.
    """
    _check_chain(model)
    inputs = keras.Input(shape=input_shape, dtype=model.inputs[0].dtype, name=model.layers[0].name)
    features = inputs
    for layer in model.layers[1:]:
        features = layer(features)
    return keras.Model(inputs, features, name=model.name)


def _check_chain(model: keras.Model) -> None:
    """Raise ValueError unless every layer of model, after its input, reads exactly the layer before it."""
    entries = model.get_config()["layers"]
    for previous, entry in pairwise(entries):
        nodes = entry.get("inbound_nodes", [])
        arguments = nodes[0]["args"] if len(nodes) == 1 else ()
        sources = [argument["config"]["keras_history"][0] for argument in arguments if isinstance(argument, dict)]
        if sources != [previous["name"]]:
            raise ValueError(f"{model.name} is not a chain of layers: {entry['name']} does not read {previous['name']}")
