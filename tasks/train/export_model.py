"""Training stage 2, before evaluation: export the trained model to the inference engines.

The model's float32 graph is written as ONNX beside model.keras in the run folder, checked on the
test split against Keras (visionflow/models/model_export.py) and timed on each engine, so the
evaluation and the gate that follow predict on the engine scoring will use, and registration
keeps the files with their sha256. A model whose export fails or misses parity is still trained,
evaluated and registered: it scores on Keras, and `visionflow models show` says why.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from visionflow.engines.engine_exports import AUTO, Engine, ModelExports
from visionflow.errors import BadInputError
from visionflow.images.splits import load_split_arrays
from visionflow.models.model_export import ExportConfig, calibration_sample, export_model
from visionflow.models.registry import load_model
from visionflow.models.scoring_model import choose_engine
from visionflow.run_context import publish_table, run_logger

EXPORTS_ARTIFACT_KEY = "model-exports"


class ExportResult(BaseModel):
    """What exporting a trained model produced."""

    exports: ModelExports  # The record metadata.json keeps: each engine's file, check and speed.
    files: dict[str, Path]  # The exported files by name, in the run folder, for registration to copy.
    engine: Engine  # The engine scoring takes by default ("auto"): the fastest passed export, else keras.


def export_trained_model(model_path: Path, test_path: str, train_path: str, config: ExportConfig) -> ExportResult:
    """Export the run's model.keras next to itself; parity on the test split, int8 calibrated on training images."""
    model_path = Path(model_path)
    for path in (test_path, train_path) if config.int8 else (test_path,):
        if not Path(path).is_file():
            raise BadInputError(f"split file not found: {path}: ingest the dataset again (`visionflow ingest`)")
    test_images, test_labels, _ = load_split_arrays(test_path)
    calibration = calibration_sample(train_path, config) if config.int8 else None
    exports = export_model(load_model(model_path), model_path.parent, test_images, test_labels, calibration, config)
    names = {name for name in exports.files() if (model_path.parent / name).is_file()}
    files = {name: model_path.parent / name for name in sorted(names)}
    return ExportResult(exports=exports, files=files, engine=choose_engine(exports, AUTO, model_path.parent.name))


@task(name="export-model", cache_policy=NO_CACHE)
def export_model_task(model_path: Path, test_path: str, train_path: str, config: ExportConfig) -> ExportResult:
    """Prefect task: export the trained model and log each engine's check and speed."""
    log = run_logger(__name__)
    result = export_trained_model(model_path, test_path, train_path, config)
    if result.exports.failure:
        log.warning("no export: %s; the model scores on Keras", result.exports.failure)
    for export in result.exports.engines:
        speed = f"{export.images_per_second:,.0f} images/s" if export.images_per_second else "speed not measured"
        log.info("%s export %s: %s (%s)", export.engine, "passed" if export.passed else "refused", export.reason, speed)
    log.info(
        "scoring will use %s by default (Keras ran %s images/s)", result.engine, result.exports.keras_images_per_second
    )
    publish_table(
        EXPORTS_ARTIFACT_KEY, engine_rows(result.exports), f"Engines of the trained model; auto: {result.engine}"
    )
    return result


def engine_rows(exports: ModelExports) -> list[dict]:
    """One table row per engine, Keras first: what the UI shows of a model's exports."""
    keras = {"engine": "keras", "file": "model.keras", "scores": True,
             "images/s": exports.keras_images_per_second, "check": "the model as trained"}  # fmt: skip
    return [keras] + [
        {
            "engine": export.engine,
            "file": export.file,
            "scores": export.passed,
            "images/s": export.images_per_second,
            "check": export.reason,
        }  # fmt: skip
        for export in exports.engines
    ]
