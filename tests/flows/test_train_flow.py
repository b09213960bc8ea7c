"""The train flow end to end on tiny data: ingest, train, evaluate, gate, register."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from visionflow.flows.ingest import IngestConfig
from visionflow.flows.train import train_flow
from visionflow.images.splits import load_split_arrays
from visionflow.tasks.train.gate_model import GateConfig

from tests.conftest import write_image

INGEST = IngestConfig.model_validate({"scan": {"workers": 1}, "decode": {"image_size": 12, "workers": 1}})
OPEN_GATE = GateConfig(min_test_accuracy=0.0, min_class_recall=0.0)


@pytest.fixture
def partly_separable(tmp_path) -> Path:
    """Red patches, plus two classes drawn from one colour distribution: learnable, never perfect."""
    root = tmp_path / "patches"
    generator = np.random.default_rng(5)
    for index in range(60):
        write_image(root / "red" / f"{index}.png", (220, 30, 30), size=12, seed=index)
        for offset, class_name in enumerate(("other-a", "other-b")):
            color = tuple(int(value) for value in generator.integers(60, 200, size=3))
            write_image(root / class_name / f"{index}.png", color, size=12, seed=1000 * (offset + 1) + index)
    return root


@pytest.mark.usefixtures("prefect_server")
def test_the_first_model_is_registered_promoted_and_reproducible(partly_separable, home):
    summary = train_flow(data=str(partly_separable), preset="tiny", ingest=INGEST, gate=OPEN_GATE, home=str(home))
    assert summary.model_version == "v0001" and summary.promoted
    assert summary.champion_version == "v0001" and summary.epochs_run == 2
    folder = home / "models" / "v0001"
    assert {path.name for path in folder.iterdir()} >= {"model.keras", "metadata.json", "metrics.json", "confusion.png"}
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["class_names"] == ["other-a", "other-b", "red"] and metadata["input_shape"] == [12, 12, 3]
    assert metadata["dataset_fingerprint"] == summary.dataset_fingerprint
    assert metadata["hyperparameters"]["train"]["epochs"] == 2 and "tensorflow" in metadata["packages"]

    model = keras.models.load_model(summary.model_path, safe_mode=True)
    images, labels, _ = load_split_arrays(summary.parquet["test"])
    predicted = model.predict(images, verbose=0).argmax(axis=1)
    assert float((predicted == labels).mean()) == pytest.approx(summary.test_accuracy)


@pytest.mark.usefixtures("prefect_server")
def test_a_model_failing_the_gate_is_registered_but_the_champion_stays(partly_separable, home):
    train_flow(data=str(partly_separable), preset="tiny", ingest=INGEST, gate=OPEN_GATE, home=str(home))
    pointer = (home / "models" / "champion.json").read_text()
    strict = GateConfig(min_test_accuracy=1.0)
    second = train_flow(data=str(partly_separable), preset="tiny", epochs=1, ingest=INGEST, gate=strict, home=str(home))
    assert second.model_version == "v0002" and not second.promoted
    assert "below the floor 1.0000" in second.gate_reason
    assert second.champion_version == "v0001" and second.epochs_run == 1
    assert (home / "models" / "champion.json").read_text() == pointer
    stored = json.loads((home / "models" / "v0002" / "metadata.json").read_text())
    assert stored["gate"]["promoted"] is False
