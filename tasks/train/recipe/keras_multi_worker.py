"""MultiWorkerMirroredStrategy as Keras 3's fit() needs it: two fixes for keras-team/keras#20585.

fit() in Keras 3 (checked with 3.15 and TensorFlow 2.21) fails under MultiWorkerMirroredStrategy
before its first step, twice over:

- before training and validating it all-reduces the first batch across workers, only to learn
  its shapes and dtypes; the collective refuses uint8 images and shares of unequal size (a global
  batch that does not divide by the replicas), so here this worker's own share tells the shapes;
- it reduces every scalar metric "along axis 0", which the strategy refuses for a scalar; here a
  scalar is reduced whole, which is what a mean over the replicas means for it.

Only a model built under the strategy returned here is affected; every other model trains as
Keras does it. Once Keras fixes the issue this module can go.
"""

from __future__ import annotations

from functools import lru_cache

import tensorflow as tf


class KerasMultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy whose reduce() also takes a scalar "along axis 0", as Keras passes metrics."""

    def reduce(self, reduce_op, value, axis=None):
        if axis is not None and self.experimental_local_results(value)[0].shape.rank == 0:
            axis = None
        return super().reduce(reduce_op, value, axis)


def multi_worker_strategy() -> KerasMultiWorkerStrategy:
    """A MultiWorkerMirroredStrategy from TF_CONFIG that Keras' fit() can train under."""
    _build_from_the_local_share()
    return KerasMultiWorkerStrategy()


@lru_cache(maxsize=1)
def _build_from_the_local_share() -> None:
    """Make fit() and evaluate() learn a multi-worker batch's shapes from this worker's share of it."""
    # Keras' own module, imported only here: only multi-worker runs need it, and by then Keras is
    # fully imported (importing it directly while the CLI's prefetch imports keras breaks both).
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    keras_build = TensorFlowTrainer._maybe_symbolic_build

    def maybe_symbolic_build(model, iterator=None, data_batch=None):
        strategy = model.distribute_strategy
        if iterator is None or not isinstance(strategy, KerasMultiWorkerStrategy):
            return keras_build(model, iterator=iterator, data_batch=data_batch)
        for _begin, _end, batches in iterator:
            first = next(batches)
            break
        local = tf.nest.map_structure(lambda value: strategy.experimental_local_results(value)[0], first)
        with strategy.scope():
            model._symbolic_build(data_batch=local)

    TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
