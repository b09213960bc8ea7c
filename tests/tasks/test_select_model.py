"""Choosing the model to score with: champion or version, held to its registry record."""

from __future__ import annotations

import json

import pytest

from tasks.errors import BadInputError
from tasks.select_model import load_checked_model, select_model, select_model_task
from tests.scoring_helpers import CLASSES, SHAPE, register_tiny_model


def test_the_champion_and_a_named_version_are_found_and_load(tmp_path):
    models = tmp_path / "models"
    first = register_tiny_model(models)
    second = register_tiny_model(models, champion=False)
    champion = select_model_task.fn(models, "champion")
    assert champion.version == first and champion.class_names == CLASSES and champion.input_shape == SHAPE
    assert champion.training_profile is not None and champion.training_profile.images == 100
    named = select_model(models, second)
    assert named.version == second
    assert load_checked_model(named).output_shape == (None, len(CLASSES))


def test_no_champion_yet_says_to_train_first(tmp_path):
    with pytest.raises(BadInputError, match="no champion model yet.*visionflow train"):
        select_model(tmp_path / "models")


def test_an_unknown_version_lists_the_registered_ones(tmp_path):
    version = register_tiny_model(tmp_path / "models")
    with pytest.raises(BadInputError, match=f"no registered model 'v0099'.*registered: {version}"):
        select_model(tmp_path / "models", "v0099")


def test_a_model_whose_shape_differs_from_its_record_is_refused(tmp_path):
    version = register_tiny_model(tmp_path / "models")
    metadata_path = tmp_path / "models" / version / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata_path.write_text(json.dumps({**metadata, "input_shape": [32, 32, 3]}))
    record = select_model(tmp_path / "models")
    with pytest.raises(BadInputError, match=r"takes images of shape \(12, 12, 3\) but its registry record says"):
        load_checked_model(record)


def test_a_damaged_model_file_is_refused(tmp_path):
    version = register_tiny_model(tmp_path / "models")
    (tmp_path / "models" / version / "model.keras").write_bytes(b"not a keras file")
    with pytest.raises(BadInputError, match=f"cannot load model {version}"):
        load_checked_model(select_model(tmp_path / "models"))
