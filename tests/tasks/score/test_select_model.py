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


def test_a_model_whose_first_use_export_fails_still_scores_on_keras_with_auto(tmp_path, monkeypatch, caplog):
    from tests.engine_helpers import register_exported_model

    caplog.set_level(logging.WARNING)
    models = tmp_path / "models"
    version = register_exported_model(models, tmp_path / "dataset", export=False)

    def broken_export(*arguments, **settings):
        raise RuntimeError("the converter crashed")

    monkeypatch.setattr("visionflow.models.registry_exports.export_registered", broken_export)
    assert select_model_task.fn(models, version, "auto").engine == "keras"
    assert "could not be exported (the converter crashed); auto scores it on Keras" in caplog.text


def test_an_int8_engine_on_a_model_never_exported_is_refused_before_any_export(tmp_path):
    from visionflow.errors import InvalidSettingError

    from tests.engine_helpers import register_exported_model

    models = tmp_path / "models"
    version = register_exported_model(models, tmp_path / "dataset", export=False)
    with pytest.raises(InvalidSettingError, match=f"visionflow models export {version} --int8"):
        select_model_task.fn(models, version, "openvino-int8")
    assert not list((models / version).glob("*.onnx")), "nothing was exported"
