"""Lookahead: the decay ramp, the pulls towards the slow copy (BatchNorm statistics too), training with it."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from visionflow.tasks.train.recipe.lookahead import LOOKAHEAD_EVERY_STEPS, Lookahead, pull_decay
from visionflow.tasks.train.recipe.presets import PRESETS
from visionflow.tasks.train.train_model import train_model


def test_the_decay_ramps_from_nothing_to_airbench_s_value_at_the_end():
    decays = [pull_decay(step, 100) for step in range(0, 101, 10)]
    assert decays[0] == 0.0
    assert decays == sorted(decays)
    assert decays[-1] == pytest.approx(0.95**5)
    assert pull_decay(500, 100) == pytest.approx(0.95**5)  # Past the end it stays at the final value.


def callback_on(model: keras.Model, steps_per_epoch: int, epochs: int) -> Lookahead:
    callback = Lookahead(epochs, start_fraction=0.0)
    callback.set_model(model)
    callback.set_params({"steps": steps_per_epoch, "epochs": epochs})
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    return callback


def fill(model: keras.Model, value: float) -> None:
    for variable in model.variables:
        if "float" in str(variable.dtype):
            variable.assign(keras.ops.full(variable.shape, value))


def test_a_pull_moves_the_slow_copy_towards_the_network_and_resets_the_network_to_it():
    model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(), keras.layers.Dense(2)])
    steps = 4 * LOOKAHEAD_EVERY_STEPS
    callback = callback_on(model, steps_per_epoch=steps, epochs=1)
    fill(model, 1.0)
    callback.on_train_batch_end(0)  # The first step starts the slow copy at the network's values.
    fill(model, 3.0)
    pull_step = 2 * LOOKAHEAD_EVERY_STEPS
    callback.on_train_batch_end(pull_step - 1)
    decay = pull_decay(pull_step, steps)
    expected = decay * 1.0 + (1 - decay) * 3.0
    batchnorm = model.layers[0]
    for variable in (*model.trainable_variables, batchnorm.moving_mean, batchnorm.moving_variance):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected, rtol=1e-6)
    fill(model, 5.0)
    callback.on_train_batch_end(pull_step)  # Not a pull step, not the last: the network keeps its values.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.layers[1].kernel), 5.0)
    callback.on_train_batch_end(steps - 2)  # Neither: the slow copy still holds the pulled values.
    assert float(keras.ops.max(callback.pairs[-1][0])) == pytest.approx(expected)
    callback.on_train_batch_end(steps - 1)  # The epoch's last step, also a pull: the network takes the slow copy.
    final = pull_decay(steps, steps) * expected + (1 - pull_decay(steps, steps)) * 5.0
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.layers[1].kernel), final, rtol=1e-6)


def test_nothing_is_averaged_before_the_start_fraction():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    callback = Lookahead(epochs=2, start_fraction=0.6)
    callback.set_model(model)
    callback.set_params({"steps": 10, "epochs": 2})
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    fill(model, 2.0)
    callback.on_train_batch_end(9)  # Step 10 of 20, before 60 % of training: nothing, even at the epoch's end.
    assert callback.pairs is None
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.layers[0].kernel), 2.0)


def test_training_with_lookahead_learns_and_saves_the_averaged_model(tmp_path):
    preset = PRESETS["tiny"]
    recipe = {"epochs": 4, "lookahead": True, "early_stopping_patience": 10}
    preset = preset.model_copy(update={"train": preset.train.model_copy(update=recipe)})
    generator = np.random.default_rng(0)
    colours = np.array([(220, 40, 40), (40, 200, 60), (40, 60, 220)])
    labels = np.repeat(np.arange(3), 16)
    noise = generator.integers(-40, 40, size=(len(labels), 12, 12, 3))
    images = np.clip(colours[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    result = train_model((images, labels), (images[::4], labels[::4]), preset, tmp_path, num_classes=3)
    assert result.epochs_run == 4
    assert result.history["val_accuracy"][-1] >= 0.9  # Chance is 1/3.
    model = keras.models.load_model(result.model_path, safe_mode=True)
    accuracy = (model.predict(images[::4], verbose=0).argmax(axis=1) == labels[::4]).mean()
    assert accuracy == pytest.approx(max(result.history["val_accuracy"]))
