"""The networks that training builds, with the Keras Functional API: the classic Keras CIFAR-10 CNN
(the `seed` preset) and the airbench-style network of the other presets.

The airbench-style network (in the style of Keller Jordan's airbench): a frozen patch-whitening
layer (or a stem conv) at full resolution, then per width a block: conv, 2x2 max-pool, BatchNorm,
activation, conv, BatchNorm, activation; a global max-pool feeds the classifier. The block convs
are PatchGradientConv2D and the BatchNorm layers fused while training unless the configuration says
otherwise; both are saved as Keras' own layers.

Every model takes raw uint8 images of the recorded shape: normalisation (and, when switched
on, data augmentation) are layers inside the model, so a saved model needs no preprocessing
code to score, and augmentation runs only while training. Only built-in Keras layers are used,
except two training-only subclasses (BatchNorm's fused training, and Conv2D's weight gradient as
matrix products) that training saves as the built-in layers, so a saved model loads with
`keras.models.load_model(path, safe_mode=True)` and no imports.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from visionflow.errors import BadInputError
from visionflow.network.fused_batch_norm import batch_normalization
from visionflow.network.hardware import hardware_supports_bfloat16
from visionflow.network.initializers import whitening_filters
from visionflow.network.model_config import ModelConfig
from visionflow.network.patch_gradient_conv import PatchGradientConv2D

# Pixels the whitening layer's "valid" 2x2 convolution takes off the height and the width.
WHITENING_SHRINK = 1

# Largest number of images whose pixels are summed at once when computing channel statistics;
# it bounds the float64 working memory to about 8 bytes x this x H x W x C.
STATS_CHUNK_IMAGES = 4096


class UnsuitableInputError(BadInputError, ValueError):
    """The data cannot train this network (image too small, fewer than two classes...).

    It is a ValueError for Python callers and a BadInputError (CLI exit code 4) for the CLI.
    """


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
        features = airbench_features(features, config, policy, synchronized_batchnorm)
    # The classifier head stays in float32, so probabilities sum to 1 at full precision.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(features)
    model = keras.Model(inputs, outputs, name=f"visionflow_{config.architecture}")
    if uses_whitening(config):
        set_whitening_kernel(model, input_shape, whitening_kernel)
    if config.architecture == "airbench" and config.identity_init:
        start_block_convs_as_identity(model)
    return model


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
    if config.horizontal_flip:
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


def start_block_convs_as_identity(model: keras.Model) -> None:
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


def set_whitening_kernel(model: keras.Model, input_shape, whitening_kernel) -> None:
    """Give the whitening layer its frozen filters, computed from the training images."""
    expected = (2, 2, input_shape[-1], whitening_filters(input_shape[-1]))
    if whitening_kernel is None or tuple(whitening_kernel.shape) != expected:
        raise ValueError(
            f"whiten=True needs whitening_kernel of shape {expected} from "
            "initializers.patch_whitening_kernel(train_images, channel_stats)"
        )
    model.get_layer("whiten").kernel.assign(whitening_kernel)


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
    """A 3x3 "same" conv without bias (BatchNorm supplies the shift).

    With patch_weight_gradient the layer class depends on the configuration only, never on the
    machine, so a backup's weights (filed by class) restore on any machine; the layer itself
    decides, call by call, whether its input is small enough for its faster weight gradient here.
    """
    layer_class = PatchGradientConv2D if config.patch_weight_gradient else layers.Conv2D
    return layer_class(filters, 3, padding="same", use_bias=False, dtype=policy, name=name)(features)


def _conv_bn_act(features, filters: int, config: ModelConfig, policy: str, name: str, synchronized: bool):
    """A block conv, BatchNorm, the activation."""
    features = _block_conv(features, filters, config, policy, f"{name}_conv")
    features = _batch_norm(config, policy, f"{name}_bn", synchronized)(features)
    return layers.Activation(config.activation, dtype=policy, name=f"{name}_{config.activation}")(features)


def airbench_features(features, config: ModelConfig, policy: str, synchronized: bool):
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
