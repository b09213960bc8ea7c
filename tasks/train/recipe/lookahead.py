"""Lookahead weight averaging for the training stage, as airbench does it.

Every few steps, once a share of training has passed, a slow copy of the network moves part of
the way towards the trained weights, and the network is reset to the slow copy. The slow copy
averages out the noise of the steps, which is worth most late in a short run, so the averaging
grows stronger towards the end. BatchNorm's running statistics are averaged with the weights, so
the network stays consistent with the statistics it normalises by. At the end of each epoch the
network takes the slow weights, so validation, checkpoints and the saved model all use them.

A run resumed from a backup starts a new slow copy from the restored weights.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# Share of all training steps after which the slow copy starts (airbench: 3 of its 9.9 epochs).
LOOKAHEAD_START_FRACTION = 0.3
# Steps between two pulls towards the slow copy (airbench: 5).
LOOKAHEAD_EVERY_STEPS = 5
# Per-step decay of the slow copy at the end of training, raised to LOOKAHEAD_EVERY_STEPS per
# pull (airbench: 0.95). Earlier pulls decay less: the rate ramps with progress ** LOOKAHEAD_POWER.
LOOKAHEAD_DECAY_BASE = 0.95
LOOKAHEAD_POWER = 3.0


def pull_decay(step: int, total_steps: int) -> float:
    """Weight kept by the slow copy at a pull after step of total_steps: small early, 0.95 ** 5 at the end."""
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return (LOOKAHEAD_DECAY_BASE**LOOKAHEAD_EVERY_STEPS) * progress**LOOKAHEAD_POWER


class Lookahead(keras.callbacks.Callback):
    """Pull the network towards a slow copy every LOOKAHEAD_EVERY_STEPS steps after start_fraction of training."""

    def __init__(self, epochs: int, start_fraction: float = LOOKAHEAD_START_FRACTION):
        """epochs: the whole run's, so that fit() may also be called one epoch at a time (benchmarks)."""
        super().__init__()
        self.epochs, self.start_fraction = epochs, start_fraction
        # (slow copy, network variable) pairs, from the first step past start_fraction on.
        self.pairs: list | None = None

    def on_train_begin(self, logs=None):
        self.steps_per_epoch = int(self.params["steps"])
        self.total_steps = self.steps_per_epoch * self.epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self.epoch * self.steps_per_epoch + batch + 1
        last_of_epoch = batch + 1 == self.steps_per_epoch
        if step < self.start_fraction * self.total_steps:
            return
        if self.pairs is None:
            self._start_slow_copy()
        elif step % LOOKAHEAD_EVERY_STEPS == 0:
            self._pull(tf.constant(pull_decay(step, self.total_steps), tf.float32))
        if last_of_epoch:
            # Validation comes next: it, and everything saved at the epoch's end, sees the slow weights.
            self._pull(tf.constant(1.0, tf.float32))

    def _averaged_variables(self) -> list:
        """The network's floating-point state: weights and BatchNorm's statistics, not the RNG seeds."""
        return [variable for variable in self.model.variables if "float" in str(variable.dtype)]

    def _start_slow_copy(self) -> None:
        fast = self._averaged_variables()
        self.pairs = [(tf.Variable(variable.value, trainable=False), variable.value) for variable in fast]
        self._pull = tf.function(self._pull_eagerly)

    def _pull_eagerly(self, decay):
        for slow, fast in self.pairs:
            slow.assign(decay * slow + (1.0 - decay) * fast)
            fast.assign(slow)
