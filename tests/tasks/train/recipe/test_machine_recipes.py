"""Recipes that know the machine: each kind's changes, the run's overrides over them, and the record."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionflow.network.hardware import MACHINE_KINDS, GpuFacts, MachineFacts
from visionflow.network.model_config import ModelConfig
from visionflow.tasks.train.recipe.machine_recipes import RECIPES_BY_KIND, choose_recipe
from visionflow.tasks.train.recipe.presets import PRESETS, TrainConfig, network_overrides, resolve_preset
from visionflow.tasks.train.train_model import training_run_dir

ZEN3 = MachineFacts(cpu="AMD EPYC 7763", generation="family 25 model 1", cores=2, flags=["avx2", "fma"])
ZEN4 = MachineFacts(cpu="AMD EPYC", cores=2, flags=["avx2", "avx512_bf16", "avx512f", "fma"])
SAPPHIRE_RAPIDS = MachineFacts(
    cpu="Intel Xeon", cores=2, flags=["amx_bf16", "amx_tile", "avx2", "avx512_bf16", "avx512f"]
)
SKYLAKE_X = MachineFacts(cpu="Intel Xeon", cores=2, flags=["avx2", "avx512f", "fma"])
GPU = MachineFacts(flags=["avx2"], gpus=[GpuFacts(name="GPU:0", compute_capability=[9, 0])])


def test_a_cpu_with_amx_and_a_gpu_train_the_presets_as_they_are():
    for facts in (SAPPHIRE_RAPIDS, GPU):
        for name, preset in PRESETS.items():
            resolved = resolve_preset(name, machine=facts)
            assert (resolved.model, resolved.train) == (preset.model, preset.train)
            assert resolved.machine.changes == [] and resolved.machine.chosen_by == "machine"
    assert resolve_preset("default", machine=GPU).machine.kind == "gpu"


def test_avx512_bf16_without_tiles_trains_default_one_epoch_shorter():
    resolved = resolve_preset("default", machine=ZEN4)
    assert resolved.machine.kind == "cpu-avx512-bf16" and resolved.train.epochs == PRESETS["default"].train.epochs - 1
    assert resolved.model == PRESETS["default"].model, "the network and its bfloat16 compute stay"
    assert resolve_preset("large", machine=ZEN4).train == PRESETS["large"].train


@pytest.mark.parametrize("facts", [ZEN3, SKYLAKE_X], ids=["avx2", "avx512"])
def test_a_float32_cpu_trains_a_cheaper_default_in_float32(facts):
    resolved = resolve_preset("default", machine=facts)
    shipped = PRESETS["default"]
    assert resolved.model.precision == "float32"
    assert sum(resolved.model.conv_filters) < sum(shipped.model.conv_filters)
    assert resolved.train.epochs <= shipped.train.epochs
    # The rest of the recipe is default's: only the size, the precision and the epochs change.
    assert resolved.model.whiten and resolved.train.label_smoothing == shipped.train.label_smoothing
    assert "model.precision=float32" in resolved.machine.changes
    assert "recipe for cpu-" in resolved.machine.describe() and facts.cpu in resolved.machine.describe()


def test_every_kinds_recipe_is_valid_and_no_float32_kind_asks_for_bfloat16():
    for kind in MACHINE_KINDS:
        for name, changes in RECIPES_BY_KIND[kind].items():
            assert name in PRESETS
            ModelConfig.model_validate({**PRESETS[name].model.model_dump(), **changes.model})
            TrainConfig.model_validate({**PRESETS[name].train.model_dump(), **changes.train})
            if kind in ("cpu-avx2", "cpu-avx512"):
                # oneDNN has no bfloat16 kernels below AVX-512 BF16: such a model would not even run.
                assert changes.model.get("precision") == "float32"
    for kind in MACHINE_KINDS:
        assert "seed" not in RECIPES_BY_KIND[kind] and "tiny" not in RECIPES_BY_KIND[kind]


def test_the_runs_own_settings_replace_the_kinds_and_the_record_says_which():
    resolved = resolve_preset("default", {"epochs": 3}, network_overrides("mixed_bfloat16", [8, 16, 16]), machine=ZEN3)
    assert (resolved.train.epochs, resolved.model.conv_filters, resolved.model.precision) == (
        3,
        [8, 16, 16],
        "mixed_bfloat16",
    )
    assert set(resolved.machine.overridden) == {"train.epochs", "model.conv_filters", "model.precision"}
    assert "the run's own" in resolved.machine.describe()


def test_a_named_kind_sizes_the_recipe_for_it_on_any_machine():
    named = resolve_preset("default", machine=ZEN4, kind="cpu-avx2")
    assert named.machine.kind == "cpu-avx2" and named.machine.chosen_by == "request"
    assert (named.model, named.train) == (resolve_preset("default", machine=ZEN3).model, resolve_preset(
        "default", machine=ZEN3).train)  # fmt: skip
    _changes, record = choose_recipe("default", ZEN4, "cpu-avx2")
    assert record.facts == ZEN4, "the record keeps the facts of the machine that trained"


def test_the_same_kind_gives_the_same_run_folder_and_another_kind_another(tmp_path: Path):
    fingerprint = "ab" * 32
    zen3, other_zen3 = resolve_preset("default", machine=ZEN3), resolve_preset("default", machine=SKYLAKE_X)
    zen4 = resolve_preset("default", machine=SAPPHIRE_RAPIDS)
    assert training_run_dir(tmp_path, fingerprint, zen3) == training_run_dir(tmp_path, fingerprint, other_zen3)
    assert training_run_dir(tmp_path, fingerprint, zen3) != training_run_dir(tmp_path, fingerprint, zen4)


def test_bad_widths_and_precisions_are_refused_naming_the_setting():
    from visionflow.errors import InvalidSettingError

    with pytest.raises(InvalidSettingError, match="conv_filters"):
        resolve_preset("default", model_overrides=network_overrides(widths=[]), machine=ZEN4)
    with pytest.raises(InvalidSettingError, match="conv_filters"):
        resolve_preset("default", model_overrides=network_overrides(widths=[24, 0, 96]), machine=ZEN4)
    with pytest.raises(InvalidSettingError, match="precision"):
        resolve_preset("default", model_overrides={"precision": "float16"}, machine=ZEN4)
