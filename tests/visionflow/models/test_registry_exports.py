"""Exporting a registered version: made aside, swapped in under names with their digests, recorded
in its metadata; refused when the splits it is checked or calibrated on are gone."""

from __future__ import annotations

import pytest

from visionflow.engines.engine_exports import FP32_FILE, INT8_FILE, file_sha256, versioned_name
from visionflow.errors import BadInputError
from visionflow.images.splits import split_file
from visionflow.models.model_export import ExportConfig
from visionflow.models.registry import find_model, read_metadata
from visionflow.models.registry_exports import export_registered

from tests.engine_helpers import QUICK_EXPORT, register_exported_model, write_train_split
from tests.registry_helpers import write_test_split
from tests.scoring_helpers import register_tiny_model


def test_export_registered_refuses_a_model_whose_test_split_is_gone(tmp_path):
    models_root, dataset_dir = tmp_path / "models", tmp_path / "dataset"
    version = register_exported_model(models_root, dataset_dir)
    before = (models_root / version / "metadata.json").read_text()
    split_file(dataset_dir, "test").unlink()
    with pytest.raises(BadInputError) as raised:
        export_registered(models_root, version, QUICK_EXPORT)
    assert raised.value.exit_code == 4
    assert str(split_file(dataset_dir, "test")) in str(raised.value)
    assert "`visionflow ingest`" in str(raised.value)
    assert (models_root / version / "metadata.json").read_text() == before


def test_export_registered_refuses_a_model_that_records_no_dataset(tmp_path):
    version = register_tiny_model(tmp_path / "models")
    with pytest.raises(BadInputError, match=r"test split \(not recorded\)"):
        export_registered(tmp_path / "models", version, QUICK_EXPORT)
    assert read_metadata(tmp_path / "models" / version).exports is None
    assert not (tmp_path / "models" / version / FP32_FILE).exists()


def test_a_first_use_export_keeps_the_exports_another_run_recorded_while_an_explicit_one_redoes_them(tmp_path):
    models = tmp_path / "models"
    version = register_exported_model(models, tmp_path / "dataset")
    first = read_metadata(models / version).exports
    kept = export_registered(models, version, QUICK_EXPORT, again=False)
    assert kept == first, "a scoring run that waited for the lock uses the export made meanwhile"
    redone = export_registered(models, version, QUICK_EXPORT)
    assert redone.exported_at >= first.exported_at and read_metadata(models / version).exports == redone


def test_int8_without_the_training_split_is_refused_before_anything_is_written(tmp_path):
    models = tmp_path / "models"
    version = register_exported_model(models, tmp_path / "dataset", export=False)
    with pytest.raises(BadInputError, match=r"training split .* is not there.*without --int8"):
        export_registered(models, version, ExportConfig(int8=True))
    assert not (models / version / FP32_FILE).exists() and read_metadata(models / version).exports is None


def test_a_second_export_swaps_in_files_named_by_their_digest_and_removes_the_ones_no_longer_named(tmp_path):
    models = tmp_path / "models"
    version = register_exported_model(models, tmp_path / "dataset")
    folder = models / version
    first = read_metadata(folder).exports
    redone = export_registered(models, version, QUICK_EXPORT)
    names = redone.files()
    assert names == {versioned_name(FP32_FILE, redone.export_of("onnx").sha256)}
    for export in redone.engines:
        assert file_sha256(folder / export.file) == export.sha256
    for name in first.files() - names:
        assert not (folder / name).exists(), "a file the record no longer names is removed"
    assert not list(models.glob(".staging-*")), "the staging folder is gone"


def test_export_registered_records_the_exports_in_the_versions_metadata(tmp_path):
    models_root, dataset_dir = tmp_path / "models", tmp_path / "dataset"
    version = register_exported_model(models_root, dataset_dir)
    folder = models_root / version
    metadata = read_metadata(folder)
    assert metadata.dataset_dir == str(dataset_dir)
    assert metadata.class_names == ["blue", "green", "red"]
    assert [export.engine for export in metadata.exports.engines] == ["onnx", "openvino"]
    for export in metadata.exports.engines:
        assert export.passed, export.reason
        assert export.sha256 == file_sha256(folder / export.file)
        assert export.parity.images == 30  # The whole test split registry_helpers writes.
    assert find_model(models_root, version).exports == metadata.exports


def test_export_registered_int8_calibrates_on_the_training_split(tmp_path):
    models_root, dataset_dir = tmp_path / "models", tmp_path / "dataset"
    write_test_split(dataset_dir, per_class=5)
    write_train_split(dataset_dir, count=24)
    config = QUICK_EXPORT.model_copy(update={"int8": True, "calibration_images": 8})
    version = register_exported_model(models_root, dataset_dir, config)
    exports = read_metadata(models_root / version).exports
    assert [export.engine for export in exports.engines] == ["onnx", "openvino", "onnx-int8", "openvino-int8"]
    int8 = exports.export_of("onnx-int8")
    assert int8.file == versioned_name(INT8_FILE, int8.sha256)
    assert int8.sha256 == file_sha256(models_root / version / int8.file)
