"""The training input pipeline: tf.data batches of uint8 images from the split arrays, and the
augmentations it does by the epoch (alternating flips, low-resolution crops).

The splits arrive as uint8 NumPy arrays read zero-copy from Parquet; tf.data shuffles indices
with a seed and gathers whole batches, so no image is ever decoded again. Augmentations that do
not depend on the epoch (the random crop, random flips) are layers inside the model instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import tensorflow as tf

from visionflow.tasks.train.recipe.alternating_flip import alternating_flip_for
from visionflow.tasks.train.recipe.low_resolution import low_resolution_for
from visionflow.tasks.train.recipe.presets import Preset, TrainConfig

# Batches gathered at once, and batches kept ready ahead of the training step. A gather copies one
# batch of uint8 images (about 0.4 MB at 128 CIFAR-10 images), far quicker than a step.
GATHER_CALLS = 2
PREFETCH_BATCHES = 2


class EpochAugmentation(Protocol):
    """A change to each training batch that depends on the epoch, told by its on_epoch_begin (a Keras callback)."""

    def on_epoch_begin(self, epoch, logs=None): ...

    def transform(self, images: tf.Tensor, indices: tf.Tensor) -> tf.Tensor: ...


def epoch_augmentations(preset: Preset, train_images: np.ndarray) -> list[EpochAugmentation]:
    """The preset's augmentations that the input pipeline does by the epoch: alternating flips, low-resolution crops."""
    count, shape = len(train_images), tuple(train_images.shape[1:])
    found = [
        alternating_flip_for(preset.model, count, preset.train.seed),
        low_resolution_for(preset.model, preset.train, shape, count),
    ]
    return [augmentation for augmentation in found if augmentation is not None]


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    num_classes: int,
    training: bool,
    augmentations: Sequence[EpochAugmentation] = (),
):
    """Batches of (uint8 images, labels): seeded shuffled index batches gathered in parallel.

    The arrays become one tensor each; batches are gathered from them, never decoded. Labels
    are one-hot when label smoothing needs them. augmentations (epoch_augmentations) change each
    batch by the epoch, in turn; they must also be among fit()'s callbacks, to learn the epoch.
    """
    image_tensor = tf.constant(images)
    label_tensor = tf.constant(labels.astype(np.int32))
    indices = tf.data.Dataset.range(len(images))
    if training:
        indices = indices.shuffle(len(images), seed=config.seed, reshuffle_each_iteration=True)

    @tf.autograph.experimental.do_not_convert  # Plain graph code: autograph has nothing to convert.
    def gather(batch_indices):
        batch_labels = tf.gather(label_tensor, batch_indices)
        if config.label_smoothing > 0:
            batch_labels = tf.one_hot(batch_labels, num_classes)
        batch_images = tf.gather(image_tensor, batch_indices)
        for augmentation in augmentations:
            batch_images = augmentation.transform(batch_images, batch_indices)
        return batch_images, batch_labels

    batches = indices.batch(config.batch_size).map(gather, num_parallel_calls=GATHER_CALLS)
    # Across machines each worker builds the same batches (same arrays, same seed) and keeps its
    # share of every one: there are no files to shard by.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # Fixed depths instead of tf.data's autotuning: with autotuning on, about half of the epochs
    # of default's step on a 2-core CPU ran at a fixed, slower rate (5.11 s per 8,192 images against
    # 3.0 s); with it off, none did (docs/BENCHMARKS.md). Gathering is cheap, so a fixed depth keeps up.
    options.autotune.enabled = False
    return batches.prefetch(PREFETCH_BATCHES).with_options(options)
