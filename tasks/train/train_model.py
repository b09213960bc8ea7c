"""Training stage: fits a preset (tasks/train/recipe/presets.py) as its recipe says
(tasks/train/recipe/fit.py), with backups, checkpoints and progress.

The splits arrive as uint8 NumPy arrays read zero-copy from Parquet. Training can be
killed at any point: started again with the same run_dir, it resumes after the last finished
epoch (BackupAndRestore). A backup that cannot be read (corrupt, or weights missing beside
its epoch marker) is deleted with a logged warning and training restarts cleanly from epoch 1.
A finished training is recorded in run_dir/training.json (with the model's sha256) until the
model is registered, so a run killed during evaluation or registration does not train again.
The model is built, compiled and trained inside the distribution strategy of the preset's
TrainConfig.distribution (tasks/train/recipe/distribution.py); the batch size is the global batch.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import keras
import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from visionflow.atomic import write_json_atomically
from visionflow.images.splits import load_split_arrays
from visionflow.network.build_model import UnsuitableInputError, resolve_precision
from visionflow.network.plain_layers import plain_layers_config
from visionflow.run_context import publish_image, publish_markdown, publish_table, run_logger
from visionflow.tasks.train.recipe.distribution import checked_strategy
from visionflow.tasks.train.recipe.fit import compiled_model, early_stopping, fitting_arrays, make_dataset
from visionflow.tasks.train.recipe.presets import Preset, preset_hyperparameters
from visionflow.tasks.train.recipe.training_callbacks import (
    CheckedBackupAndRestore,
    CorruptBackupError,
    TrainingMonitor,
    save_curves,
)


class TrainResult(BaseModel):
    """What one training run produced."""

    # run_dir/model.keras, taking raw uint8 images: the best epoch's weights (by validation), or the
    # last epoch's when the run also trained on the validation split.
    model_path: Path
    history: dict[str, list[float]]  # Per metric, one value per epoch (epoch 1 first), resumed epochs included.
    epochs_run: int  # Epochs finished in total, before an interruption included.
    resumed_from_epoch: int  # Epochs already done when this call started (0 for a fresh run).
    seconds: float  # Wall-clock seconds of this call's fit().
    train_images_per_second: float  # Training throughput of this call, validation excluded.
    seed: int
    precision: str  # Keras dtype policy of the compute layers.
    # The tf.distribute strategy that trained: "default" (one device), "mirrored" or "multi-worker";
    # and its replicas, one per device over every worker. Records written before the distribution
    # setting existed read as one device.
    strategy: str = "default"
    replicas: int = 1


# fit() options: the dataset is already shuffled, and progress goes to the run logger instead.
QUIET = {"shuffle": False, "verbose": 0}

# A finished training waiting to be registered: the TrainResult and the model file's sha256.
FINISHED_TRAINING_FILE = "training.json"

# TrainConfig fields that say where training runs, not what it trains: a run folder's name leaves
# them out, so a killed run resumes in its folder whichever devices finish it.
PLACEMENT_SETTINGS = ("distribution",)


def record_finished_training(result: TrainResult) -> Path:
    """Record result beside its model, with the model's sha256, until forget_finished_training."""
    run_dir = result.model_path.parent
    record = {"result": result.model_dump(mode="json"), "model_sha256": _sha256(result.model_path)}
    return write_json_atomically(run_dir / FINISHED_TRAINING_FILE, record)


def finished_training(run_dir: Path) -> TrainResult | None:
    """The recorded training of run_dir when its model is still the one trained, else None."""
    record_path = Path(run_dir) / FINISHED_TRAINING_FILE
    try:
        record = json.loads(record_path.read_text())
        result = TrainResult.model_validate(record["result"])
        if Path(result.model_path).parent != Path(run_dir) or _sha256(result.model_path) != record["model_sha256"]:
            return None
    except (OSError, ValueError, KeyError, TypeError):  # No record, or one that cannot be trusted.
        return None
    return result


