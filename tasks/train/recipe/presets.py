"""The training recipes: the optimiser settings, and the named presets of network and recipe.

A preset pairs a ModelConfig (the network, visionflow/network/build_model.py) with a TrainConfig (how it
is optimised). The presets here are sized for a CPU that computes in bfloat16; the machine's kind changes
some settings (tasks/train/recipe/machine_recipes.py). A run may override ModelConfig fields (the CLI's
--precision and --widths) and TrainConfig fields (--epochs, --seed, --distribution and
--train-on-validation); resolve_preset merges the kind's changes and the overrides once, and the merged
preset is what trains and what the registry records.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from visionflow.errors import InvalidSettingError, first_validation_problem
from visionflow.models.metadata_records import MachineChoiceRecord
from visionflow.network.build_model import ModelConfig
from visionflow.network.hardware import MachineFacts, MachineKind, read_machine_facts
from visionflow.network.model_config import Precision
from visionflow.tasks.train.recipe.machine_recipes import choose_recipe

# How training spreads over devices (tasks/train/recipe/distribution.py, docs/SCALING.md).
Distribution = Literal["auto", "none", "mirrored", "multi-worker"]


class TrainConfig(BaseModel):
    """How the network is optimised. Every field can be overridden per run."""

    model_config = ConfigDict(extra="forbid")

    # Passes over the training images (the training split, and the validation split too with
    # train_on_validation). Ten: the default network reaches about 0.873 on CIFAR-10 in
    # 0.57 to 0.81x the training time of the seed network's ten on a CPU with AMX (docs/BENCHMARKS.md).
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=128, ge=1)  # Images per gradient step.
    optimizer: Literal["adam", "sgd"] = "sgd"  # "sgd" is Nesterov momentum SGD.
    # Peak step size (the constant one when schedule is "constant"), for batches of 128; scale it
    # with the batch size. 0.2 learns more per epoch on CIFAR-10 than 0.05 (with weight_decay scaled
    # to keep their product); gradient_clip_norm keeps it steady on small datasets.
    learning_rate: float = Field(default=0.2, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)  # SGD only: fraction of the previous update kept.
    # Decoupled: each step shrinks every weight by learning_rate x this. The product sets how fast
    # the BatchNorm network's scale-free conv weights turn; the step size alone sets how fast the
    # classifier and BatchNorm's shifts learn. The default network, with the product kept at 1e-3,
    # reached 0.859 on CIFAR-10 with 0.2 and 5e-3 against 0.853 with 0.05 and 2e-2 (docs/BENCHMARKS.md).
    weight_decay: float = Field(default=5e-3, ge=0)
    # Which variables weight decay shrinks. "all": every trainable one. "kernels": only the conv and
    # dense kernels; BatchNorm's scale and shift and the classifier's bias keep their size.
    weight_decay_scope: Literal["all", "kernels"] = "all"
    # Largest global norm of a step's gradients (all variables together); larger ones are scaled down
    # to it. None: no clipping. On the digits demo's thousand images, step size 0.2 without it blew
    # the classifier up in the first epochs (0.41 test accuracy against 0.99 with it, measured with
    # benchmarks/preset_benchmark.py); on CIFAR-10 it changed accuracy by less than the noise
    # between seeds (docs/BENCHMARKS.md).
    gradient_clip_norm: float | None = Field(default=1.0, gt=0)
    # "cosine": linear warm-up from 0, then cosine decay to 0. "constant": learning_rate throughout.
    schedule: Literal["constant", "cosine"] = "cosine"
    warmup_fraction: float = Field(default=0.15, ge=0, lt=1)  # Share of all steps spent warming up.
    label_smoothing: float = Field(default=0.2, ge=0, lt=1)  # Probability mass spread evenly over all classes.
    # Fit on the validation split as well as the training split: the final fit of a recipe already
    # chosen, as airbench trains on all 50,000 CIFAR-10 training images. On CIFAR-10 (45,000 + 5,000)
    # `large`'s network gained 0.6 points for the same CPU seconds (docs/BENCHMARKS.md). Validation
    # then scores images the network trains on, so its figures are only a curve to watch: early
    # stopping is off and the model is the last epoch's. The test split stays unseen.
    train_on_validation: bool = False
    early_stopping_monitor: Literal["val_loss", "val_accuracy"] = "val_accuracy"  # Validation metric watched.
    early_stopping_patience: int = Field(default=3, ge=1)  # Epochs without improvement before stopping.
    # Seeds Python, NumPy, TensorFlow, the layers' randomness and the shuffling; NumPy takes 0 to 2**32 - 1.
    seed: int = Field(default=0, ge=0, lt=2**32)
    # The tf.distribute strategy. "auto": MirroredStrategy over the local GPUs when there are two or
    # more, else one device as without distribution. "none": one device. "mirrored": MirroredStrategy
    # over the local GPUs (the CPU when there is none). "multi-worker": MultiWorkerMirroredStrategy over
    # the machines named in TF_CONFIG. batch_size stays the global batch, split over the replicas, so
    # the recipe (steps per epoch, learning rate) is the same on any number of devices.
    distribution: Distribution = "auto"


class Preset(BaseModel):
    """A named network and training recipe."""

    name: str
    model: ModelConfig
    train: TrainConfig
    # How the machine shaped it (resolve_preset); None for a preset as defined, not yet resolved for a machine.
    machine: MachineChoiceRecord | None = None


# Settings shared by the classic-CNN presets: the plain Keras recipe, no augmentation, float32.
_CLASSIC = {"architecture": "classic_cnn", "normalization": "rescale", "augment": False, "precision": "float32"}
# The airbench-style network of the default preset and the frontier presets, without its widths.
_AIRBENCH = {"architecture": "airbench", "whiten": True, "stem_filters": 0, "activation": "relu"}
_ADAM = {
    "optimizer": "adam",
    "weight_decay": 0.0,
    "gradient_clip_norm": None,
    "schedule": "constant",
    "label_smoothing": 0.0,
}

PRESETS: dict[str, Preset] = {
    # The classic Keras CIFAR-10 CNN, unchanged: about 0.71 test accuracy on CIFAR-10.
    "seed": Preset(
        name="seed",
        model=ModelConfig(**_CLASSIC, conv_filters=[32, 64], dense_units=512, conv_dropout=0.25, dense_dropout=0.5),
        train=TrainConfig(**_ADAM, epochs=10, batch_size=32, learning_rate=1e-3, early_stopping_patience=3),
    ),
    # An airbench-style net: a frozen patch-whitening layer, three conv-pool-BatchNorm blocks whose
    # convs start as the identity, crop (reflected padding) + flip, label smoothing, strong weight
    # decay, Nesterov SGD with warm-up, cosine decay and clipped gradients, bfloat16 compute where the
    # hardware has it.
    # ReLU and no stem conv: on a 2-core CPU they train 1.7x more images per second than GELU with a
    # stem. Ten epochs reach about 0.873 on CIFAR-10 in less time than `seed` takes (docs/BENCHMARKS.md).
    "default": Preset(
        name="default",
        model=ModelConfig(**_AIRBENCH, conv_filters=[32, 128, 128], identity_init=True, crop_fill="reflect"),
        train=TrainConfig(),
    ),
    # The default network at 1.5x the width for eight epochs (docs/experiments/2026-12-01-frontier-presets.md),
    # fitted on the validation split too (TrainConfig.train_on_validation).
    # Without default's identity initialisation and reflected padding: at this step size they
    # changed nothing by the eighth epoch (0.8731 against 0.8729).
    "large": Preset(
        name="large",
        model=ModelConfig(**_AIRBENCH, conv_filters=[48, 192, 192]),
        train=TrainConfig(epochs=8, train_on_validation=True),
    ),
    # airbench's full widths for fifteen epochs, in batches of 256 at twice the step size (the same
    # step size per image), fitted on the validation split too.
    "xlarge": Preset(
        name="xlarge",
        model=ModelConfig(**_AIRBENCH, conv_filters=[64, 256, 256]),
        train=TrainConfig(learning_rate=0.4, epochs=15, batch_size=256, train_on_validation=True),
    ),
    # Two small conv stages for two quick epochs: tests and the offline demo.
    "tiny": Preset(
        name="tiny",
        model=ModelConfig(**_CLASSIC, conv_filters=[8, 16], dense_units=32, conv_dropout=0.0, dense_dropout=0.0),
        train=TrainConfig(**_ADAM, epochs=2, batch_size=16, learning_rate=1e-2, early_stopping_patience=2),
    ),
}


def preset_overrides(
    preset_name: str,
    epochs: int | None = None,
    distribution: Distribution | None = None,
    seed: int | None = None,
    train_on_validation: bool | None = None,
) -> dict:
    """The TrainConfig overrides a run asks for: the epochs, the distribution, the seed and whether
    to fit on the validation split too, those given."""
    _check_preset_name(preset_name)
    given = {"epochs": epochs, "distribution": distribution, "seed": seed, "train_on_validation": train_on_validation}
    return {name: value for name, value in given.items() if value is not None}


def network_overrides(precision: Precision | None = None, widths: list[int] | None = None) -> dict:
    """The ModelConfig overrides a run asks for: the precision and the widths (conv_filters), those given."""
    given = {"precision": precision, "conv_filters": widths}
    return {name: value for name, value in given.items() if value is not None}


def resolve_preset(
    preset_name: str,
    overrides: dict | None = None,
    model_overrides: dict | None = None,
    machine: MachineFacts | None = None,
    kind: MachineKind | None = None,
) -> Preset:
    """The named preset as the machine's kind changes it, with the run's overrides applied (TrainConfig's
    in overrides, ModelConfig's in model_overrides), each one validated.

    machine: the facts the kind is read from (this machine's when None); kind: a kind to size the recipe
    for instead. Raises InvalidSettingError (the CLI's exit 2) naming the first setting out of range. A
    flow resolves its preset before its ingest, so a mistyped setting costs nothing.
    """
    _check_preset_name(preset_name)
    base = PRESETS[preset_name]
    facts = machine if machine is not None else read_machine_facts()
    changes, choice = choose_recipe(preset_name, facts, kind, model_overrides, overrides)
    try:
        model_config = ModelConfig.model_validate(
            {**base.model.model_dump(), **changes.model, **(model_overrides or {})}
        )
        train_config = TrainConfig.model_validate({**base.train.model_dump(), **changes.train, **(overrides or {})})
    except ValidationError as error:
        raise InvalidSettingError(f"invalid option: {first_validation_problem(error)}") from None
    return base.model_copy(update={"model": model_config, "train": train_config, "machine": choice})


def _check_preset_name(preset_name: str) -> None:
    if preset_name not in PRESETS:
        raise InvalidSettingError(f"invalid option: unknown preset {preset_name!r}; choose one of {', '.join(PRESETS)}")


def preset_hyperparameters(preset: Preset) -> dict:
    """Every setting of a resolved preset, as JSON-ready data for the model's metadata."""
    return {"model": preset.model.model_dump(mode="json"), "train": preset.train.model_dump(mode="json")}
