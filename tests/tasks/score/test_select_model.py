"""Scoring's first stage: the model named by the run is found in the registry and logged."""

from __future__ import annotations

import logging

import pytest

from visionflow.errors import BadInputError
from visionflow.tasks.score.select_model import select_model_task

from tests.scoring_helpers import CLASSES, SHAPE, register_tiny_model


def test_the_task_finds_the_champion_and_a_named_version(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    models = tmp_path / "models"
    first = register_tiny_model(models)
    second = register_tiny_model(models, champion=False)
    champion = select_model_task.fn(models, "champion")
    assert champion.version == first and champion.class_names == CLASSES and champion.input_shape == SHAPE
    assert select_model_task.fn(models, second).version == second
    assert f"scoring with model {second}" in caplog.text and "input 12x12x3" in caplog.text


def test_the_task_refuses_a_registry_without_a_champion(tmp_path):
    with pytest.raises(BadInputError, match="no champion model yet.*visionflow train"):
        select_model_task.fn(tmp_path / "models", "champion")
