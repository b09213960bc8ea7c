"""Exporting a model to the inference engines: the ONNX files, the parity check, the speed of each.

Training exports every model before evaluating it (tasks/train/export_model.py), so evaluation and
the gate measure what scoring will deliver; `visionflow models export VERSION` and a scoring run's
first use export models registered before, under the registry's lock. The float32 ONNX file runs on
ONNX Runtime and on OpenVINO; each engine scores only if its probabilities match Keras' (the
model's float32 twin: a bfloat16 model's own predictions are float32's rounded) on the model's
test split. An int8 variant scores only if its test accuracy is within half a point of float32's.
"""

from __future__ import annotations

import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

from visionflow.engines.engine_exports import (
    FP32_FILE,
    INT8_FILE,
    KERAS,
    EngineExport,
    ModelExports,
    file_sha256,
)
from visionflow.engines.parity import int8_verdict, parity_check, parity_verdict
from visionflow.engines.runtimes import open_runtime
from visionflow.errors import BadInputError
from visionflow.images.splits import load_split_arrays, split_file
from visionflow.models.champion import champion_lock
from visionflow.models.prediction import predict_probabilities, uses_flip_tta
from visionflow.models.registry import find_model, load_checked_model, read_metadata, write_metadata
from visionflow.models.scoring_model import ScoringModel

if TYPE_CHECKING:
    import keras

FP32_ENGINES = ("onnx", "openvino")
INT8_ENGINES = ("onnx-int8", "openvino-int8")
TIMING_ROUNDS = 3  # Passes over the timing images per side; the fastest counts.


class ExportConfig(BaseModel):
    """What exporting a model makes and measures."""

    engines: list[Literal["onnx", "openvino"]] = list(FP32_ENGINES)  # Float32 engines to check and record.
    int8: bool = False  # Also quantise to int8 (calibrated on training images); kept only if accurate enough.
    calibration_images: int = Field(default=512, ge=1)  # Training images whose activations set the int8 ranges.
    timing_images: int = Field(default=2048, ge=1)  # Test images each engine's speed is measured on.
    batch_size: int = Field(default=256, ge=1)  # Images per predict call, as scoring's default.


def export_model(
    model: keras.Model,
    folder: Path,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    calibration_images: np.ndarray | None,
    config: ExportConfig,
) -> ModelExports:
    """Write the model's ONNX files into folder, check and time each engine; the record of it all.

    A converter failure is recorded (ModelExports.failure), not raised: the model still scores on Keras.
    """
    from visionflow.engines.onnx_export import export_onnx
    from visionflow.network.inference_twin import inference_twin

    if tuple(model.input_shape[1:]) != tuple(test_images.shape[1:]):
        raise BadInputError(
            f"the model takes images of shape {tuple(model.input_shape[1:])} but its test split holds "
            f"{tuple(test_images.shape[1:])}: export with the split the model was trained on"
        )
    flips = uses_flip_tta(model, None)
    exported_at = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        twin = inference_twin(model)
        export_onnx(twin, Path(folder) / FP32_FILE)
    except Exception as error:  # tf2onnx and Keras raise many types; each means "no export".
        failure = f"the ONNX export failed ({type(error).__name__}: {str(error)[:300]})"
        return ModelExports(flip_tta=flips, exported_at=exported_at, failure=failure)
    reference = predict_probabilities(twin, test_images, config.batch_size, flip_tta=False)
    classes = reference.shape[1] if reference.size else int(model.output_shape[-1])
    checked: list[tuple[EngineExport, ScoringModel]] = []
    for engine in config.engines:
        probe = _open(engine, Path(folder) / FP32_FILE, classes, flips)
        check = parity_check(reference, predict_probabilities(probe, test_images, config.batch_size, flip_tta=False))
        passed, reason = parity_verdict(check)
        checked.append((_record(engine, Path(folder) / FP32_FILE, passed, reason, parity=check), probe))
    if config.int8 and calibration_images is not None:
        checked += _int8_exports(folder, test_images, test_labels, calibration_images, classes, flips, config)
    sides = {KERAS: model, **{export.engine: probe for export, probe in checked}}
    speeds = alternating_speeds(sides, test_images[: config.timing_images], config.batch_size)
    exports = [export.model_copy(update={"images_per_second": speeds[export.engine]}) for export, _ in checked]
    return ModelExports(flip_tta=flips, engines=exports, keras_images_per_second=speeds[KERAS], exported_at=exported_at)


