"""Scoring's model-loading stage: the model is loaded and traced ahead, or the failure only logged."""

from __future__ import annotations

import logging

from visionflow.models.prediction import model_is_warm
from visionflow.models.registry import find_model
from visionflow.tasks.score.load_model import load_model_task

from tests.scoring_helpers import register_tiny_model


def test_the_task_leaves_the_model_loaded_and_traced(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    register_tiny_model(tmp_path / "models")
    record = find_model(tmp_path / "models")
    assert not model_is_warm(record)
    assert load_model_task.fn(record) is True
    assert model_is_warm(record)
    assert f"model {record.version} loaded on keras, ready to predict" in caplog.text


def test_a_damaged_model_is_logged_and_left_to_the_scoring_stage(tmp_path, caplog):
    register_tiny_model(tmp_path / "models")
    record = find_model(tmp_path / "models")
    record.model_path.write_bytes(b"not a zip archive")
    assert load_model_task.fn(record) is False
    assert not model_is_warm(record)
    assert f"model {record.version} did not load ahead of scoring" in caplog.text
    assert "damaged or truncated" in caplog.text
