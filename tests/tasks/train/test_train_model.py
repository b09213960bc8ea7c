"""Training: learning, saved model, history and curves, resume after a crash, bad inputs, the task."""

from __future__ import annotations

import json
import logging

import keras
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from visionflow.images.imaging import ImageSpec
from visionflow.images.splits import DatasetMetadata, split_schema
from visionflow.tasks.train.recipe.presets import PRESETS, resolve_preset
from visionflow.tasks.train.train_model import (
    FINISHED_TRAINING_FILE,
    finished_training,
    forget_finished_training,
    train_model,
    train_model_task,
    training_run_dir,
)

SIZE = 12
COLORS = np.array([(220, 40, 40), (40, 200, 60), (40, 60, 220)])


def colour_patches(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy single-colour images, one colour per class: trivially separable."""
    generator = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(COLORS)), per_class).astype(np.int32)
    noise = generator.integers(-40, 40, size=(len(labels), SIZE, SIZE, 3))
    images = np.clip(COLORS[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, labels


TRAIN = colour_patches(20, seed=1)
VAL = colour_patches(5, seed=2)


def tiny(**train_updates):
    preset = PRESETS["tiny"]
    return preset.model_copy(update={"train": preset.train.model_copy(update=train_updates)})


class CrashAfterFirstEpoch(keras.callbacks.Callback):
    """Simulates a killed run: raises at the end of epoch 1."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise KeyboardInterrupt("simulated crash")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    return train_model(TRAIN, VAL, tiny(epochs=6, early_stopping_patience=10), run_dir, num_classes=3), run_dir


def test_training_learns_a_separable_dataset(trained):
    result, _run_dir = trained
    assert result.epochs_run == 6
    assert result.resumed_from_epoch == 0
    assert result.history["val_accuracy"][-1] >= 0.9  # Chance is 1/3.
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert result.seed == 0 and result.seconds > 0 and result.train_images_per_second > 0


def test_history_checkpoint_and_curves_are_written(trained):
    result, run_dir = trained
    history = json.loads((run_dir / "history.json").read_text())
    assert history == result.history
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "images_per_second"):
        assert len(history[key]) == 6
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "checkpoints" / "last.keras").is_file()
    assert not (run_dir / "backup").exists()  # Deleted once training finished.


def test_saved_model_loads_safely_and_predicts_the_same(trained):
    result, run_dir = trained
    assert result.model_path == run_dir / "model.keras"
    loaded = keras.models.load_model(result.model_path, safe_mode=True)
    assert not loaded.compiled  # Saved without the optimiser: scoring needs none.
    again = keras.models.load_model(result.model_path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(VAL[0], verbose=0), again.predict(VAL[0], verbose=0), atol=1e-6)
    accuracy = (loaded.predict(VAL[0], verbose=0).argmax(axis=1) == VAL[1]).mean()
    assert accuracy == pytest.approx(max(result.history["val_accuracy"]))


def test_an_interrupted_run_resumes_after_its_last_finished_epoch(tmp_path):
    preset = tiny(epochs=3, early_stopping_patience=5)
    with pytest.raises(KeyboardInterrupt):
        train_model(TRAIN, VAL, preset, tmp_path, 3, extra_callbacks=[CrashAfterFirstEpoch()])
    assert (tmp_path / "backup" / "training_metadata.json").is_file()
    assert len(json.loads((tmp_path / "history.json").read_text())["loss"]) == 1

    started_epochs = []
    recorder = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: started_epochs.append(epoch))
    result = train_model(TRAIN, VAL, preset, tmp_path, 3, extra_callbacks=[recorder])
    assert started_epochs == [1, 2]  # Epoch 2 and 3, counting from 1.
    assert result.resumed_from_epoch == 1
    assert result.epochs_run == 3
    assert len(result.history["loss"]) == 3
    assert not (tmp_path / "backup").exists()


