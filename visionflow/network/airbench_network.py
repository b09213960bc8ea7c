"""The airbench-style network's layers (in the style of Keller Jordan's airbench), for build_model.

A frozen patch-whitening layer (or a stem conv) at full resolution, then per width a block: conv,
2x2 max-pool, BatchNorm, activation, conv, BatchNorm, activation; a global max-pool feeds the
classifier. The block convs are PatchGradientConv2D and the BatchNorm layers fused while training
unless the configuration says otherwise; both are saved as Keras' own layers.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from visionflow.network.fused_batch_norm import batch_normalization
from visionflow.network.initializers import whitening_filters
from visionflow.network.model_config import ModelConfig
from visionflow.network.patch_gradient_conv import PatchGradientConv2D


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
