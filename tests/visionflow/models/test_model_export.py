"""Exporting a model: the ONNX files, each engine's parity and speed recorded, a failed converter
recorded rather than raised, and a registered version's exports written to its metadata."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import keras
import numpy as np

from visionflow.engines.engine_exports import FP32_FILE, INT8_FILE, file_sha256
from visionflow.engines.parity import MAX_PROBABILITY_DIFFERENCE
from visionflow.models.model_export import ExportConfig, calibration_sample, export_model
from visionflow.models.registry import load_model
from visionflow.network.build_model import build_model, channel_statistics
from visionflow.network.initializers import patch_whitening_kernel
from visionflow.tasks.train.recipe.presets import PRESETS

from tests.engine_helpers import QUICK_EXPORT, random_images, write_train_split
from tests.scoring_helpers import SHAPE

CLASSES = 3


def tiny_network(augment: bool = False) -> keras.Model:
    """The tiny preset's network, untrained; with augment, behind RandomTranslation and RandomFlip layers
    and standardised by a Normalization layer, the layers the inference twin replaces."""
    keras.utils.set_random_seed(5)
    if not augment:
        return build_model(PRESETS["tiny"].model, SHAPE, CLASSES)
    config = PRESETS["tiny"].model.model_copy(update={"augment": True, "normalization": "standardize"})
    return build_model(config, SHAPE, CLASSES, channel_stats=channel_statistics(random_images(20, seed=6)))


def test_a_model_exports_to_both_engines_with_parity_speed_and_the_files_digest(tmp_path):
    images, labels = random_images(30, seed=1), np.arange(30) % CLASSES
    exports = export_model(tiny_network(), tmp_path, images, labels, None, QUICK_EXPORT)
    assert exports.failure is None
    assert exports.flip_tta is False
    assert datetime.fromisoformat(exports.exported_at).tzinfo is not None
    assert exports.keras_images_per_second > 0
    assert [export.engine for export in exports.engines] == ["onnx", "openvino"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [FP32_FILE]
    for export in exports.engines:
        assert export.passed, export.reason
        assert export.file == FP32_FILE
        assert export.sha256 == file_sha256(tmp_path / FP32_FILE)
        assert export.parity.images == 30
        assert export.parity.labels_agree == 1.0
        assert export.parity.max_probability_difference <= MAX_PROBABILITY_DIFFERENCE
        assert export.reason.startswith("parity: ")
        assert export.images_per_second > 0
        assert export.machine
        assert export.test_accuracy is None
    assert exports.fastest_passed().engine in ("onnx", "openvino")


def test_a_model_trained_with_augmentation_exports_its_twin_and_records_flip_tta(tmp_path):
    images, labels = random_images(20, seed=2), np.arange(20) % CLASSES
    exports = export_model(tiny_network(augment=True), tmp_path, images, labels, None, QUICK_EXPORT)
    assert exports.failure is None
    assert exports.flip_tta is True
    assert all(export.passed for export in exports.engines), [export.reason for export in exports.engines]


def test_the_default_network_as_training_saves_it_exports_and_passes_parity(tmp_path):
    # Saved and loaded as training does: its training-only layers become Keras' own, and it computes
    # in bfloat16 where the machine has it; parity is against its float32 twin.
    train = random_images(30, seed=7)
    stats = channel_statistics(train)
    keras.utils.set_random_seed(5)
    model = build_model(
        PRESETS["default"].model,
        SHAPE,
        CLASSES,
        channel_stats=stats,
        whitening_kernel=patch_whitening_kernel(train, stats),
    )
    model.save(tmp_path / "model.keras")
    exports = export_model(
        load_model(tmp_path / "model.keras"), tmp_path, train, np.arange(30) % CLASSES, None, QUICK_EXPORT
    )
    assert exports.failure is None
    assert exports.flip_tta is True
    assert [(export.engine, export.passed) for export in exports.engines] == [("onnx", True), ("openvino", True)]


def test_an_int8_export_is_recorded_with_its_test_accuracy_and_never_chosen_as_float32(tmp_path):
    images, labels = random_images(30, seed=3), np.arange(30) % CLASSES
    config = QUICK_EXPORT.model_copy(update={"int8": True, "calibration_images": 20})
    exports = export_model(tiny_network(), tmp_path, images, labels, random_images(40, seed=4), config)
    assert [export.engine for export in exports.engines] == ["onnx", "openvino", "onnx-int8", "openvino-int8"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [INT8_FILE, FP32_FILE]
    for export in exports.engines[2:]:
        assert export.file == INT8_FILE
        assert export.sha256 == file_sha256(tmp_path / INT8_FILE)
        assert 0.0 <= export.test_accuracy <= 1.0
        assert export.parity is None
        assert "test accuracy" in export.reason
    assert exports.fastest_passed().file == FP32_FILE


def test_int8_without_calibration_images_makes_only_the_float32_exports(tmp_path):
    config = QUICK_EXPORT.model_copy(update={"int8": True})
    exports = export_model(tiny_network(), tmp_path, random_images(10), np.zeros(10, int), None, config)
    assert [export.engine for export in exports.engines] == ["onnx", "openvino"]
    assert not (tmp_path / INT8_FILE).exists()


def test_a_failing_converter_is_recorded_and_leaves_no_engine(tmp_path, monkeypatch):
    def broken_converter(twin, path):
        raise RuntimeError("tf2onnx cannot convert this graph")

    monkeypatch.setattr("visionflow.engines.onnx_export.export_onnx", broken_converter)
    exports = export_model(tiny_network(), tmp_path, random_images(10), np.zeros(10, int), None, QUICK_EXPORT)
    assert exports.failure == "the ONNX export failed (RuntimeError: tf2onnx cannot convert this graph)"
    assert exports.engines == []
    assert exports.fastest_passed() is None
    assert list(tmp_path.iterdir()) == []


def test_a_runtime_that_cannot_run_the_file_is_recorded_as_refused_and_the_other_engine_still_scores(
    tmp_path, monkeypatch
):
    from visionflow.engines import runtimes

    real_open = runtimes.open_runtime

    def open_or_refuse(engine, model):
        if engine == "openvino":
            raise RuntimeError("unsupported operation")
        return real_open(engine, model)

    monkeypatch.setattr("visionflow.models.model_export.open_runtime", open_or_refuse)
    exports = export_model(tiny_network(), tmp_path, random_images(10), np.zeros(10, int), None, QUICK_EXPORT)
    refused = exports.export_of("openvino")
    assert (
        refused.passed is False and "could not run the export (RuntimeError: unsupported operation)" in refused.reason
    )
    assert refused.images_per_second is None
    assert exports.fastest_passed().engine == "onnx"


def test_calibration_sample_spreads_over_the_training_split(tmp_path):
    path, images = write_train_split(tmp_path, count=30)
    sample = calibration_sample(path, ExportConfig(calibration_images=10))
    np.testing.assert_array_equal(sample, images[::3])
    assert sample.flags.c_contiguous
    everything = calibration_sample(Path(path), ExportConfig(calibration_images=100))
    np.testing.assert_array_equal(everything, images)