def test_a_finished_training_is_reused_until_its_model_is_registered(tmp_path, caplog):
    preset = tiny(epochs=2, early_stopping_patience=5)
    first = train_model(TRAIN, VAL, preset, tmp_path, 3)
    assert finished_training(tmp_path) == first

    # A rerun after a kill during evaluation or registration: nothing is trained again.
    started_epochs = []
    recorder = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: started_epochs.append(epoch))
    with caplog.at_level(logging.WARNING, logger="visionflow.tasks.train.train_model"):
        again = train_model(TRAIN, VAL, preset, tmp_path, 3, extra_callbacks=[recorder])
    assert again == first and started_epochs == []
    assert "not training again" in caplog.text

    # Once registered, the same recipe trains anew.
    forget_finished_training(tmp_path)
    assert not (tmp_path / FINISHED_TRAINING_FILE).exists()
    train_model(TRAIN, VAL, preset, tmp_path, 3, extra_callbacks=[recorder])
    assert started_epochs == [0, 1]


def test_a_model_changed_since_its_training_is_not_reused(tmp_path):
    preset = tiny(epochs=1)
    result = train_model(TRAIN, VAL, preset, tmp_path, 3)
    result.model_path.write_bytes(b"truncated")
    assert finished_training(tmp_path) is None
    (tmp_path / FINISHED_TRAINING_FILE).write_text("{not json")
    assert finished_training(tmp_path) is None


@pytest.mark.parametrize("damage", ["corrupt weights", "missing weights"])
def test_an_unreadable_backup_is_dropped_with_a_warning_and_training_restarts(tmp_path, caplog, damage):
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "training_metadata.json").write_text(json.dumps({"epoch": 1}))
    if damage == "corrupt weights":
        (backup / "latest.weights.h5").write_bytes(b"not an HDF5 file")
    with caplog.at_level(logging.WARNING, logger="visionflow.tasks.train.train_model"):
        result = train_model(TRAIN, VAL, tiny(epochs=1), tmp_path, 3)
    assert result.resumed_from_epoch == 0 and result.epochs_run == 1
    assert "training from epoch 1 again" in caplog.text


