"""The optimiser of a training recipe: Adam or Nesterov SGD, its step-size schedule and weight decay.

BatchNorm makes a convolution's kernel scale-free (only its direction matters), so weight decay
and the step size together set how fast those kernels turn. BatchNorm's shifts are not scale-free,
and airbench gives them a step size 64 times larger; TrainConfig.shift_learning_rate_multiplier
does the same here by scaling their gradients, which for SGD with momentum is the same as scaling
their step size. Weight decay stays at the common rate, as in airbench. On the default network,
whose step size and decay were tuned together, 64x measured no better than 1x (docs/BENCHMARKS.md),
so no preset uses it.
"""

from __future__ import annotations

import keras

from visionflow.tasks.train.recipe.presets import TrainConfig

# Keras names BatchNormalization's shift variable "beta" (and its scale "gamma").
SHIFT_VARIABLE_NAME = "beta"


@keras.saving.register_keras_serializable(package="visionflow")
class ShiftScaledSGD(keras.optimizers.SGD):
    """Nesterov SGD whose step size on BatchNorm's shifts is shift_multiplier times the rest's.

    Only training uses it. The training stage saves the finished model without its optimiser, so
    model.keras loads anywhere without this class; the per-epoch checkpoint keeps the optimiser
    and loads where visionflow is imported (the registration above).
    """

    def __init__(self, shift_multiplier: float = 1.0, clip_norm: float | None = None, **kwargs):
        # Keras would clip after apply() scales the shifts' gradients, so their 64x would dominate
        # the global norm; this class clips the raw gradients itself, before scaling.
        super().__init__(**kwargs)
        self.shift_multiplier = float(shift_multiplier)
        self.clip_norm = clip_norm

    def apply(self, grads, trainable_variables=None):
        variables = self._trainable_variables if trainable_variables is None else list(trainable_variables)
        if self.clip_norm is not None:
            present = [gradient for gradient in grads if gradient is not None]
            norm = keras.ops.sqrt(sum(keras.ops.sum(keras.ops.square(gradient)) for gradient in present))
            factor = keras.ops.minimum(1.0, self.clip_norm / keras.ops.maximum(norm, 1e-12))
            grads = [None if gradient is None else gradient * factor for gradient in grads]
        scaled = [
            gradient * self.shift_multiplier
            if gradient is not None and variable.name == SHIFT_VARIABLE_NAME
            else gradient
            for gradient, variable in zip(grads, variables, strict=True)
        ]
        return super().apply(scaled, trainable_variables)

    def get_config(self):
        return {**super().get_config(), "shift_multiplier": self.shift_multiplier, "clip_norm": self.clip_norm}


@keras.saving.register_keras_serializable(package="visionflow")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to peak over warmup_steps, then linear decay to 0 at total_steps (airbench's shape)."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), self.warmup_steps + 1)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        rising = step / self.warmup_steps if self.warmup_steps else 1.0
        falling = (self.total_steps - step) / (self.total_steps - self.warmup_steps)
        return self.peak * keras.ops.clip(keras.ops.minimum(rising, falling), 0.0, 1.0)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def learning_rate_schedule(config: TrainConfig, steps_per_epoch: int):
    """A constant step size, or linear warm-up from 0 then cosine or linear decay to 0 over every step."""
    if config.schedule == "constant":
        return config.learning_rate
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = int(config.warmup_fraction * total_steps)
    if config.schedule == "linear":
        return WarmupLinearDecay(config.learning_rate, warmup_steps, total_steps)
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
    elif config.shift_learning_rate_multiplier != 1.0:
        optimizer = ShiftScaledSGD(
            config.shift_learning_rate_multiplier,
            clip_norm=clip_norm,
            learning_rate=learning_rate,
            momentum=config.momentum,
            nesterov=True,
            weight_decay=decay,
        )
    else:
        optimizer = keras.optimizers.SGD(
            learning_rate,
            momentum=config.momentum,
            nesterov=True,
            weight_decay=decay,
            global_clipnorm=clip_norm,
        )
    if config.weight_decay and config.weight_decay_scope == "kernels":
        # Keras matches these against variable names: BatchNorm's gamma and beta, and every bias.
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer
