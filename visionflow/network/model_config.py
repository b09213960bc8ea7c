"""The network's configuration: its architecture and the layers in front of it (visionflow/network/build_model.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

# The compute precision (ModelConfig.precision): "auto" (bfloat16 where the hardware has it), or one Keras policy.
Precision = Literal["auto", "float32", "mixed_bfloat16"]


class ModelConfig(BaseModel):
    """The network's architecture and the layers that sit in front of it."""

    # "classic_cnn": conv-relu-pool stages then dense layers, as in the Keras CIFAR-10 example.
    # "airbench": conv-pool-BatchNorm blocks in the style of Keller Jordan's airbench (GELU or ReLU).
    architecture: Literal["classic_cnn", "airbench"] = "airbench"
    # classic_cnn: filters of each conv + 2x2 max-pool stage. airbench: width (filters) of each
    # block of two 3x3 convs; every stage or block halves the image's height and width once.
    conv_filters: list[Annotated[int, Field(ge=1)]] = Field(default=[128, 128, 128], min_length=1)
    # airbench: filters of the 3x3 stem conv at full resolution; 0 for none (the first block then
    # reads the pixels directly, which saves the costliest full-resolution work).
    stem_filters: int = Field(default=32, ge=0)
    # airbench: the nonlinearity after each BatchNorm. "gelu" as in airbench; "relu" costs less on CPUs.
    activation: Literal["gelu", "relu"] = "gelu"
    # airbench: a frozen 2x2 "valid" conv first whose filters whiten the training images' patches
    # (visionflow/network/initializers.py). It replaces the stem; images then shrink to an odd size, which also
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
    # saved as Keras' own BatchNormalization (visionflow/network/fused_batch_norm.py). Same arithmetic; the
    # default network trains 1.4 to 1.8x the images per second on a CPU with AMX (docs/BENCHMARKS.md).
    fused_batchnorm: bool = True
    # airbench: the block convs take their weight gradient as matrix products of shifted inputs
    # (visionflow/network/patch_gradient_conv.py) where that measured faster, in bfloat16 on a CPU with AMX
    # for inputs of at most 7 pixels a side; saved as Keras' own Conv2D. Same arithmetic; there
    # `xlarge` trained 1.18x the images per second, `large` 1.03x, `default` level (docs/BENCHMARKS.md).
    patch_weight_gradient: bool = True
    # airbench: start each block conv's first filters (as many as it has input channels) as the
    # identity, so every block begins close to passing its input on, an implicit residual.
    identity_init: bool = False
    # "rescale": pixels / 255 into [0, 1]. "standardize": (pixel - mean) / std per channel, the
    # mean and variance measured on the training images (see channel_statistics).
    normalization: Literal["rescale", "standardize"] = "standardize"
    augment: bool = True  # Random crop with padding and horizontal flip, active only while training.
    crop_padding: int = Field(default=2, ge=0, le=8)  # Pixels of padding around the random crop.
    # What fills the padding: "constant" zeros (the mean colour after standardisation), or "reflect"
    # the image's own border mirrored, as airbench pads.
    crop_fill: Literal["constant", "reflect"] = "constant"
    horizontal_flip: bool = True  # Mirror half of the training images left to right.
    # "auto": bfloat16 compute with float32 weights when the hardware does bfloat16 natively
    # (CPU flags avx512_bf16 or amx_bf16, or a GPU of compute capability 8.0 or newer), else float32.
    precision: Precision = "auto"
