"""Training's export stage: the run's model.keras exported beside itself, and the engine scoring will take."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from visionflow.engines.engine_exports import FP32_FILE, INT8_FILE, file_sha256
from visionflow.errors import BadInputError
from visionflow.images.splits import split_file
from visionflow.network.build_model import build_model
from visionflow.tasks.train.export_model import export_trained_model
from visionflow.tasks.train.recipe.presets import PRESETS

from tests.engine_helpers import QUICK_EXPORT, write_train_split
from tests.registry_helpers import write_test_split
from tests.scoring_helpers import CLASSES, SHAPE


@pytest.fixture
def trained_run(tmp_path):
    """(a run folder's model.keras, the dataset folder with its test and training splits)."""
    keras.utils.set_random_seed(9)
    run = tmp_path / "run"
    run.mkdir()
    build_model(PRESETS["tiny"].model, SHAPE, len(CLASSES)).save(run / "model.keras")
    dataset = tmp_path / "dataset"
    write_test_split(dataset)
    write_train_split(dataset)
    return run / "model.keras", dataset


def test_the_trained_model_is_exported_beside_itself_and_auto_takes_the_fastest_export(trained_run):
    model_path, dataset = trained_run
    result = export_trained_model(
        model_path, str(split_file(dataset, "test")), str(split_file(dataset, "train")), QUICK_EXPORT
    )
    assert result.exports.failure is None
    assert result.files == {FP32_FILE: model_path.parent / FP32_FILE}
    assert all(path.is_file() for path in result.files.values())
    assert result.engine == result.exports.fastest_passed().engine
    assert result.engine in ("onnx", "openvino")
    for export in result.exports.engines:
        assert export.passed, export.reason
        assert export.sha256 == file_sha256(result.files[export.file])


def test_int8_adds_its_file_to_the_files_registration_copies(trained_run):
    model_path, dataset = trained_run
    config = QUICK_EXPORT.model_copy(update={"int8": True, "calibration_images": 10})
    result = export_trained_model(
        model_path, str(split_file(dataset, "test")), str(split_file(dataset, "train")), config
    )
    assert sorted(result.files) == [INT8_FILE, FP32_FILE]
    assert all(path.is_file() for path in result.files.values())
    assert result.engine in ("onnx", "openvino")  # auto never takes an int8 variant.


def test_a_failed_export_leaves_the_model_on_keras(trained_run, monkeypatch):
    def broken_converter(twin, path):
        raise ValueError("unsupported operator")

    monkeypatch.setattr("visionflow.engines.onnx_export.export_onnx", broken_converter)
    model_path, dataset = trained_run
    result = export_trained_model(
        model_path, str(split_file(dataset, "test")), str(split_file(dataset, "train")), QUICK_EXPORT
    )
    assert result.engine == "keras"
    assert result.files == {}
    assert "ValueError: unsupported operator" in result.exports.failure


def test_a_missing_test_split_is_named_in_the_error(trained_run, tmp_path):
    model_path, dataset = trained_run
    missing = tmp_path / "elsewhere" / "test.parquet"
    with pytest.raises(BadInputError, match=re.escape(str(missing))):
        export_trained_model(model_path, str(missing), str(split_file(dataset, "train")), QUICK_EXPORT)
    assert not (model_path.parent / FP32_FILE).exists()


def test_a_test_split_of_another_image_shape_is_refused_before_anything_is_written(trained_run, tmp_path):
    from visionflow.models.model_export import ExportConfig, export_model
    from visionflow.models.registry import load_model

    model_path, _dataset = trained_run
    other_shape = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(
        BadInputError, match=r"takes images of shape \(12, 12, 3\) but its test split holds \(8, 8, 3\)"
    ):
        export_model(load_model(model_path), tmp_path, other_shape, np.zeros(4, dtype=np.int64), None, ExportConfig())
    assert not (tmp_path / "model.onnx").exists()


def test_the_ui_table_lists_keras_then_every_engine_with_its_check():
    from visionflow.engines.engine_exports import EngineExport, ModelExports
    from visionflow.tasks.train.export_model import engine_rows

    refused = EngineExport(engine="onnx", file=FP32_FILE, sha256="0" * 64, passed=False, reason="below parity")
    rows = engine_rows(ModelExports(flip_tta=False, engines=[refused], keras_images_per_second=900.0))
    assert [row["engine"] for row in rows] == ["keras", "onnx"] and rows[0]["images/s"] == 900.0
    assert rows[1]["scores"] is False and rows[1]["check"] == "below parity"
