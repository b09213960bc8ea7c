"""MultiWorkerMirroredStrategy as Keras 3's fit() needs it: two fixes for keras-team/keras#20585.

fit() in Keras 3 (checked with 3.15 and TensorFlow 2.21) fails under MultiWorkerMirroredStrategy
before its first step, twice over, both times in the strategy's public reduce():

- before training and validating it asks for the mean over the replicas of the whole first batch,
  only to learn its shapes and dtypes; the collective refuses uint8 images and shares of unequal
  size (a global batch that does not divide by the replicas), so here this worker's own share of
  a batch is the answer: it has the shapes and dtypes the mean would have;
- it reduces every scalar metric "along axis 0", which the strategy refuses for a scalar; here a
  scalar is reduced whole, which is what a mean over the replicas means for it.

Only the strategy returned here behaves so; Keras itself is left as it is. Once Keras fixes the
issue this module can go.
"""

from __future__ import annotations

import tensorflow as tf


class KerasMultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy whose reduce() answers the two requests Keras' fit() makes of it."""

    def reduce(self, reduce_op, value, axis=None):
        if axis is None and reduce_op in ("MEAN", tf.distribute.ReduceOp.MEAN) and _is_batch(self, value):
            return tf.nest.map_structure(lambda part: _local_share(self, part), value)
        if axis is not None and _local_share(self, value).shape.rank == 0:
            axis = None
        return super().reduce(reduce_op, value, axis)


def _local_share(strategy: tf.distribute.Strategy, value):
    """This worker's first replica's part of a value distributed over the strategy's replicas."""
    return strategy.experimental_local_results(value)[0]


def _is_batch(strategy: tf.distribute.Strategy, value) -> bool:
    """Whether value is a batch as Keras reduces it to learn shapes: every part distributed, none a scalar.

    Nothing else asks for an element-wise mean over the replicas of whole tensors: Keras reduces
    metrics along an axis, and a scalar is never a batch.
    """
    return all(
        isinstance(part, tf.distribute.DistributedValues) and _local_share(strategy, part).shape.rank != 0
        for part in tf.nest.flatten(value)
    )


def multi_worker_strategy() -> KerasMultiWorkerStrategy:
    """A MultiWorkerMirroredStrategy from TF_CONFIG that Keras' fit() can train under."""
    return KerasMultiWorkerStrategy()
