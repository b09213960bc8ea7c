"""The networks that training builds, with the Keras Functional API.

Every model takes raw uint8 images of the recorded shape: normalisation (and, when switched
on, data augmentation) are layers inside the model, so a saved model needs no preprocessing
code to score, and augmentation runs only while training. Only built-in Keras layers are used,
except BatchNorm's fused-training subclass, which training saves as the built-in layer, so a
saved model loads with `keras.models.load_model(path, safe_mode=True)` and no imports.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from pydantic import BaseModel, Field, model_validator

from visionflow.errors import BadInputError
from visionflow.prediction import MIRRORED_TRAINING_MARKER
from visionflow.tasks.train.fused_batch_norm import batch_normalization
from visionflow.tasks.train.initializers import whitening_filters
from visionflow.tasks.train.patch_gradient_conv import conv2d, cpu_flags

# Pixels the whitening layer's "valid" 2x2 convolution takes off the height and the width.
WHITENING_SHRINK = 1

# Largest number of images whose pixels are summed at once when computing channel statistics;
# it bounds the float64 working memory to about 8 bytes x this x H x W x C.
STATS_CHUNK_IMAGES = 4096


class UnsuitableInputError(BadInputError, ValueError):
    """The data cannot train this network (image too small, fewer than two classes...).

    It is a ValueError for Python callers and a BadInputError (CLI exit code 4) for the CLI.
    """


class ModelConfig(BaseModel):
    """The network's architecture and the layers that sit in front of it."""

    # "classic_cnn": conv-relu-pool stages then dense layers, as in the Keras CIFAR-10 example.
    # "airbench": conv-pool-BatchNorm blocks in the style of Keller Jordan's airbench (GELU or ReLU).
    architecture: Literal["classic_cnn", "airbench"] = "airbench"
    # classic_cnn: filters of each conv + 2x2 max-pool stage. airbench: width (filters) of each
    # block of two 3x3 convs; every stage or block halves the image's height and width once.
    conv_filters: list[int] = Field(default=[128, 128, 128], min_length=1)
    # airbench: filters of the 3x3 stem conv at full resolution; 0 for none (the first block then
    # reads the pixels directly, which saves the costliest full-resolution work).
    stem_filters: int = Field(default=32, ge=0)
    # airbench: the nonlinearity after each BatchNorm. "gelu" as in airbench; "relu" costs less on CPUs.
    activation: Literal["gelu", "relu"] = "gelu"
    # airbench: a frozen 2x2 "valid" conv first whose filters whiten the training images' patches
    # (tasks/train/initializers.py). It replaces the stem; images then shrink to an odd size, which also
    # makes every later block a little cheaper.
    whiten: bool = False
    dense_units: int = Field(default=512, ge=0)  # classic_cnn: units of the hidden dense layer; 0 for none.
    conv_dropout: float = Field(default=0.25, ge=0, lt=1)  # classic_cnn: fraction dropped after each stage.
    dense_dropout: float = Field(default=0.5, ge=0, lt=1)  # classic_cnn: fraction dropped after the dense layer.
    batchnorm_momentum: float = Field(default=0.9, gt=0, lt=1)  # airbench: weight of the old running statistics.
    # airbench: added to the batch variance before its square root (airbench: 1e-12). On the default
    # network 1e-5 measured no different from Keras' 1e-3 (docs/BENCHMARKS.md).
    batchnorm_epsilon: float = Field(default=1e-3, gt=0)
    # airbench: whether BatchNorm learns a scale; False keeps it at 1, as airbench does, and the conv
    # that follows does the scaling.
    batchnorm_scale: bool = True
    # airbench: train BatchNorm through TensorFlow's fused kernel, one op per pass instead of a dozen;
    # saved as Keras' own BatchNormalization (tasks/train/fused_batch_norm.py). Same arithmetic; the
    # default network trains 1.4 to 1.8x the images per second on a CPU with AMX (docs/BENCHMARKS.md).
    fused_batchnorm: bool = True
    # airbench, bfloat16 compute: train the 3x3 convs on small images with their weight gradient as
    # matrix products of shifted inputs (tasks/train/patch_gradient_conv.py), on the image sizes where
    # that measured faster on this kind of CPU; saved as Keras' own Conv2D. Same arithmetic; on a CPU
    # with AMX `xlarge` trains 1.1 to 1.2x the images per second, `large` and `default` 2 to 3 %
    # more (docs/BENCHMARKS.md).
    patch_weight_gradient: bool = True
    # airbench: start each block conv's first filters (as many as it has input channels) as the
    # identity, so every block begins close to passing its input on, an implicit residual.
    identity_init: bool = False
    # Multiplies the classifier's logits before the softmax. Below 1 it shrinks the classifier's
    # starting outputs and slows its learning against the conv layers'; airbench uses 1/9.
    logit_scale: float = Field(default=1.0, gt=0)
    # "rescale": pixels / 255 into [0, 1]. "standardize": (pixel - mean) / std per channel, the
    # mean and variance measured on the training images (see channel_statistics).
    normalization: Literal["rescale", "standardize"] = "standardize"
    augment: bool = True  # Random crop with padding and horizontal flip, active only while training.
    crop_padding: int = Field(default=2, ge=0, le=8)  # Pixels of padding around the random crop.
    # What fills the padding: "constant" zeros (the mean colour after standardisation), or "reflect"
    # the image's own border mirrored, as airbench pads.
    crop_fill: Literal["constant", "reflect"] = "constant"
    horizontal_flip: bool = True  # Mirror half of the training images left to right.
    # With horizontal_flip: mirror a fixed random half of the training images in even epochs and the
    # other half in odd ones (airbench's alternating flip, tasks/train/alternating_flip.py) instead of
    # a random half each epoch. The training pipeline does the mirroring, so the model carries a
    # marker layer in place of RandomFlip, which tells prediction to average each image with its mirror.
    # On CIFAR-10 with the default network it measured level with random flips (docs/BENCHMARKS.md).
    alternating_flip: bool = False
    # "auto": bfloat16 compute with float32 weights when the hardware does bfloat16 natively
    # (CPU flags avx512_bf16 or amx_bf16, or a GPU of compute capability 8.0 or newer), else float32.
    precision: Literal["auto", "float32", "mixed_bfloat16"] = "auto"

    @model_validator(mode="after")
    def _alternating_flip_needs_flips(self) -> ModelConfig:
        if self.alternating_flip and not (self.augment and self.horizontal_flip):
            raise ValueError("alternating_flip needs augment and horizontal_flip on: it is a way of flipping")
        return self