def forget_finished_training(run_dir: Path) -> None:
    """Drop the record once the model is registered: the next run of this recipe trains anew."""
    (Path(run_dir) / FINISHED_TRAINING_FILE).unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def check_arrays(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], num_classes: int) -> None:
    """Raise UnsuitableInputError when the arrays cannot train a classifier of num_classes."""
    present = np.unique(train[1]).size
    if num_classes < 2 or present < 2:
        raise UnsuitableInputError(f"training needs at least 2 classes; got {num_classes}, {present} in train")
    for split, (images, labels) in (("train", train), ("val", val)):
        if len(images) == 0 or len(images) != len(labels):
            raise UnsuitableInputError(f"{split}: {len(images)} images and {len(labels)} labels; need as many, >= 1")
        if images.ndim != 4 or images.dtype != np.uint8:
            raise UnsuitableInputError(f"{split}: images must be uint8 (N, H, W, C), got {images.dtype} {images.shape}")
        if labels.min() < 0 or labels.max() >= num_classes:
            raise UnsuitableInputError(f"{split}: labels must lie in [0, {num_classes - 1}]")
    if train[0].shape[1:] != val[0].shape[1:]:
        raise UnsuitableInputError(f"train images are {train[0].shape[1:]} but val images {val[0].shape[1:]}")