def _int8_exports(folder, test_images, test_labels, calibration, classes, flips, config) -> list[tuple]:
    """The int8 variants and their predictors, each judged on its test accuracy against the float32 file's."""
    from visionflow.engines.int8 import quantize_int8

    fp32_path, int8_path = Path(folder) / FP32_FILE, Path(folder) / INT8_FILE
    quantize_int8(fp32_path, int8_path, calibration[: config.calibration_images])
    fp32 = _open("onnx", fp32_path, classes, flips)
    fp32_accuracy = _accuracy(fp32, test_images, test_labels, config.batch_size)
    checked = []
    for engine in INT8_ENGINES:
        probe = _open(engine, int8_path, classes, flips)
        accuracy = _accuracy(probe, test_images, test_labels, config.batch_size)
        passed, reason = int8_verdict(accuracy, fp32_accuracy)
        checked.append((_record(engine, int8_path, passed, reason, test_accuracy=accuracy), probe))
    return checked


def _open(engine: str, path: Path, classes: int, flips: bool) -> ScoringModel:
    return ScoringModel(engine, open_runtime(engine, path), flips, classes)


def _accuracy(probe: ScoringModel, images: np.ndarray, labels: np.ndarray, batch_size: int) -> float:
    """Share of images classified correctly, with flip test-time augmentation as the model trained."""
    if len(images) == 0:
        return 0.0
    probabilities = predict_probabilities(probe, images, batch_size, flip_tta=None)
    return round(float(np.mean(probabilities.argmax(axis=1) == labels)), 4)


def _record(engine, path: Path, passed: bool, reason: str, **facts) -> EngineExport:
    return EngineExport(
        engine=engine,
        file=path.name,
        sha256=file_sha256(path),
        passed=passed,
        reason=reason,
        machine=cpu_name(),
        **facts,
    )


def alternating_speeds(sides: dict[str, object], images: np.ndarray, batch_size: int) -> dict[str, float | None]:
    """Images per second of each side's single-view predictions of images: the best of TIMING_ROUNDS
    passes taken in turn, after a warm-up batch each, so a spell of load on a shared machine slows
    every side alike rather than the one it happened to fall on."""
    if len(images) == 0:
        return dict.fromkeys(sides)
    for model in sides.values():
        predict_probabilities(model, images[:batch_size], batch_size, flip_tta=False)
    best = dict.fromkeys(sides, 0.0)
    for _ in range(TIMING_ROUNDS):
        for name, model in sides.items():
            started = time.perf_counter()
            predict_probabilities(model, images, batch_size, flip_tta=False)
            best[name] = max(best[name], len(images) / (time.perf_counter() - started))
    return {name: round(speed, 1) for name, speed in best.items()}


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), for the record of a measured speed."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def export_registered(models_root: Path, version: str, config: ExportConfig, again: bool = True) -> ModelExports:
    """Export a registered version from its checked model.keras, parity checked on its own test split,
    and record the exports in its metadata; under the registry's lock, files and record replaced whole.

    again=False keeps exports another process recorded while this one waited for the lock (two
    scoring runs meeting an unexported model export it once).

    Raises BadInputError when the version's test split is gone (parity cannot be checked without it).
    """
    record = find_model(Path(models_root), version)
    metadata = read_metadata(record.folder)
    test_path = split_file(metadata.dataset_dir, "test") if metadata.dataset_dir else None
    if test_path is None or not Path(test_path).is_file():
        raise BadInputError(
            f"model {version}'s test split ({test_path or 'not recorded'}) is not there, and its exports are checked "
            "on it: ingest the dataset it was trained on again (`visionflow ingest`), then export"
        )
    train_path = split_file(metadata.dataset_dir, "train")
    if config.int8 and not train_path.is_file():
        raise BadInputError(
            f"model {version}'s training split ({train_path}) is not there, and int8 is calibrated on it: ingest the "
            "dataset it was trained on again (`visionflow ingest`), or export without --int8"
        )
    images, labels, _ = load_split_arrays(test_path)
    calibration = calibration_sample(train_path, config) if config.int8 else None
    with champion_lock(Path(models_root)):
        current = read_metadata(record.folder)  # As it is now, under the lock.
        if current.exports is not None and not again:
            return current.exports
        exports = export_model(load_checked_model(record), record.folder, images, labels, calibration, config)
        write_metadata(record.folder, current.model_copy(update={"exports": exports}))
    return exports


def calibration_sample(train_path: str | Path, config: ExportConfig) -> np.ndarray:
    """config.calibration_images images spread evenly over the training split at train_path."""
    images, _, _ = load_split_arrays(train_path)
    step = max(1, len(images) // config.calibration_images)
    return np.ascontiguousarray(images[::step][: config.calibration_images])