def test_default_preset_trains_end_to_end_on_small_images(tmp_path):
    preset = PRESETS["default"]
    preset = preset.model_copy(update={"train": preset.train.model_copy(update={"epochs": 1, "batch_size": 16})})
    result = train_model(TRAIN, VAL, preset, tmp_path, 3)
    assert result.epochs_run == 1
    assert np.isfinite(result.history["loss"][0])
    assert result.history["learning_rate"][0] == pytest.approx(0.0, abs=1e-6)  # Cosine decay ends at 0.
    loaded = keras.models.load_model(result.model_path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(VAL[0], verbose=0).sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("on", [True, False])
def test_training_on_the_validation_split_fits_both_splits_without_early_stopping(tmp_path, monkeypatch, on):
    made = []

    class RecordingEarlyStopping(keras.callbacks.EarlyStopping):
        def __init__(self, **settings):
            made.append(settings)
            super().__init__(**settings)

    class RecordSteps(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            made.append(self.params["steps"])

    monkeypatch.setattr(keras.callbacks, "EarlyStopping", RecordingEarlyStopping)
    preset = tiny(epochs=2, batch_size=16, train_on_validation=on)
    result = train_model(TRAIN, VAL, preset, tmp_path, 3, extra_callbacks=[RecordSteps()])
    # 60 training images alone take 4 steps of 16; with the 15 of validation, 5.
    assert made[-1] == (5 if on else 4)
    assert [item for item in made if isinstance(item, dict)] == ([] if on else [made[0]])
    assert result.epochs_run == 2 and "val_accuracy" in result.history  # Still validated every epoch.


def test_bad_inputs_raise_clear_errors(tmp_path):
    one_class = (TRAIN[0], np.zeros_like(TRAIN[1]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        train_model(one_class, VAL, tiny(), tmp_path, 3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        train_model(TRAIN, VAL, tiny(), tmp_path, 1)
    small = (TRAIN[0][:, :3, :3], TRAIN[1])
    with pytest.raises(ValueError, match="at least 4x4 pixels"):
        train_model(small, (VAL[0][:, :3, :3], VAL[1]), tiny(), tmp_path, 3)
    with pytest.raises(ValueError, match="labels must lie in"):
        train_model(TRAIN, VAL, tiny(), tmp_path, 2)


def write_split(path, images: np.ndarray, labels: np.ndarray, split: str, classes=("red", "green", "blue")) -> str:
    spec = ImageSpec(SIZE, SIZE, 3)
    schema = split_schema(spec, DatasetMetadata(classes=list(classes)), split)
    table = pa.table(
        {
            "pixels": pa.array([image.tobytes() for image in images], type=pa.binary(spec.pixel_bytes)),
            "label": pa.array(labels, type=pa.int32()),
            "path": [f"{split}/{index}.png" for index in range(len(labels))],
            "sha256": [f"{split}{index:062d}" for index in range(len(labels))],
        },
        schema=schema,
    )
    pq.write_table(table, path)
    return str(path)


def test_task_trains_a_resolved_preset_from_parquet_splits(tmp_path):
    train_path = write_split(tmp_path / "train.parquet", *TRAIN, "train")
    val_path = write_split(tmp_path / "val.parquet", *VAL, "val")
    result = train_model_task.fn(train_path, val_path, resolve_preset("tiny", {"epochs": 1}), tmp_path / "run")
    assert result.epochs_run == 1 and len(result.history["loss"]) == 1
    assert result.model_path == tmp_path / "run" / "model.keras" and result.model_path.is_file()
    assert (tmp_path / "run" / "history.json").is_file() and (tmp_path / "run" / "curves.png").is_file()


def test_task_refuses_splits_that_name_other_classes(tmp_path):
    train_path = write_split(tmp_path / "train.parquet", *TRAIN, "train")
    val_path = write_split(tmp_path / "val.parquet", *VAL, "val", classes=["red", "green", "violet"])
    with pytest.raises(ValueError, match="list different classes"):
        train_model_task.fn(train_path, val_path, resolve_preset("tiny"), tmp_path / "run")


def test_run_folders_are_named_by_dataset_and_the_whole_recipe(tmp_path):
    first = training_run_dir(tmp_path, "ab" * 32, resolve_preset("tiny", {"epochs": 1}))
    assert first == training_run_dir(tmp_path, "ab" * 32, resolve_preset("tiny", {"epochs": 1}))
    assert first != training_run_dir(tmp_path, "ab" * 32, resolve_preset("tiny", {"epochs": 2}))
    assert first != training_run_dir(tmp_path, "cd" * 32, resolve_preset("tiny", {"epochs": 1}))
    assert first.parent == tmp_path and first.name.startswith("tiny-abababababab-")
    # Where it trains is not what it trains: a killed run resumes in its folder on other devices.
    assert first == training_run_dir(tmp_path, "ab" * 32, resolve_preset("tiny", {"epochs": 1, "distribution": "none"}))
    # A preset of the same name whose network changed (another version of visionflow) starts afresh.
    tiny = resolve_preset("tiny", {"epochs": 1})
    wider = tiny.model_copy(update={"model": tiny.model.model_copy(update={"conv_filters": [16, 32]})})
    assert first != training_run_dir(tmp_path, "ab" * 32, wider)
    # The same recipe asked for by an override that repeats the preset's own setting is the same run.
    assert training_run_dir(tmp_path, "ab" * 32, resolve_preset("large")) == training_run_dir(
        tmp_path, "ab" * 32, resolve_preset("large", {"train_on_validation": True})
    )


def test_history_rows_are_one_per_epoch_with_every_metric():
    from visionflow.tasks.train.train_model import history_rows

    rows = history_rows({"loss": [1.23456, 0.5], "val_accuracy": [0.4, 0.61237]})
    assert rows[0] == {"epoch": 1, "loss": 1.2346, "val_accuracy": 0.4}
    assert rows[1] == {"epoch": 2, "loss": 0.5, "val_accuracy": 0.6124}
