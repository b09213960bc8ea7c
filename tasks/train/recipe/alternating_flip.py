"""Alternating horizontal flips for the training input pipeline, as airbench does them.

A random flip mirrors each image with probability one half every epoch, so over two epochs a
quarter of the images are seen only as they are and a quarter only mirrored. Alternating flips
mirror a fixed random half of the images in even epochs and the other half in odd ones: every
image is seen both ways in every pair of epochs, which matters most in a short run, where each
image is seen only a few times. airbench reports it better than random flips wherever flipping
helps at all.

The flips happen in tf.data (tasks/train/recipe/training_input.py, make_dataset) on uint8 batches, before
the model, because they depend on the epoch; AlternatingFlip, a Keras callback, tells the pipeline
which epoch is starting. Keras makes a new iterator over a finite dataset at the start of every
epoch, after the callbacks' on_epoch_begin, so no batch of an epoch is made before its parity is
set. A run resumed from a backup gets its epoch number from Keras the same way.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from visionflow.network.build_model import ModelConfig, uses_alternating_flip


class AlternatingFlip(keras.callbacks.Callback):
    """Mirror the images of one training split by the parity of the epoch, a fixed random half at a time."""

    def __init__(self, image_count: int, seed: int):
        """image_count: images in the training split, indexed as the pipeline gathers them; seed: picks the halves."""
        super().__init__()
        if image_count < 1:
            raise ValueError(f"alternating flips need at least one training image, got {image_count}")
        first_epoch = np.random.default_rng(seed).integers(0, 2, size=image_count).astype(bool)
        # Whether each image is mirrored in even epochs; odd epochs mirror the others.
        self.mirrored_in_even_epochs = tf.constant(first_epoch)
        self.odd_epoch = tf.Variable(False, trainable=False, dtype=tf.bool, name="alternating_flip_odd_epoch")

    def on_epoch_begin(self, epoch, logs=None):
        self.odd_epoch.assign(epoch % 2 == 1)

    def transform(self, images: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
        """The batch of N x H x W x C images (split rows indices) with this epoch's share mirrored left to right."""
        mirrored = tf.math.logical_xor(tf.gather(self.mirrored_in_even_epochs, indices), self.odd_epoch)
        return tf.where(mirrored[:, tf.newaxis, tf.newaxis, tf.newaxis], tf.reverse(images, axis=[2]), images)


def alternating_flip_for(config: ModelConfig, image_count: int, seed: int) -> AlternatingFlip | None:
    """The AlternatingFlip a network of config trains with, or None when it flips randomly or not at all."""
    return AlternatingFlip(image_count, seed) if uses_alternating_flip(config) else None
