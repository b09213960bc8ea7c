"""The fit of a recipe: the optimiser (weight decay's scope, clipping, schedule), a saved model free of it, and the
input pipeline (every image once an epoch, seeded order, labels, fixed depths)."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest

from visionflow.errors import InvalidSettingError
from visionflow.tasks.train.recipe.fit import make_dataset, make_optimizer
from visionflow.tasks.train.recipe.presets import PRESETS, TrainConfig, resolve_preset
from visionflow.tasks.train.train_model import train_model


def batchnorm_then_dense() -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(), keras.layers.Dense(2)])
    for variable in model.trainable_variables:
        variable.assign(keras.ops.ones(variable.shape))
    return model


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


def test_a_model_trained_with_the_default_recipe_loads_without_visionflow(tmp_path):
    preset = resolve_preset("default", {"epochs": 1, "batch_size": 8})
    generator = np.random.default_rng(0)
    images = generator.integers(0, 256, size=(24, 12, 12, 3), dtype=np.uint8)
    labels = np.arange(24) % 3
    result = train_model((images, labels), (images[:6], labels[:6]), preset, tmp_path, num_classes=3)
    # A fresh interpreter that never imports visionflow, as a user's own script would be.
    script = "import sys, keras; model = keras.models.load_model(sys.argv[1], safe_mode=True); print(model.compiled)"
    loaded = subprocess.run([sys.executable, "-c", script, str(result.model_path)], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip().splitlines()[-1] == "False"


def test_the_schedule_warms_up_from_zero_peaks_and_decays_to_zero():
    config = PRESETS["default"].train.model_copy(update={"epochs": 10, "warmup_fraction": 0.2})
    schedule_at = make_optimizer(config, steps_per_epoch=10)._learning_rate  # 100 steps, 20 warming up.
    values = [float(keras.ops.convert_to_numpy(schedule_at(step))) for step in (0, 10, 20, 60, 100)]
    peak = config.learning_rate
    assert values[0] == 0.0 and values[2] == pytest.approx(peak) and values[4] == pytest.approx(0.0, abs=1e-7)
    assert values[1] == pytest.approx(peak / 2)
    # Halfway down, cosine is at (1 + cos(pi/2)) / 2 of the peak; a quarter of the way, (1 + cos(pi/4)) / 2.
    assert values[3] == pytest.approx(peak / 2, rel=1e-5)
    assert float(keras.ops.convert_to_numpy(schedule_at(40))) == pytest.approx(peak * (1 + np.sqrt(0.5)) / 2, rel=1e-5)


def test_an_unknown_schedule_is_refused():
    with pytest.raises(InvalidSettingError, match="schedule"):
        resolve_preset("default", {"schedule": "linear"})


IMAGES = 50


def numbered_images(count: int) -> tuple[np.ndarray, np.ndarray]:
    """count 2x2 one-channel images filled with their own index, labelled index % 3."""
    images = np.repeat(np.arange(count, dtype=np.uint8), 4).reshape(count, 2, 2, 1)
    return images, np.arange(count) % 3


def order(config: TrainConfig, training: bool) -> list[int]:
    images, labels = numbered_images(IMAGES)
    seen = []
    for batch, batch_labels in make_dataset(images, labels, config, 3, training):
        numbers = batch.numpy()[:, 0, 0, 0].astype(int)
        expected = np.eye(3)[numbers % 3] if config.label_smoothing > 0 else numbers % 3
        np.testing.assert_array_equal(batch_labels.numpy(), expected)
        assert len(numbers) <= config.batch_size
        seen.extend(numbers.tolist())
    return seen


def test_each_epoch_gives_every_image_once_in_a_seeded_shuffle():
    config = TrainConfig(batch_size=16, seed=3)
    shuffled = order(config, training=True)
    assert sorted(shuffled) == list(range(IMAGES)) and shuffled != list(range(IMAGES))
    assert order(config, training=True) == shuffled
    assert order(config, training=False) == list(range(IMAGES))  # Validation stays in order.
    assert order(config.model_copy(update={"label_smoothing": 0.0}), training=True) == shuffled


def test_the_pipeline_runs_at_fixed_depths_without_tf_data_autotuning():
    # Autotuning held about half of the epochs on a 2-core CPU to a slower fixed rate
    # (benchmarks/input_autotune_benchmark.py); the pipeline must keep it off, for training and validation.
    images, labels = numbered_images(IMAGES)
    for training in (True, False):
        options = make_dataset(images, labels, TrainConfig(batch_size=8), 3, training).options()
        assert options.autotune.enabled is False
