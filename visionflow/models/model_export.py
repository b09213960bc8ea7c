"""Exporting a model to the inference engines: the ONNX files, the parity check, the speed of each.

Training exports every model before evaluating it (tasks/train/export_model.py), so evaluation and
the gate measure what scoring will deliver; registered versions are exported again, or for the
first time, through visionflow/models/registry_exports.py. The float32 ONNX file runs on
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
    FP32_ENGINES,
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
from visionflow.images.splits import load_split_arrays
from visionflow.models.prediction import predict_probabilities, uses_flip_tta
from visionflow.models.scoring_model import ScoringModel

if TYPE_CHECKING:
    import keras

TIMING_ROUNDS = 3  # Passes over the timing images per side; the fastest counts.


class ExportConfig(BaseModel):
    """What exporting a model makes and measures."""

    # Runtimes to check and record, each on the float32 file (and on the int8 file with int8).
    engines: list[Literal["onnx", "openvino"]] = Field(default=list(FP32_ENGINES), min_length=1)
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

    Failures are recorded, not raised, and the model still scores on Keras: the converter's as
    ModelExports.failure, a runtime's or the quantiser's as a refused engine with the reason. Only
    a test split of another image shape is an error (BadInputError).
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
        failure = f"the ONNX export failed ({_brief(error)})"
        return ModelExports(flip_tta=flips, exported_at=exported_at, failure=failure)
    reference = predict_probabilities(twin, test_images, config.batch_size, flip_tta=False)
    checked: list[tuple[EngineExport, ScoringModel | None]] = []
    for engine in config.engines:
        checked.append(_checked_engine(engine, Path(folder) / FP32_FILE, reference, test_images, flips, config))
    if config.int8 and calibration_images is not None:
        checked += _int8_exports(folder, test_images, test_labels, calibration_images, flips, config)
    sides = {KERAS: model, **{export.engine: probe for export, probe in checked if probe is not None}}
    speeds = alternating_speeds(sides, test_images[: config.timing_images], config.batch_size)
    exports = [export.model_copy(update={"images_per_second": speeds.get(export.engine)}) for export, _ in checked]
    return ModelExports(flip_tta=flips, engines=exports, keras_images_per_second=speeds[KERAS], exported_at=exported_at)


def _checked_engine(engine, path: Path, reference, test_images, flips, config) -> tuple[EngineExport, object]:
    """A float32 engine's parity with the reference, and its predictor (None when it could not run the file)."""
    try:
        probe = _open(engine, path, flips)
        check = parity_check(reference, predict_probabilities(probe, test_images, config.batch_size, flip_tta=False))
    except Exception as error:  # A runtime refusing the graph means this engine cannot score the model.
        return _record(engine, path, False, f"{engine} could not run the export ({_brief(error)})"), None
    passed, reason = parity_verdict(check)
    return _record(engine, path, passed, reason, parity=check), probe


def _int8_exports(folder, test_images, test_labels, calibration, flips, config) -> list[tuple[EngineExport, object]]:
    """The int8 variants and their predictors, each judged on its test accuracy against the float32 file's."""
    from visionflow.engines.int8 import quantize_int8

    fp32_path, int8_path = Path(folder) / FP32_FILE, Path(folder) / INT8_FILE
    try:
        quantize_int8(fp32_path, int8_path, calibration[: config.calibration_images])
        fp32_accuracy = _accuracy(
            _open(config.engines[0], fp32_path, flips), test_images, test_labels, config.batch_size
        )
    except Exception as error:  # No int8 file, or no float32 accuracy to judge it by: no int8 engine.
        reason = f"the int8 quantisation failed ({_brief(error)})"
        return [(_record(f"{runtime}-int8", int8_path, False, reason), None) for runtime in config.engines]
    checked = []
    for engine in (f"{runtime}-int8" for runtime in config.engines):
        try:
            probe = _open(engine, int8_path, flips)
            accuracy = _accuracy(probe, test_images, test_labels, config.batch_size)
        except Exception as error:
            checked.append((_record(engine, int8_path, False, f"{engine} could not run it ({_brief(error)})"), None))
            continue
        passed, reason = int8_verdict(accuracy, fp32_accuracy, len(test_images))
        checked.append((_record(engine, int8_path, passed, reason, test_accuracy=accuracy), probe))
    return checked


def _open(engine: str, path: Path, flips: bool) -> ScoringModel:
    runtime = open_runtime(engine, path)
    return ScoringModel(engine, runtime, flips, runtime.num_classes)


def _brief(error: Exception) -> str:
    """An error in a few words for a record: its type and the start of its message."""
    return f"{type(error).__name__}: {str(error)[:200]}"


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


def calibration_sample(train_path: str | Path, config: ExportConfig) -> np.ndarray:
    """config.calibration_images images spread evenly over the training split at train_path."""
    images, _, _ = load_split_arrays(train_path)
    step = max(1, len(images) // config.calibration_images)
    return np.ascontiguousarray(images[::step][: config.calibration_images])
