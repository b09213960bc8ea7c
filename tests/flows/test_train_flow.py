"""The train flow end to end on tiny data: ingest, train, evaluate, gate, register."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from visionflow.errors import BadInputError
from visionflow.flows.ingest import IngestConfig
from visionflow.flows.train import train_flow
from visionflow.home import resolve_home
from visionflow.images.splits import load_split_arrays
from visionflow.labels.labels_store import LabelRow, LabelsStore
from visionflow.tasks.train.check_new_labels import count_new_labels
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


def store_label(home: Path, image: Path, class_name: str) -> str:
    """Keep one image's bytes and its label in the home's labels store, as an import would; return its sha256."""
    data = image.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    with LabelsStore(resolve_home(str(home))) as store:
        store.keep_content(sha256, data)
        store.add(sha256, LabelRow(sha256=sha256, class_name=class_name, source="review", origin=image.name))
    return sha256


@pytest.mark.usefixtures("prefect_server")
def test_a_model_trained_with_labels_names_their_snapshot_and_is_tested_on_the_base_test_split(
    partly_separable, home, tmp_path
):
    for index in range(4):
        store_label(home, write_image(tmp_path / "reviewed" / f"{index}.png", (225, 25, 35), seed=5000 + index), "red")
    with LabelsStore(resolve_home(str(home))) as store:
        snapshot = store.snapshot()
    waiting = train_flow(data=str(partly_separable), with_labels=True, min_new_labels=5, home=str(home),
                         return_state=True)  # fmt: skip
    assert waiting.is_completed() and waiting.message.startswith("waiting for labels: 4 accepted labels beyond")
    assert not (home / "models").exists() and not (home / "datasets").exists()
    summary = train_flow(
        data=str(partly_separable), preset="tiny", epochs=1, with_labels=True, ingest=INGEST, gate=OPEN_GATE,
        home=str(home),
    )  # fmt: skip
    assert summary.labels is not None and summary.labels.added_to_train == 4
    assert summary.dataset_fingerprint != summary.labels.base_fingerprint
    metadata = json.loads((home / "models" / summary.model_version / "metadata.json").read_text())
    assert metadata["labels"] == {
        "count": 4, "digest": snapshot.digest, "conflicts": 0, "added_to_train": 4, "relabelled": 0
    }  # fmt: skip
    assert metadata["dataset_fingerprint"] == summary.dataset_fingerprint
    base_dir = home / "datasets" / f"patches-{summary.labels.base_fingerprint[:12]}"
    _, base_labels, _ = load_split_arrays(base_dir / "test.parquet")
    _, test_labels, test_metadata = load_split_arrays(summary.parquet["test"])
    assert test_metadata.dataset_fingerprint == summary.dataset_fingerprint
    np.testing.assert_array_equal(test_labels, base_labels)
    assert count_new_labels(snapshot, home / "models", 1).new == 0  # The champion learnt every one of them.


@pytest.mark.usefixtures("prefect_server")
def test_training_with_labels_when_none_are_stored_stops_before_ingest(partly_separable, home):
    with pytest.raises(BadInputError, match="no accepted labels in .*`visionflow labels import`"):
        train_flow(data=str(partly_separable), preset="tiny", with_labels=True, ingest=INGEST, home=str(home))
    assert not (home / "datasets").exists()
