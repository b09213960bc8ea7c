"""Convolutions whose weight gradient is a matrix product of shifted inputs, saved as Keras' own Conv2D.

oneDNN computes a convolution's weight gradient with a kernel of its own, which on small images
keeps a CPU's matrix units mostly idle: inside a training step of the `large` preset on a CPU with
AMX tiles, the gradients of its 7x7 and 3x3-pixel convolutions ran at 100 to 310 GFLOP/s against
over 2 TFLOP/s for the 7x7 layers' forward pass (docs/BENCHMARKS.md). The same numbers come from
matrix products: for each position in the kernel, the layer's input shifted by it (a row per pixel
of every image) times the gradient of its output, the reduction running over the batch and every
pixel. Matrix products run on the tiles at full width, so on small images this is the faster way;
on larger ones the shifted copies (the kernel's area times the input's size) cost more than they save.

Only the weight gradient differs: the forward pass and the input gradient are oneDNN's as before,
the layer's weights and configuration are Conv2D's, and visionflow/network/plain_layers.py turns a model
configuration back into built-in layers, so a saved model.keras loads in safe mode with nothing
but Keras. The layer takes the faster way only where it was measured faster: bfloat16 compute, a
CPU with AMX tiles, and an input of at most AMX_LARGEST_SIDE pixels a side.
"""

from __future__ import annotations

from functools import lru_cache

import keras
import tensorflow as tf
from keras import layers

from visionflow.network.hardware import machine_kind, read_machine_facts

# Largest input side, in pixels, whose weight gradient goes through the shifted products on a CPU
# with AMX tiles. Measured with benchmarks/weight_gradient_benchmark.py in bfloat16, batch 128: the
# products won on every 7x7 layer of the airbench presets (1.04 to 1.7x, more the wider the layer)
# and every 3x3 one (2.4 to 4.4x), and lost on 15x15 and larger (0.25 to 0.6x). Elsewhere oneDNN's
# kernel stays: on an AMD EPYC with AVX-512 BF16 and no AMX, all patches in one product won only on
# the 3x3 layer, about 1 ms of a 130 ms step, and the nine products were not measured there; GPUs
# keep cuDNN's gradient, which this was never measured against.
AMX_LARGEST_SIDE = 7


@lru_cache(maxsize=1)
def largest_patch_gradient_side() -> int:
    """Largest input side (pixels) for the shifted products on this machine; 0 for none."""
    facts = read_machine_facts()
    if machine_kind(facts) != "cpu-amx":
        return 0
    return AMX_LARGEST_SIDE


def patch_weight_gradient(inputs, output_gradient, kernel_shape):
    """The gradient of a stride-1 "same" convolution's kernel: per kernel position, the input shifted by
    it (a row per pixel of every image) times the output's gradient."""
    kernel_side, _, channels, filters = kernel_shape
    pad = kernel_side // 2
    padded = tf.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    height, width = tf.shape(inputs)[1], tf.shape(inputs)[2]
    output_rows = tf.reshape(output_gradient, [-1, filters])
    products = [
        tf.matmul(
            tf.reshape(padded[:, row : row + height, column : column + width, :], [-1, channels]),
            output_rows,
            transpose_a=True,
        )
        for row in range(kernel_side)
        for column in range(kernel_side)
    ]
    return tf.reshape(tf.stack(products), kernel_shape)


def convolve_with_patch_gradient(inputs, kernel):
    """A stride-1 "same" convolution, channels last, whose kernel gradient is patch_weight_gradient's.

    The forward pass and the input gradient are the ops Conv2D runs (oneDNN's on a CPU)."""
    kernel_shape = tuple(kernel.shape)

    @tf.custom_gradient
    def convolve(inputs, kernel):
        outputs = tf.nn.conv2d(inputs, kernel, strides=1, padding="SAME")

        def gradient(output_gradient):
            input_gradient = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(inputs),
                filter=kernel,
                out_backprop=output_gradient,
                strides=[1, 1, 1, 1],
                padding="SAME",
            )
            return input_gradient, patch_weight_gradient(inputs, output_gradient, kernel_shape)

        return outputs, gradient

    return convolve(inputs, tf.convert_to_tensor(kernel))


@keras.saving.register_keras_serializable(package="visionflow")
class PatchGradientConv2D(layers.Conv2D):
    """keras.layers.Conv2D whose kernel gradient is patch_weight_gradient's where that is the faster way.

    That is: a stride-1 "same" odd-sized square kernel, channels last, bfloat16 compute, and an input
    no larger than largest_patch_gradient_side() on this machine. Anything else is Conv2D's own code.
    """

    def convolution_op(self, inputs, kernel):
        if not self.patch_product_applies(inputs.shape):
            return super().convolution_op(inputs, kernel)
        return convolve_with_patch_gradient(inputs, kernel)

    def patch_product_applies(self, input_shape) -> bool:
        """Whether inputs of input_shape (batch, height, width, channels) take the shifted products here."""
        height, width = input_shape[1], input_shape[2]
        return (
            keras.backend.backend() == "tensorflow"
            and self.compute_dtype == "bfloat16"
            and self.padding == "same"
            and self.data_format == "channels_last"
            and self.groups == 1
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.kernel_size[0] == self.kernel_size[1]
            and self.kernel_size[0] % 2 == 1
            and height is not None
            and width is not None
            and max(height, width) <= largest_patch_gradient_side()
        )


PATCH_GRADIENT_CLASS_NAME = PatchGradientConv2D.__name__
