"""Registering a trained model: its files, its metadata and provenance, and the gate's decision."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from visionflow.images.imaging import ImageSpec
from visionflow.images.splits import DatasetMetadata, DatasetRecord, split_schema
from visionflow.models.champion_pointer import read_champion
from visionflow.models.evaluation_metrics import EvaluationMetrics
from visionflow.network.hardware import MACHINE_KINDS
from visionflow.tasks.train.evaluate_model import EvaluationResult
from visionflow.tasks.train.gate_model import GateDecision
from visionflow.tasks.train.recipe.presets import resolve_preset
from visionflow.tasks.train.register_model import git_commit, package_versions, register_model_task
from visionflow.tasks.train.train_model import FINISHED_TRAINING_FILE, TrainResult

CLASSES = ["cat", "dog"]
SPEC = ImageSpec(4, 4, 3)


def write_train_split(path: Path) -> str:
    """Six 4x4 images, half of each class, as a split file with the contract versions recorded."""
    images = np.full((6, 4, 4, 3), 100, dtype=np.uint8)
    images[:3] = 200
    metadata = DatasetMetadata(classes=CLASSES, contract_versions={"raw": "7"})
    table = pa.table(
        {
            "pixels": pa.array([image.tobytes() for image in images], type=pa.binary(SPEC.pixel_bytes)),
            "label": pa.array([0, 0, 0, 1, 1, 1], type=pa.int32()),
            "path": [f"{index}.png" for index in range(6)],
            "sha256": [f"{index:064d}" for index in range(6)],
        },
        schema=split_schema(SPEC, metadata, "train"),
    )
    pq.write_table(table, path)
    return str(path)


@pytest.fixture
def candidate(tmp_path: Path):
    """A dataset record, a training result and an evaluation, as the train flow hands them over."""
    run_dir = tmp_path / "run"
    (run_dir / "evaluation").mkdir(parents=True)
    (run_dir / "model.keras").write_bytes(b"model bytes")
    (run_dir / "history.json").write_text('{"loss": [1.0]}')
    metrics = EvaluationMetrics(
        accuracy=0.75, macro_precision=0.7, macro_recall=0.75, macro_f1=0.72, per_class=[], confusion_matrix=[],
        most_confused=[], test_images=8,
    )  # fmt: skip
    (run_dir / "evaluation" / "metrics.json").write_text(metrics.model_dump_json())
    (run_dir / "evaluation" / "confusion.png").write_bytes(b"png bytes")
    train_path = write_train_split(tmp_path / "train.parquet")
    dataset = DatasetRecord(
        dataset_fingerprint="f" * 64, dataset_dir=str(tmp_path), classes=CLASSES, image_shape=[4, 4, 3],
        splits={"train": 6}, files_found=6, quarantined=0, quarantine_examples=[],
        manifest=str(tmp_path / "manifest.parquet"), parquet={"train": train_path}, contracts={},
    )  # fmt: skip
    training = TrainResult(
        model_path=run_dir / "model.keras", history={"loss": [1.0]}, epochs_run=1, resumed_from_epoch=0,
        seconds=2.0, train_images_per_second=3.0, seed=0, precision="float32",
    )  # fmt: skip
    evaluation = EvaluationResult(
        metrics=metrics,
        metrics_path=run_dir / "evaluation" / "metrics.json",
        confusion_png=run_dir / "evaluation" / "confusion.png",
    )
    return dataset, training, evaluation


def test_the_task_registers_everything_and_promotes_as_the_gate_decided(candidate, tmp_path):
    root = tmp_path / "models"
    preset = resolve_preset("tiny", {"epochs": 1})
    finished_record = candidate[1].model_path.parent / FINISHED_TRAINING_FILE
    finished_record.write_text("{}")
    promoted = register_model_task.fn(*candidate, preset, GateDecision(True, "first", None, None), root)
    assert not finished_record.exists(), "a registered model's training is not reused by the next run"
    assert promoted.model_dump() == {
        "model_version": "v0001",
        "model_path": str(root / "v0001" / "model.keras"),
        "promoted": True,
        "gate_reason": "first",
        "champion_version": "v0001",
    }
    assert sorted(path.name for path in (root / "v0001").iterdir()) == [
        "confusion.png", "history.json", "metadata.json", "metrics.json", "model.keras",
    ]  # fmt: skip
    stored = json.loads((root / "v0001" / "metadata.json").read_text())
    assert list(stored) == [
        "dataset_fingerprint", "dataset_dir", "contract_versions", "class_names", "input_shape", "training_profile",
        "preset", "hyperparameters", "seed", "precision", "epochs_run", "train_seconds", "train_images_per_second",
        "metrics", "packages", "git_commit", "gate", "registered_at", "version", "exports", "machine",
    ], "metadata.json keeps its fields, in the order registries have always held them, new ones last"  # fmt: skip
    assert stored["machine"]["kind"] in MACHINE_KINDS
    assert stored["exports"] is None, "registered without an export, it scores on Keras"
    assert stored["metrics"] == {"accuracy": 0.75, "macro_precision": 0.7, "macro_recall": 0.75, "macro_f1": 0.72,
                                 "per_class": []}  # fmt: skip
    assert stored["class_names"] == CLASSES and stored["input_shape"] == [4, 4, 3]
    assert stored["contract_versions"] == {"raw": "7"} and stored["metrics"]["accuracy"] == 0.75
    assert stored["hyperparameters"]["train"]["epochs"] == 1 and stored["preset"] == "tiny"
    assert stored["training_profile"]["images"] == 6 and stored["training_profile"]["channel_mean"] == [150.0] * 3
    assert stored["training_profile"]["class_share"] == {"cat": 0.5, "dog": 0.5}

    decision = GateDecision(False, "worse than v0001", "v0001", 0.8)
    rejected = register_model_task.fn(*candidate, preset, decision, root)
    assert rejected.model_version == "v0002" and not rejected.promoted and rejected.champion_version == "v0001"
    stored = json.loads((root / "v0002" / "metadata.json").read_text())
    assert stored["gate"]["promoted"] is False and stored["gate"]["reason"] == "worse than v0001"
    assert read_champion(root).version == "v0001", "a rejected model never moves the champion"


def test_a_missing_training_split_fails_before_anything_is_registered(candidate, tmp_path):
    dataset, training, evaluation = candidate
    moved = dataset.model_copy(update={"parquet": {"train": str(tmp_path / "gone.parquet")}})
    with pytest.raises(FileNotFoundError):
        register_model_task.fn(
            moved, training, evaluation, resolve_preset("tiny"), GateDecision(True, "", None, None), tmp_path / "models"
        )
    assert not (tmp_path / "models").exists()


def test_the_commit_recorded_is_the_one_checked_out(tmp_path):
    repository = tmp_path / "checkout"
    repository.mkdir()
    git = ["git", "-C", str(repository), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repository / "file.txt").write_text("one")
    subprocess.run([*git, "add", "file.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    (repository / "sub").mkdir()
    assert git_commit(repository / "sub") == head and len(head) == 40
    outside = tmp_path / "not-a-checkout"
    outside.mkdir()
    assert git_commit(outside) is None


def test_package_versions_name_the_libraries_that_shape_a_model():
    versions = package_versions()
    assert {"tensorflow", "keras", "numpy", "visionflow"} <= set(versions)
    assert all(isinstance(version, str) and version[0].isdigit() for version in versions.values())


def test_with_mlflow_on_the_registration_is_mirrored_there(candidate, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    decision, preset = GateDecision(True, "first", None, None), resolve_preset("tiny", {"epochs": 1})
    registration = register_model_task.fn(*candidate, preset, decision, tmp_path / "models")
    champion = MlflowClient(uri).get_model_version_by_alias("visionflow", "champion")
    assert champion.tags["visionflow_version"] == registration.model_version == "v0001"
    run = MlflowClient(uri).get_run(champion.run_id)
    assert run.data.metrics["test_accuracy"] == 0.75 and run.data.params["preset"] == "tiny"


@pytest.mark.usefixtures("prefect_server")
def test_inside_a_flow_the_registration_shows_the_champion_history(candidate, tmp_path):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    @flow(name="register-test")
    def register_flow():
        decision = GateDecision(True, "first", None, None)
        return register_model_task(*candidate, resolve_preset("tiny"), decision, tmp_path / "models")

    state = register_flow(return_state=True)
    run_filter = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        artifacts = {artifact.key: artifact for artifact in client.read_artifacts(artifact_filter=run_filter)}
    history = json.loads(artifacts["champion-history"].data)
    assert history[0]["to_version"] == "v0001" and history[0]["reason"] == "first"
    assert history[0]["by"].startswith("flow run ")
