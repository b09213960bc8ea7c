"""The optimiser: weight decay's scope, BatchNorm shifts' larger steps, and a saved model free of it."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest

from visionflow.errors import InvalidSettingError
from visionflow.tasks.train.recipe.optimizers import ShiftScaledSGD, make_optimizer
from visionflow.tasks.train.recipe.presets import PRESETS, resolve_preset
from visionflow.tasks.train.train_model import train_model


def batchnorm_then_dense() -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(), keras.layers.Dense(2)])
    for variable in model.trainable_variables:
        variable.assign(keras.ops.ones(variable.shape))
    return model


def steps_taken(multiplier: float) -> dict[str, float]:
    """How far each variable moves in one step of gradient 1 with the default recipe, decay off."""
    config = PRESETS["default"].train.model_copy(
        update={"schedule": "constant", "weight_decay": 0.0, "shift_learning_rate_multiplier": multiplier}
    )
    model = batchnorm_then_dense()
    optimizer = make_optimizer(config, steps_per_epoch=1)
    ones = [keras.ops.ones(variable.shape) for variable in model.trainable_variables]
    optimizer.apply_gradients(zip(ones, model.trainable_variables, strict=True))
    return {variable.name: 1.0 - float(keras.ops.max(variable)) for variable in model.trainable_variables}


@pytest.mark.parametrize("scope", ["all", "kernels"])
def test_weight_decay_shrinks_every_variable_or_only_the_kernels(scope):
    config = PRESETS["default"].train.model_copy(
        update={"schedule": "constant", "learning_rate": 0.1, "weight_decay": 0.5, "weight_decay_scope": scope}
    )
    model = batchnorm_then_dense()
    optimizer = make_optimizer(config, steps_per_epoch=1)
    # Zero gradients: whatever changes, weight decay changed (by learning_rate x weight_decay = 5 %).
    zeros = [keras.ops.zeros(variable.shape) for variable in model.trainable_variables]
    optimizer.apply_gradients(zip(zeros, model.trainable_variables, strict=True))
    shrunk = {variable.name: float(keras.ops.max(variable)) < 1.0 for variable in model.trainable_variables}
    assert set(shrunk) == {"gamma", "beta", "kernel", "bias"}
    expected = {"kernel"} if scope == "kernels" else {"gamma", "beta", "kernel", "bias"}
    assert {name for name, was_shrunk in shrunk.items() if was_shrunk} == expected


def test_batchnorm_shifts_take_steps_the_multiplier_times_larger():
    # default clips the gradients' global norm to 1, and these (all ones) are above it: the clip
    # applies to the raw gradients, so the shifts' 64x comes after it and survives whole.
    assert PRESETS["default"].train.gradient_clip_norm == 1.0
    plain, scaled = steps_taken(1.0), steps_taken(64.0)
    assert plain["beta"] > 0
    assert scaled["beta"] == pytest.approx(64 * plain["beta"], rel=1e-5)
    for name in ("gamma", "kernel", "bias"):
        assert scaled[name] == pytest.approx(plain[name], rel=1e-6)


def test_plain_sgd_unless_a_multiplier_is_asked_for_and_a_bad_one_is_refused():
    default = make_optimizer(PRESETS["default"].train, steps_per_epoch=10)
    assert type(default) is keras.optimizers.SGD
    scaled = make_optimizer(PRESETS["default"].train.model_copy(update={"shift_learning_rate_multiplier": 8}), 10)
    assert isinstance(scaled, ShiftScaledSGD) and scaled.get_config()["shift_multiplier"] == 8.0
    with pytest.raises(InvalidSettingError, match="shift_learning_rate_multiplier"):
        resolve_preset("default", {"shift_learning_rate_multiplier": 0})


def test_gradient_clipping_scales_a_large_step_down_to_the_norm_and_leaves_a_small_one():
    def weights_after_one_step(clip_norm: float | None, gradient_scale: float) -> list[np.ndarray]:
        config = PRESETS["default"].train.model_copy(
            update={"schedule": "constant", "weight_decay": 0.0, "gradient_clip_norm": clip_norm}
        )
        model = batchnorm_then_dense()
        optimizer = make_optimizer(config, steps_per_epoch=1)
        gradients = [keras.ops.full(variable.shape, gradient_scale) for variable in model.trainable_variables]
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return [keras.ops.convert_to_numpy(variable) for variable in model.trainable_variables]

    # 4 + 4 + 8 + 2 = 18 gradient entries of 10 each: a global norm of 10 x sqrt(18), far above 1.
    clipped, by_hand = weights_after_one_step(1.0, 10.0), weights_after_one_step(None, 1 / np.sqrt(18))
    for got, expected in zip(clipped, by_hand, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    small_clipped, small_plain = weights_after_one_step(1.0, 0.01), weights_after_one_step(None, 0.01)
    for got, expected in zip(small_clipped, small_plain, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    # Across replicas Keras clips each one's share before summing them: each gets its part of the norm.
    assert make_optimizer(PRESETS["default"].train, steps_per_epoch=1, replicas=4).global_clipnorm == 0.25
    unclipped = weights_after_one_step(None, 10.0)
    assert not np.allclose(unclipped[0], clipped[0])
    with pytest.raises(InvalidSettingError, match="gradient_clip_norm"):
        resolve_preset("default", {"gradient_clip_norm": 0})


def test_a_model_trained_with_the_scaled_optimiser_loads_without_visionflow(tmp_path):
    preset = resolve_preset("default", {"epochs": 1, "batch_size": 8, "shift_learning_rate_multiplier": 64.0})
    generator = np.random.default_rng(0)
    images = generator.integers(0, 256, size=(24, 12, 12, 3), dtype=np.uint8)
    labels = np.arange(24) % 3
    result = train_model((images, labels), (images[:6], labels[:6]), preset, tmp_path, num_classes=3)
    # A fresh interpreter that never imports visionflow, as a user's own script would be.
    script = "import sys, keras; model = keras.models.load_model(sys.argv[1], safe_mode=True); print(model.compiled)"
    loaded = subprocess.run([sys.executable, "-c", script, str(result.model_path)], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_schedules_warm_up_from_zero_peak_and_decay_to_zero(schedule):
    config = PRESETS["default"].train.model_copy(update={"schedule": schedule, "epochs": 10, "warmup_fraction": 0.2})
    schedule_at = make_optimizer(config, steps_per_epoch=10)._learning_rate  # 100 steps, 20 warming up.
    values = [float(keras.ops.convert_to_numpy(schedule_at(step))) for step in (0, 10, 20, 60, 100)]
    peak = config.learning_rate
    assert values[0] == 0.0 and values[2] == pytest.approx(peak) and values[4] == pytest.approx(0.0, abs=1e-7)
    assert values[1] == pytest.approx(peak / 2)
    # Halfway down: linear is at half the peak, cosine at (1 + cos(pi/2)) / 2, also a half.
    assert values[3] == pytest.approx(peak / 2, rel=1e-5)
    if schedule == "linear":
        # A quarter of the way down, linear has lost a quarter; cosine only about 15 %.
        assert float(keras.ops.convert_to_numpy(schedule_at(40))) == pytest.approx(0.75 * peak, rel=1e-5)


def test_the_linear_schedule_serialises_and_loads_back_as_a_checkpoint_needs():
    from visionflow.tasks.train.recipe.optimizers import WarmupLinearDecay

    schedule = WarmupLinearDecay(0.2, warmup_steps=5, total_steps=50)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(restored, WarmupLinearDecay) and restored.get_config() == schedule.get_config()
    unwarmed = WarmupLinearDecay(0.2, warmup_steps=0, total_steps=50)
    assert float(keras.ops.convert_to_numpy(unwarmed(0))) == pytest.approx(0.2)
    with pytest.raises(InvalidSettingError, match="schedule"):
        resolve_preset("default", {"schedule": "triangle"})
