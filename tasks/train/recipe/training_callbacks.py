"""Keras callbacks of the training stage: resumable backups, per-epoch progress, curves.

Kept apart from train_model.py so each file stays small; only training imports them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras

from visionflow.atomic import write_json_atomically
from visionflow.run_context import start_progress, update_progress


class CorruptBackupError(RuntimeError):
    """The BackupAndRestore folder exists but cannot be restored."""


class CheckedBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that turns an unreadable backup into CorruptBackupError."""

    def on_train_begin(self, logs=None):
        backup = Path(self.backup_dir)
        if (backup / "training_metadata.json").exists() and not (backup / "latest.weights.h5").exists():
            raise CorruptBackupError(f"{backup} records an epoch but its weights file is missing")
        try:
            super().on_train_begin(logs)
        except Exception as error:
            raise CorruptBackupError(f"{backup} cannot be restored: {error}") from error


class TrainingMonitor(keras.callbacks.Callback):
    """Per epoch: a log line (metrics, images/s, time left), history.json, the progress artifact."""

    def __init__(self, run_dir: Path, epochs: int, train_images: int, log):
        super().__init__()
        self.run_dir, self.epochs, self.train_images, self.log = run_dir, epochs, train_images, log
        self.history: dict[str, list[float]] = {}
        self.first_epoch: int | None = None
        self.train_seconds = 0.0
        self.progress = start_progress("train-progress", "Training epochs done, percent")

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch
            self.history = _load_history(self.run_dir / "history.json", keep_epochs=epoch)
            if epoch:
                self.log.info("resuming from the backup in %s after epoch %d", self.run_dir / "backup", epoch)
        self.epoch_started = self.validation_started = time.perf_counter()
        self.in_validation = False

    def on_test_begin(self, logs=None):
        self.validation_started, self.in_validation = time.perf_counter(), True

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        train_seconds = (self.validation_started if self.in_validation else now) - self.epoch_started
        self.train_seconds += train_seconds
        record = {key: float(value) for key, value in (logs or {}).items()}
        record["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        record["images_per_second"] = self.train_images / max(train_seconds, 1e-9)
        record["epoch_seconds"] = now - self.epoch_started
        for key, value in record.items():
            self.history.setdefault(key, []).append(value)
        write_json_atomically(self.run_dir / "history.json", self.history, indent=1)
        left = (self.epochs - epoch - 1) * (now - self.epoch_started)
        shown = ", ".join(f"{key} {record[key]:.4f}" for key in ("loss", "accuracy", "val_loss", "val_accuracy"))
        speed = record["images_per_second"]
        self.log.info("epoch %d/%d: %s, %.0f images/s, about %.0f s left", epoch + 1, self.epochs, shown, speed, left)
        update_progress(self.progress, 100.0 * (epoch + 1) / self.epochs)


def _load_history(path: Path, keep_epochs: int) -> dict[str, list[float]]:
    """The first keep_epochs entries of a previous history.json (the epochs a resume skips)."""
    if keep_epochs == 0 or not path.exists():
        return {}
    try:
        return {key: values[:keep_epochs] for key, values in json.loads(path.read_text()).items()}
    except (ValueError, AttributeError, TypeError):
        return {}


def save_curves(history: dict[str, list[float]], path: Path, trained_on_validation: bool = False) -> None:
    """Loss and accuracy per epoch, training and validation, as a PNG; the validation curve is
    labelled as trained on when the run also fitted on the validation split."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        validation = "validation (trained on)" if trained_on_validation else "validation"
        for key, label in ((metric, "train"), (f"val_{metric}", validation)):
            if key in history:
                axis.plot(range(1, len(history[key]) + 1), history[key], marker="o", label=label)
        axis.set(xlabel="epoch", title=metric)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
