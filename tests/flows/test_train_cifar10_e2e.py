"""A short end-to-end training run on the real CIFAR-10 image folders (skipped when absent)."""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from visionflow.flows.score import score_flow
from visionflow.flows.train import train_flow
from visionflow.images.splits import load_split_arrays
from visionflow.tasks.train.gate_model import GateConfig

from tests.conftest import SHARED_CIFAR10

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_server")]


def test_one_epoch_of_the_tiny_preset_learns_cifar10_and_registers_it(home):
    # Floors a one-epoch tiny net clears (chance is 0.10), so a first model in a fresh home must be
    # promoted: anything else is a gate or registry fault.
    gate = GateConfig(min_test_accuracy=0.2, min_class_recall=0.0)
    summary = train_flow(data=str(SHARED_CIFAR10), preset="tiny", epochs=1, gate=gate, home=str(home))
    assert summary.epochs_run == 1 and summary.model_version == "v0001"
    assert summary.test_accuracy > 0.25, "ten classes: chance is 0.10"
    assert summary.promoted and summary.champion_version == "v0001", summary.gate_reason
    assert "no champion yet" in summary.gate_reason

    model = keras.models.load_model(summary.model_path, safe_mode=True)
    images, labels, _ = load_split_arrays(summary.parquet["test"])
    probabilities = model.predict(images, batch_size=1024, verbose=0)
    accuracy = float((probabilities.argmax(axis=1) == labels).mean())
    assert accuracy == pytest.approx(summary.test_accuracy)

    # Scoring real JPEGs gives what the model gave on the training pipeline's pixels of the same
    # files: one decode path serves both.
    drop = home.parent / "cifar-drop"
    for class_folder in sorted((SHARED_CIFAR10 / "test").iterdir())[:3]:
        for path in sorted(class_folder.iterdir())[:100]:
            target = drop / class_folder.name[:2] / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    scored = score_flow(drop=str(drop), model=summary.model_version, home=str(home))
    assert scored.scored == 300 and scored.rejected == 0
    predictions = ds.dataset(scored.predictions_path, format="parquet").to_table().to_pandas()
    reference = pq.read_table(summary.parquet["test"], columns=["sha256"]).column("sha256").to_pylist()
    row_of = {sha256: row for row, sha256 in enumerate(reference)}
    rows = [row_of[sha256] for sha256 in predictions["sha256"]]
    columns = [name for name in predictions.columns if name.startswith("probability_")]
    assert np.allclose(predictions[columns].to_numpy(), probabilities[rows], atol=1e-5)
