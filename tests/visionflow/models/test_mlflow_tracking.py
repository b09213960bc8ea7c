"""MLflow mirroring against a real tracking store (SQLite): runs, metrics, artifacts, versions, alias."""

from __future__ import annotations

import logging

import pytest

from visionflow.models.mlflow_tracking import (
    CHAMPION_ALIAS,
    VERSION_TAG,
    flatten,
    mirror_registration,
    move_champion_alias,
)


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    """A fresh SQLite tracking store, named by MLFLOW_TRACKING_URI as a user would."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # The SQLite store keeps run artifacts under ./mlruns by default.
    from mlflow import MlflowClient

    return MlflowClient(uri)


@pytest.fixture
def files(tmp_path):
    model = tmp_path / "model.keras"
    model.write_bytes(b"model bytes")
    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"accuracy": 0.8}')
    return model, [metrics, tmp_path / "missing.png"]


def mirror(version: str, promoted: bool, files) -> str:
    model, extra = files
    history = {"loss": [1.0, 0.5, 0.25], "val_accuracy": [0.5, 0.7, 0.8]}
    parameters = {"preset": "tiny", "train": {"epochs": 3, "learning_rate": 0.01}}
    return mirror_registration(version, parameters, history, {"accuracy": 0.8}, extra, model, promoted)


def test_a_registration_becomes_a_run_and_a_model_version_with_the_champion_alias(tracking, files):
    run_id = mirror("v0001", True, files)
    run = tracking.get_run(run_id)
    assert run.data.params["train.epochs"] == "3" and run.data.params["preset"] == "tiny"
    assert run.data.metrics["test_accuracy"] == 0.8 and run.data.tags[VERSION_TAG] == "v0001"
    assert [point.value for point in tracking.get_metric_history(run_id, "loss")] == [1.0, 0.5, 0.25]
    assert [point.step for point in tracking.get_metric_history(run_id, "loss")] == [1, 2, 3]
    artifacts = {item.path for item in tracking.list_artifacts(run_id, "evaluation")}
    assert artifacts == {"evaluation/metrics.json"}
    assert {item.path for item in tracking.list_artifacts(run_id, "model")} == {"model/model.keras"}
    champion = tracking.get_model_version_by_alias("visionflow", CHAMPION_ALIAS)
    assert champion.tags[VERSION_TAG] == "v0001" and champion.run_id == run_id


def test_the_alias_follows_visionflows_champion(tracking, files):
    mirror("v0001", True, files)
    mirror("v0002", False, files)
    assert tracking.get_model_version_by_alias("visionflow", CHAMPION_ALIAS).tags[VERSION_TAG] == "v0001"
    assert move_champion_alias("v0002")
    assert tracking.get_model_version_by_alias("visionflow", CHAMPION_ALIAS).tags[VERSION_TAG] == "v0002"
    assert not move_champion_alias("v0042"), "a version registered before mirroring leaves the alias"


def test_off_without_a_tracking_uri_and_harmless_when_broken(files, monkeypatch, tmp_path, caplog):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mirror("v0001", True, files) is None and not move_champion_alias("v0001")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker}/mlflow.db")
    with caplog.at_level(logging.WARNING, logger="visionflow.models.mlflow_tracking"):
        assert mirror("v0001", True, files) is None
    assert "could not mirror v0001 to MLflow" in caplog.text


def test_nested_settings_become_dotted_parameters():
    assert flatten({"a": {"b": 1, "c": {"d": None}}, "e": "x"}) == {"a.b": "1", "a.c.d": "None", "e": "x"}
