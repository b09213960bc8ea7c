"""A short end-to-end training run on the real CIFAR-10 image folders (skipped when absent)."""

from __future__ import annotations

import keras
import pytest

from flows.train import train_flow
from tasks.write_parquet import load_split_arrays
from tests.conftest import SHARED_CIFAR10

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_server")]


def test_one_epoch_of_the_tiny_preset_learns_cifar10_and_registers_it(home):
    summary = train_flow(data=str(SHARED_CIFAR10), preset="tiny", epochs=1, home=str(home))
    assert summary["epochs_run"] == 1 and summary["model_version"] == "v0001"
    assert summary["test_accuracy"] > 0.25, "ten classes: chance is 0.10"
    assert summary["promoted"] or "below the floor" in summary["gate_reason"], (
        "a first model is refused only by a floor"
    )

    model = keras.models.load_model(summary["model_path"], safe_mode=True)
    images, labels, _ = load_split_arrays(summary["parquet"]["test"])
    accuracy = float((model.predict(images, batch_size=1024, verbose=0).argmax(axis=1) == labels).mean())
    assert accuracy == pytest.approx(summary["test_accuracy"])
