"""Recipes that know the machine: what each kind of machine changes in a preset, and the one function
that chooses.

The presets (tasks/train/recipe/presets.py) are sized for a CPU that computes in bfloat16 (AMX or
AVX-512 BF16), where `default` reaches about 0.87 on CIFAR-10 in less training time than `seed`. A CPU
that computes in float32 only does the same convolutions at half the rate or less, while `seed`'s small
float32 network costs it no more, so there `default` would take about twice `seed`'s time. The kinds
below change a preset's network width, precision and epochs so that each keeps its place against
`seed` on every kind; what each change costs and buys is in docs/BENCHMARKS.md ("Training per machine
kind"). Accuracy depends on the arithmetic, not the machine (float32 and bfloat16 training of the same
recipe measured level), so a kind's recipe is sized by its time ratio and scored on any machine.

The choice is a function of the machine's facts (visionflow/network/hardware.py), or of a kind the run
names; the same kind and seed give the same model. A run's own settings (--precision, --widths,
--epochs) replace the kind's.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from visionflow.models.metadata_records import MachineChoiceRecord
from visionflow.network.hardware import MachineFacts, MachineKind, machine_kind


class KindChanges(BaseModel):
    """The settings a machine kind changes in one preset."""

    model: dict[str, Any] = {}  # ModelConfig fields and their values on this kind.
    train: dict[str, Any] = {}  # TrainConfig fields and their values on this kind.


# On a CPU that computes in float32 only, `default` is a narrower network for nine epochs instead of ten.
# Its cost is mostly the first two blocks at 31 and 15 pixels a side: widths 24, 64, 128 train 2.0x the
# images per second of 32, 128, 128 under oneDNN's AVX2 kernels (1.00x `seed`'s rate against 0.51x), and
# reached 0.851 in eight epochs, where 24, 96, 96 reached 0.853 at 0.78x `seed`'s rate and 16, 64, 128
# 0.848 in nine (CIFAR-10, seed 0; docs/experiments/2026-12-07-machine-kinds.md); nine epochs reached
# 0.8532 over two seeds in 0.92x `seed`'s training time with oneDNN capped at AVX2 (docs/BENCHMARKS.md).
# `large` and `xlarge` take the network and epochs one step down the bfloat16 ladder (about 1.9x and 3x
# `seed`'s time there by their step rates), so each stays about as far from `seed` as on a bfloat16 CPU.
_FLOAT32_CPU: dict[str, KindChanges] = {
    "default": KindChanges(model={"precision": "float32", "conv_filters": [24, 64, 128]}, train={"epochs": 9}),
    "large": KindChanges(
        model={"precision": "float32", "conv_filters": [32, 128, 128], "identity_init": True, "crop_fill": "reflect"},
        train={"epochs": 10},
    ),
    "xlarge": KindChanges(
        model={"precision": "float32", "conv_filters": [48, 192, 192]},
        train={"learning_rate": 0.2, "epochs": 8, "batch_size": 128},
    ),
}

RECIPES_BY_KIND: dict[MachineKind, dict[str, KindChanges]] = {
    # A GPU and a CPU with AMX tiles train the presets as they are (mixed bfloat16 where the hardware has it).
    "gpu": {},
    "cpu-amx": {},
    # AVX-512 BF16 without tiles: `default`'s ten epochs took 1.08x `seed`'s training time on an AMD EPYC of
    # this kind (0.8700, two seeds); nine took 1.02x in another run (0.8740, seed 0), level within the
    # noise of `seed`'s own time (docs/BENCHMARKS.md).
    "cpu-avx512-bf16": {"default": KindChanges(train={"epochs": 9})},
    "cpu-avx512": _FLOAT32_CPU,
    "cpu-avx2": _FLOAT32_CPU,
}


def _setting_text(section: str, name: str, value: Any) -> str:
    return f"{section}.{name}={value}"


def choose_recipe(
    preset_name: str,
    facts: MachineFacts,
    requested_kind: MachineKind | None = None,
    model_overrides: dict[str, Any] | None = None,
    train_overrides: dict[str, Any] | None = None,
) -> tuple[KindChanges, MachineChoiceRecord]:
    """The changes the machine's kind (or the requested kind) makes to preset_name, less those the run's
    own overrides replace, and the record of that choice."""
    kind = requested_kind or machine_kind(facts)
    changes = RECIPES_BY_KIND[kind].get(preset_name, KindChanges())
    given = {"model": model_overrides or {}, "train": train_overrides or {}}
    kept: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    described, overridden = [], []
    for section, fields in (("model", changes.model), ("train", changes.train)):
        for name, value in fields.items():
            described.append(_setting_text(section, name, value))
            if name in given[section]:
                overridden.append(f"{section}.{name}")
            else:
                kept[section][name] = value
    record = MachineChoiceRecord(
        kind=kind,
        chosen_by="request" if requested_kind else "machine",
        facts=facts,
        changes=described,
        overridden=overridden,
    )
    return KindChanges(model=kept["model"], train=kept["train"]), record