def train_model(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    preset: Preset,
    run_dir: Path,
    num_classes: int,
    extra_callbacks: list[keras.callbacks.Callback] | None = None,
) -> TrainResult:
    """Train preset on train (and val too when its TrainConfig says so), validating on val each
    epoch; write model, checkpoints, history, curves.

    Calling it again with the same run_dir after a crash resumes after the last finished epoch.
    extra_callbacks run after the built-in ones (tests use one to simulate a crash).
    """
    log = run_logger(__name__)
    check_arrays(train, val, num_classes)
    run_dir = Path(run_dir)
    if (finished := finished_training(run_dir)) is not None:
        log.warning("training in %s finished before its run was stopped; using its model, not training again", run_dir)
        return finished
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    config = preset.train
    if config.train_on_validation:
        log.info("fitting on the validation split too: its figures below score images the network trains on")
    train = fitting_arrays(train, val, config)
    # Before the datasets: a multi-worker strategy must be created before TensorFlow's first operation.
    strategy = checked_strategy(config.distribution, config.batch_size, log)
    steps_per_epoch = -(-len(train[0]) // config.batch_size)
    train_data = make_dataset(*train, config, num_classes, training=True)
    val_data = make_dataset(*val, config, num_classes, training=False)
    for attempt in (1, 2):
        model = compiled_model(preset, train[0], num_classes, steps_per_epoch, strategy)
        monitor = TrainingMonitor(run_dir, config.epochs, len(train[0]), log)
        callbacks = [
            CheckedBackupAndRestore(backup_dir=str(run_dir / "backup")),
            *early_stopping(config),
            keras.callbacks.ModelCheckpoint(str(run_dir / "checkpoints" / "last.keras"), save_freq="epoch"),
            monitor,
            *(extra_callbacks or []),
        ]
        started = time.perf_counter()
        try:
            model.fit(train_data, validation_data=val_data, epochs=config.epochs, callbacks=callbacks, **QUIET)
            break
        except CorruptBackupError as error:
            if attempt == 2:
                raise
            log.warning("%s; deleting the backup and training from epoch 1 again", error)
            shutil.rmtree(run_dir / "backup", ignore_errors=True)
    seconds = time.perf_counter() - started
    model_path = run_dir / "model.keras"
    without_training_state(model).save(model_path)
    save_curves(monitor.history, run_dir / "curves.png", config.train_on_validation)
    first_epoch, epochs_run = monitor.first_epoch or 0, len(monitor.history.get("loss", []))
    result = TrainResult(
        model_path=model_path,
        history=monitor.history,
        epochs_run=epochs_run,
        resumed_from_epoch=first_epoch,
        seconds=seconds,
        train_images_per_second=len(train[0]) * (epochs_run - first_epoch) / max(monitor.train_seconds, 1e-9),
        seed=config.seed,
        precision=resolve_precision(preset.model),
        strategy=strategy.kind,
        replicas=strategy.replicas,
    )
    record_finished_training(result)
    return result


def without_training_state(model: keras.Model) -> keras.Model:
    """An uncompiled copy of model with its weights: what scoring needs, and no optimiser.

    The saved file then loads in safe mode without any visionflow class (the training-only layers
    of visionflow/network/plain_layers.py are ones) and is smaller by the optimiser's momentum, one
    value per weight.
    """
    # From the configuration, not keras.models.clone_model: a clone of a compiled model is compiled.
    copy = keras.Model.from_config(plain_layers_config(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy


def training_run_dir(runs_root: Path, fingerprint: str, preset: Preset) -> Path:
    """A run folder named by dataset and the whole resolved recipe, so a rerun of a killed run
    resumes in it, and a preset of the same name that another version of visionflow defines
    otherwise does not."""
    recipe = preset_hyperparameters(preset)
    recipe["train"] = {name: value for name, value in recipe["train"].items() if name not in PLACEMENT_SETTINGS}
    settings = json.dumps(recipe, sort_keys=True)
    key = hashlib.sha256(f"{fingerprint}|{preset.name}|{settings}".encode()).hexdigest()[:12]
    return Path(runs_root) / f"{preset.name}-{fingerprint[:12]}-{key}"


@task(name="train-model", cache_policy=NO_CACHE)
def train_model_task(train_path: str, val_path: str, preset: Preset, run_dir: Path) -> TrainResult:
    """Prefect task: load the splits and train the preset (resolved, overrides applied) on them."""
    log = run_logger(__name__)
    preset_name = preset.name
    train_images, train_labels, metadata = load_split_arrays(train_path)
    val_images, val_labels, val_metadata = load_split_arrays(val_path)
    if val_metadata.classes != metadata.classes:
        raise UnsuitableInputError(f"{train_path} and {val_path} list different classes")
    classes = metadata.classes
    shape = "x".join(map(str, metadata.image_shape))
    on_validation = preset.train.train_on_validation
    fitted = len(train_labels) + (len(val_labels) if on_validation else 0)
    validated = (
        f"the validation split's {len(val_labels)} among them" if on_validation else f"{len(val_labels)} to validate"
    )
    log.info("training preset %s on %d images (%s) of %s into %s", preset_name, fitted, validated, shape, run_dir)
    if preset.machine is not None:
        log.info("%s", preset.machine.describe())
    result = train_model((train_images, train_labels), (val_images, val_labels), preset, Path(run_dir), len(classes))
    val_accuracy = result.history.get("val_accuracy", [float("nan")])
    # Trained on, the validation split shows the curve, not how well the model does: its last value is
    # the saved model's, and the test split (the evaluation stage) is the measure.
    shown, label = (
        (val_accuracy[-1], "last val accuracy (trained on)")
        if on_validation
        else (max(val_accuracy), "best val accuracy")
    )
    summary = (result.epochs_run, result.seconds, result.train_images_per_second, shown)
    log.info("trained %d epochs in %.1f s (%.0f images/s), %s %.4f", *summary[:3], label, shown)
    publish_markdown(
        "train-summary",
        f"| preset | epochs | seconds | images/s | {label} | strategy | replicas |\n"
        "|---|---|---|---|---|---|---|\n"
        "| {} | {} | {:.1f} | {:.0f} | {:.4f} | {} | {} |".format(
            preset_name, *summary, result.strategy, result.replicas
        ),
        "Training summary",
    )
    publish_image("training-curves-plot", result.model_path.parent / "curves.png", "Loss and accuracy per epoch")
    publish_table("training-curves", history_rows(result.history), "Loss and accuracy per epoch, as numbers")
    return result


def history_rows(history: dict[str, list[float]]) -> list[dict]:
    """One row per epoch with every recorded metric, rounded for reading."""
    epochs = max((len(values) for values in history.values()), default=0)
    return [
        {
            "epoch": epoch + 1,
            **{name: round(values[epoch], 4) for name, values in history.items() if epoch < len(values)},
        }
        for epoch in range(epochs)
    ]
