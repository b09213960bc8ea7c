"""BatchNorm that trains through TensorFlow's fused kernel, and is saved as Keras' own BatchNormalization.

Keras 3's BatchNormalization computes its training statistics and the normalisation from a dozen
separate operations (casts to float32, means, differences, products, a division), and the
gradient from as many again. On a CPU whose convolutions run on bfloat16 matrix units those
element-wise passes over every activation took over a third of a training step. TensorFlow's
FusedBatchNormV3 does the forward pass in one kernel and its gradient in another (oneDNN's on a
CPU, cuDNN's on a GPU), reading bfloat16 activations directly. Measured in docs/BENCHMARKS.md.

Only training takes the fused path. Inference runs Keras' own code, the layer's weights and
configuration are BatchNormalization's, and visionflow/network/plain_layers.py turns a model configuration
back into built-in layers, so a saved model.keras loads in safe mode with nothing but Keras.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

# The fused kernel refuses a smaller epsilon (TensorFlow raises it to this value silently), so a
# layer with less falls back to Keras' path to keep the arithmetic it was configured with.
FUSED_MINIMUM_EPSILON = 1.001e-5

FUSED_CLASS_NAME = "FusedBatchNormalization"


@keras.saving.register_keras_serializable(package="visionflow")
class FusedBatchNormalization(layers.BatchNormalization):
    """keras.layers.BatchNormalization whose training step on 4-D channels-last inputs is one fused op.

    Everything else (inference, masks, synchronised statistics over replicas, other ranks or axes,
    an epsilon below the fused kernel's minimum) is Keras' own code. The moving statistics are
    updated exactly as Keras updates them, with the batch's biased variance.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and self._fusable(inputs, mask)):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        scale = self.gamma if self.scale else tf.ones([channels], tf.float32)
        offset = self.beta if self.center else tf.zeros([channels], tf.float32)
        outputs, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            tf.cast(scale, tf.float32),
            tf.cast(offset, tf.float32),
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=True,
        )
        # The kernel returns the variance with Bessel's correction; Keras keeps the biased one.
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), tf.float32)
        variance = unbiased_variance * (count - 1.0) / tf.maximum(count, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)

    def _fusable(self, inputs, mask) -> bool:
        """Whether the fused kernel computes what Keras' BatchNormalization would for these inputs."""
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and not self.synchronized
            and not getattr(self, "renorm", False)  # Batch renormalisation came in a later Keras 3.
            and self.epsilon >= FUSED_MINIMUM_EPSILON
        )


def batch_normalization(fused: bool, **settings) -> layers.BatchNormalization:
    """A BatchNorm layer with settings: the fused-training one when fused, else Keras' own."""
    return FusedBatchNormalization(**settings) if fused else layers.BatchNormalization(**settings)
