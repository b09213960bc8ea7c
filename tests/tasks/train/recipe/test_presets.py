"""The presets: typed recipes, the classic one unchanged, overrides merged once and validated."""

from __future__ import annotations

import json

import pytest

from visionflow.errors import InvalidSettingError
from visionflow.network.build_model import check_inputs
from visionflow.network.model_config import ModelConfig
from visionflow.tasks.train.recipe.presets import (
    PRESETS,
    Preset,
    TrainConfig,
    preset_hyperparameters,
    preset_overrides,
    resolve_preset,
)


def test_seed_follows_the_classic_recipe_and_default_the_airbench_one():
    seed = PRESETS["seed"].train
    assert (seed.optimizer, seed.learning_rate, seed.batch_size, seed.epochs) == ("adam", 1e-3, 32, 10)
    assert seed.label_smoothing == 0 and not PRESETS["seed"].model.augment
    default = PRESETS["default"]
    assert default.train.label_smoothing == 0.2 and default.model.augment and default.train.optimizer == "sgd"


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_valid_as_recorded_and_takes_cifar_sized_images(name):
    preset = PRESETS[name]
    assert preset.name == name
    # Every setting passes its own checks again: a preset changed after it was built (pydantic
    # checks values only when a model is built) or built around the checks would not.
    assert Preset.model_validate(preset.model_dump()) == preset
    # What the registry records of a model's recipe brings this same recipe back.
    recorded = json.loads(json.dumps(preset_hyperparameters(preset)))
    assert Preset(name=name, model=ModelConfig(**recorded["model"]), train=TrainConfig(**recorded["train"])) == preset
    # The presets are tuned on CIFAR-10: 32x32 colour images in ten classes.
    check_inputs(preset.model, (32, 32, 3), 10)


def test_the_sgd_presets_take_the_same_step_size_per_image():
    # TrainConfig.learning_rate is for batches of 128 and scales with the batch size.
    per_image = {
        name: preset.train.learning_rate / preset.train.batch_size
        for name, preset in PRESETS.items()
        if preset.train.optimizer == "sgd"
    }
    assert set(per_image) >= {"default", "large", "xlarge"}
    assert per_image == pytest.approx(dict.fromkeys(per_image, 0.2 / 128))


def test_overrides_apply_to_a_copy_and_reach_the_recorded_hyperparameters():
    resolved = resolve_preset("seed", preset_overrides("seed", 3))
    assert resolved.train.epochs == 3 and PRESETS["seed"].train.epochs == 10, "the preset itself is unchanged"
    assert resolved.model == PRESETS["seed"].model
    recorded = preset_hyperparameters(resolved)
    assert recorded["train"]["epochs"] == 3 and recorded["model"]["conv_filters"] == [32, 64]
    assert preset_overrides("default", None) == {}


def test_unknown_presets_bad_epochs_and_unknown_settings_are_refused():
    listed = "unknown preset 'huge'; choose one of seed, default, large, xlarge, tiny"
    with pytest.raises(InvalidSettingError, match=listed):
        preset_overrides("huge")
    with pytest.raises(InvalidSettingError, match="unknown preset 'huge'"):
        resolve_preset("huge")
    with pytest.raises(InvalidSettingError, match="epochs: Input should be greater than or equal to 1"):
        resolve_preset("tiny", preset_overrides("tiny", 0))
    with pytest.raises(InvalidSettingError, match="seed: Input should be less than 4294967296"):
        resolve_preset("tiny", preset_overrides("tiny", seed=2**32))
    with pytest.raises(InvalidSettingError, match="epochz: Extra inputs are not permitted") as refused:
        resolve_preset("tiny", {"epochz": 1})
    assert refused.value.exit_code == 2


def test_the_distribution_is_an_override_recorded_with_the_hyperparameters():
    assert all(preset.train.distribution == "auto" for preset in PRESETS.values())
    assert preset_overrides("tiny", None, "mirrored") == {"distribution": "mirrored"}
    assert preset_overrides("tiny", 2, "none") == {"epochs": 2, "distribution": "none"}
    assert preset_overrides("tiny", None, None, 7) == {"seed": 7}
    assert resolve_preset("tiny", preset_overrides("tiny", seed=7)).train.seed == 7
    resolved = resolve_preset("tiny", preset_overrides("tiny", None, "multi-worker"))
    assert preset_hyperparameters(resolved)["train"]["distribution"] == "multi-worker"
    with pytest.raises(InvalidSettingError, match="distribution"):
        resolve_preset("tiny", {"distribution": "all-the-gpus"})


def test_the_frontier_presets_fit_on_the_validation_split_and_a_run_may_say_otherwise():
    assert [name for name, preset in PRESETS.items() if preset.train.train_on_validation] == ["large", "xlarge"]
    assert preset_overrides("large", train_on_validation=False) == {"train_on_validation": False}
    resolved = resolve_preset("large", preset_overrides("large", train_on_validation=False))
    assert preset_hyperparameters(resolved)["train"]["train_on_validation"] is False
    assert resolve_preset("default", preset_overrides("default", train_on_validation=True)).train.train_on_validation
    with pytest.raises(InvalidSettingError, match="train_on_validation"):
        resolve_preset("tiny", {"train_on_validation": "sometimes"})
