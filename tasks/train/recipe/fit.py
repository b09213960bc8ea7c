"""The fit of a recipe: what the network fits on, the input pipeline, the loss, the optimiser and its
step-size schedule, compiled together into the model the training stage fits.

With the network (visionflow/network/) and the preset (presets.py) this is the whole recipe. The
splits arrive as uint8 NumPy arrays read zero-copy from Parquet; tf.data shuffles indices with a
seed and gathers whole batches, so no image is ever decoded again. Augmentation (the random crop
and flip) happens in layers inside the model, active only while training.

BatchNorm makes a convolution's kernel scale-free (only its direction matters), so weight decay and
the step size together set how fast those kernels turn, while the step size alone sets how fast the
classifier and BatchNorm's shifts learn (TrainConfig's comments give the measured settings).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from visionflow.network.build_model import build_model, channel_statistics, uses_whitening
from visionflow.network.initializers import patch_whitening_kernel
from visionflow.tasks.train.recipe.distribution import TrainingStrategy
from visionflow.tasks.train.recipe.presets import Preset, TrainConfig

# Batches gathered at once, and batches kept ready ahead of the training step. A gather copies one
# batch of uint8 images (about 0.4 MB at 128 CIFAR-10 images), far quicker than a step.
GATHER_CALLS = 2
PREFETCH_BATCHES = 2


def fitting_arrays(
    train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], config: TrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The (images, labels) a run fits on: train, or train and val joined when the recipe says so.

    Joining copies both splits into one array (their memory once more while training starts), so
    that shuffling sees one set of images.
    """
    if not config.train_on_validation:
        return train
    return np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]])


def make_dataset(images: np.ndarray, labels: np.ndarray, config: TrainConfig, num_classes: int, training: bool):
    """Batches of (uint8 images, labels): seeded shuffled index batches gathered in parallel.

    The arrays become one tensor each; batches are gathered from them, never decoded. Labels
    are one-hot when label smoothing needs them.
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
        return tf.gather(image_tensor, batch_indices), batch_labels

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


def learning_rate_schedule(config: TrainConfig, steps_per_epoch: int):
    """A constant step size, or linear warm-up from 0 then cosine decay to 0 over every step."""
    if config.schedule == "constant":
        return config.learning_rate
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = int(config.warmup_fraction * total_steps)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else config.learning_rate,
        decay_steps=max(total_steps - warmup_steps, 1),
        warmup_target=config.learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def make_optimizer(config: TrainConfig, steps_per_epoch: int, replicas: int = 1) -> keras.optimizers.Optimizer:
    """Adam or Nesterov SGD: learning_rate_schedule's schedule, decoupled weight decay, gradient clipping.

    replicas: the devices a distribution strategy trains on. Keras clips each replica's share of
    the gradient before the shares are summed, so each share is clipped to 1/replicas of the norm:
    the summed gradient then never exceeds gradient_clip_norm, as on one device.
    """
    learning_rate = learning_rate_schedule(config, steps_per_epoch)
    decay = config.weight_decay or None
    clip_norm = None if config.gradient_clip_norm is None else config.gradient_clip_norm / replicas
    if config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate, weight_decay=decay, global_clipnorm=clip_norm)
    else:
        optimizer = keras.optimizers.SGD(
            learning_rate, momentum=config.momentum, nesterov=True, weight_decay=decay, global_clipnorm=clip_norm
        )
    if config.weight_decay and config.weight_decay_scope == "kernels":
        # Keras matches these against variable names: BatchNorm's gamma and beta, and every bias.
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def compiled_model(
    preset: Preset, train_images: np.ndarray, num_classes: int, steps_per_epoch: int, strategy: TrainingStrategy
) -> keras.Model:
    """The preset's model, built and compiled inside strategy's scope with its optimizer and loss, seeded afresh."""
    keras.utils.set_random_seed(preset.train.seed)
    stats = channel_statistics(train_images) if preset.model.normalization == "standardize" else None
    whitening = patch_whitening_kernel(train_images, stats) if uses_whitening(preset.model) else None
    with strategy.strategy.scope():
        model = build_model(
            preset.model,
            tuple(train_images.shape[1:]),
            num_classes,
            channel_stats=stats,
            whitening_kernel=whitening,
            synchronized_batchnorm=strategy.replicas > 1,
        )
        if preset.train.label_smoothing > 0:
            loss = keras.losses.CategoricalCrossentropy(label_smoothing=preset.train.label_smoothing)
        else:
            loss = keras.losses.SparseCategoricalCrossentropy()
        model.compile(make_optimizer(preset.train, steps_per_epoch, strategy.replicas), loss=loss, metrics=["accuracy"])
    return model


def early_stopping(config: TrainConfig) -> list[keras.callbacks.Callback]:
    """Early stopping on the validation metric, restoring the best epoch's weights; none when the
    network also trains on the validation split, whose figures then cannot tell the best epoch."""
    if config.train_on_validation:
        return []
    stopping = keras.callbacks.EarlyStopping(
        monitor=config.early_stopping_monitor, patience=config.early_stopping_patience, restore_best_weights=True
    )
    return [stopping]