@lru_cache(maxsize=1)
def hardware_supports_bfloat16() -> bool:
    """True when this machine computes in bfloat16 natively, so mixed precision pays off."""
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
        if tuple(capability) >= (8, 0):
            return True
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def resolve_precision(config: ModelConfig) -> str:
    """The Keras dtype policy name the compute layers use."""
    if config.precision == "auto":
        return "mixed_bfloat16" if hardware_supports_bfloat16() else "float32"
    return config.precision


def downsampling_steps(config: ModelConfig) -> int:
    """How many times the network halves the image's height and width."""
    return len(config.conv_filters)


def uses_whitening(config: ModelConfig) -> bool:
    """Whether the network starts with the frozen patch-whitening layer (airbench only)."""
    return config.architecture == "airbench" and config.whiten


def uses_alternating_flip(config: ModelConfig) -> bool:
    """Whether the training pipeline mirrors the images by the epoch's parity (tasks/train/alternating_flip.py)."""
    return config.augment and config.horizontal_flip and config.alternating_flip


def minimum_side(config: ModelConfig) -> int:
    """The smallest height and width in pixels the network can take."""
    return 2 ** downsampling_steps(config) + (WHITENING_SHRINK if uses_whitening(config) else 0)


def check_inputs(config: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> None:
    """Raise UnsuitableInputError when this network cannot train on such images or classes."""
    if num_classes < 2:
        raise UnsuitableInputError(
            f"training needs at least 2 classes, got {num_classes}: a classifier of one class learns nothing"
        )
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise UnsuitableInputError(f"images must have shape (height, width, channels), got {tuple(input_shape)}")
    height, width, _channels = input_shape
    steps = downsampling_steps(config)
    minimum = minimum_side(config)
    if height < minimum or width < minimum:
        whitening = f", after its whitening layer takes {WHITENING_SHRINK} off" if uses_whitening(config) else ""
        raise UnsuitableInputError(
            f"images of {height}x{width} pixels are too small for this {config.architecture} network: it halves "
            f"height and width {steps} times (2x2 max-pooling){whitening}, so images must be at least "
            f"{minimum}x{minimum} pixels; ingest with a larger --image-size"
        )


def channel_statistics(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and variance of uint8 images (N, H, W, C), in pixel units (0 to 255)."""
    channels = images.shape[-1]
    total = np.zeros(channels)
    total_squares = np.zeros(channels)
    for start in range(0, len(images), STATS_CHUNK_IMAGES):
        chunk = images[start : start + STATS_CHUNK_IMAGES].reshape(-1, channels).astype(np.float64)
        total += chunk.sum(axis=0)
        total_squares += np.square(chunk).sum(axis=0)
    count = images.size // channels
    mean = total / count
    variance = np.maximum(total_squares / count - np.square(mean), 1e-6)
    return mean.tolist(), variance.tolist()


def build_model(
    config: ModelConfig,
    input_shape: tuple[int, int, int],
    num_classes: int,
    channel_stats: tuple[list[float], list[float]] | None = None,
    whitening_kernel: np.ndarray | None = None,
    synchronized_batchnorm: bool = False,
) -> keras.Model:
    """An uncompiled model from uint8 images of input_shape to num_classes softmax probabilities.

    channel_stats (per-channel mean and variance in pixel units, from channel_statistics) is
    required when config.normalization is "standardize" and ignored otherwise. whitening_kernel
    (from initializers.patch_whitening_kernel) is required when config.whiten is on.
    synchronized_batchnorm makes BatchNorm (airbench) take its training statistics over the global
    batch of every replica rather than each replica's share; training over several devices sets it.
    """
    input_shape = tuple(int(size) for size in input_shape)
    check_inputs(config, input_shape, num_classes)
    policy = resolve_precision(config)
    inputs = keras.Input(shape=input_shape, dtype="uint8", name="image")
    features = _normalize(inputs, config, channel_stats)
    if config.augment:
        features = _augment(features, config, input_shape)
    if config.architecture == "classic_cnn":
        features = _classic_cnn(features, config, policy)
    else:
        features = _airbench(features, config, policy, synchronized_batchnorm)
    # The classifier head stays in float32, so probabilities sum to 1 at full precision.
    if config.logit_scale == 1.0:
        outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(features)
    else:
        logits = layers.Dense(num_classes, dtype="float32", name="logits")(features)
        logits = layers.Rescaling(config.logit_scale, dtype="float32", name="logit_scale")(logits)
        outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    model = keras.Model(inputs, outputs, name=f"visionflow_{config.architecture}")
    if uses_whitening(config):
        _set_whitening_kernel(model, input_shape, whitening_kernel)
    if config.architecture == "airbench" and config.identity_init:
        _start_block_convs_as_identity(model)
    return model


def _start_block_convs_as_identity(model: keras.Model) -> None:
    """Set the first C filters of every block conv (C its input channels) to pass channel i through as filter i."""
    for layer in model.layers:
        if not (layer.name.startswith("block") and isinstance(layer, layers.Conv2D)):
            continue
        kernel = keras.ops.convert_to_numpy(layer.kernel).copy()
        rows, columns, inputs, outputs = kernel.shape
        kept = min(inputs, outputs)
        kernel[:, :, :, :kept] = 0.0
        kernel[rows // 2, columns // 2, np.arange(kept), np.arange(kept)] = 1.0
        layer.kernel.assign(kernel)


def _set_whitening_kernel(model: keras.Model, input_shape, whitening_kernel) -> None:
    """Give the whitening layer its frozen filters, computed from the training images."""
    expected = (2, 2, input_shape[-1], whitening_filters(input_shape[-1]))
    if whitening_kernel is None or tuple(whitening_kernel.shape) != expected:
        raise ValueError(
            f"whiten=True needs whitening_kernel of shape {expected} from "
            "initializers.patch_whitening_kernel(train_images, channel_stats)"
        )
    model.get_layer("whiten").kernel.assign(whitening_kernel)


def _normalize(inputs, config: ModelConfig, channel_stats):
    """uint8 pixels to float32 features: [0, 1], or zero mean and unit variance per channel."""
    if config.normalization == "rescale":
        return layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    if channel_stats is None:
        raise ValueError(
            'normalization="standardize" needs channel_stats, the per-channel mean and variance of the '
            "training images: pass channel_statistics(train_images)"
        )
    mean, variance = channel_stats
    as_float = layers.Rescaling(1.0, name="to_float")(inputs)
    return layers.Normalization(axis=-1, mean=mean, variance=variance, name="standardize")(as_float)


def _augment(features, config: ModelConfig, input_shape: tuple[int, int, int]):
    """Random crop with zero padding, then horizontal flip; both are identities at inference.

    Alternating flips are the training pipeline's; the model then only carries their marker.

    Translating by up to crop_padding pixels with zero fill is a random crop of the image
    padded by crop_padding; nearest interpolation keeps the shifts whole pixels. Zero is the
    mean colour after standardisation and black after rescaling.
    """
    height, width, _channels = input_shape
    if config.crop_padding > 0:
        features = layers.RandomTranslation(
            height_factor=config.crop_padding / height,
            width_factor=config.crop_padding / width,
            fill_mode=config.crop_fill,
            interpolation="nearest",
            fill_value=0.0,
            name="random_crop",
        )(features)
    if uses_alternating_flip(config):
        features = layers.Identity(name=MIRRORED_TRAINING_MARKER)(features)
    elif config.horizontal_flip:
        features = layers.RandomFlip("horizontal", name="random_flip")(features)
    return features


def _classic_cnn(features, config: ModelConfig, policy: str):
    """Stages of Conv2D(3x3, same, relu) + MaxPool 2x2 + Dropout, then Flatten, Dense, Dropout."""
    for index, filters in enumerate(config.conv_filters, start=1):
        features = layers.Conv2D(filters, 3, padding="same", activation="relu", dtype=policy, name=f"conv{index}")(
            features
        )
        features = layers.MaxPooling2D(2, dtype=policy, name=f"pool{index}")(features)
        features = layers.Dropout(config.conv_dropout, dtype=policy, name=f"dropout{index}")(features)
    features = layers.Flatten(dtype=policy, name="flatten")(features)
    if config.dense_units:
        features = layers.Dense(config.dense_units, activation="relu", dtype=policy, name="dense")(features)
        features = layers.Dropout(config.dense_dropout, dtype=policy, name="dense_dropout")(features)
    return features


def _batch_norm(config: ModelConfig, policy: str, name: str, synchronized: bool) -> layers.BatchNormalization:
    """BatchNorm, fused while training if config says so; synchronized, its statistics span every replica.

    Synchronized, a step normalises over the same images on any number of devices, so a recipe
    trains alike on one GPU or eight; without a strategy it is plain BatchNorm.
    """
    return batch_normalization(
        config.fused_batchnorm,
        momentum=config.batchnorm_momentum,
        epsilon=config.batchnorm_epsilon,
        scale=config.batchnorm_scale,
        synchronized=synchronized,
        dtype=policy,
        name=name,
    )


def _block_conv(features, filters: int, config: ModelConfig, policy: str, name: str):
    """A 3x3 "same" conv without bias (BatchNorm supplies the shift), its weight gradient the patch
    product where config, the compute precision and the image's size make that the faster way."""
    patch_gradient = config.patch_weight_gradient and policy == "mixed_bfloat16"
    side = max(features.shape[1], features.shape[2])
    conv = conv2d(
        patch_gradient, side, filters=filters, kernel_size=3, padding="same", use_bias=False, dtype=policy, name=name
    )
    return conv(features)


def _conv_bn_act(features, filters: int, config: ModelConfig, policy: str, name: str, synchronized: bool):
    """A block conv, BatchNorm, the activation."""
    features = _block_conv(features, filters, config, policy, f"{name}_conv")
    features = _batch_norm(config, policy, f"{name}_bn", synchronized)(features)
    return layers.Activation(config.activation, dtype=policy, name=f"{name}_{config.activation}")(features)


def _airbench(features, config: ModelConfig, policy: str, synchronized: bool):
    """A whitening layer or stem conv at full resolution, then per width a block: conv, 2x2 max-pool, conv.

    Pooling right after each block's first conv (as airbench does) keeps most of the compute
    at the lower resolution. A global max-pool feeds the classifier.
    """
    if config.whiten:
        # Frozen and without bias: the filters come in sign pairs, so the activation keeps both
        # halves of each whitened direction and a shift would only lose information.
        whiten = layers.Conv2D(
            whitening_filters(features.shape[-1]), 2, padding="valid", use_bias=False, dtype=policy, name="whiten"
        )
        whiten.trainable = False
        features = layers.Activation(config.activation, dtype=policy, name=f"whiten_{config.activation}")(
            whiten(features)
        )
    elif config.stem_filters:
        features = _conv_bn_act(features, config.stem_filters, config, policy, "stem", synchronized)
    for index, filters in enumerate(config.conv_filters, start=1):
        features = _block_conv(features, filters, config, policy, f"block{index}_conv1")
        features = layers.MaxPooling2D(2, dtype=policy, name=f"block{index}_pool")(features)
        features = _batch_norm(config, policy, f"block{index}_bn1", synchronized)(features)
        features = layers.Activation(config.activation, dtype=policy, name=f"block{index}_{config.activation}1")(
            features
        )
        features = _conv_bn_act(features, filters, config, policy, f"block{index}_2", synchronized)
    return layers.GlobalMaxPooling2D(dtype=policy, name="global_max_pool")(features)
