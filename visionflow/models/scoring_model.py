"""The model a scoring run predicts with: its engine chosen, its file checked, loaded once per process.

A registered model scores on Keras (model.keras) or on an inference engine that runs its ONNX
export (visionflow/engines/). "auto" takes the export that passed its parity check and ran fastest
when exported, else Keras. Only the Keras engine imports TensorFlow: a process that scores with an
export never does. An exported file is used only while its sha256 matches the registry's record.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from visionflow.engines.engine_exports import (
    AUTO,
    KERAS,
    Engine,
    EngineChoice,
    ModelExports,
    read_checked_export,
)
from visionflow.engines.runtimes import open_runtime
from visionflow.errors import BadInputError, InvalidSettingError
from visionflow.images.imaging import ImageSpec
from visionflow.images.workers import decode_for_scoring
from visionflow.models.prediction import (
    ShardPredictions,
    load_warm_model,
    model_is_warm,
    predict_images,
    uses_flip_tta,
)
from visionflow.models.registry import ModelRecord, load_model


@dataclass(frozen=True)
class ScoringModel:
    """A loaded model on one engine: predict_on_batch as Keras', and whether it trained on mirrored images."""

    engine: Engine  # The engine it runs on.
    runtime: Any  # The Keras model or the engine's predictor.
    trained_with_flips: bool  # Flip test-time augmentation is on by default exactly when this is true.
    num_classes: int  # Width of its probabilities.

    def predict_on_batch(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.runtime.predict_on_batch(images), dtype=np.float32)

    @property
    def input_shape(self) -> tuple:
        """(None, height, width, channels), as Keras models give it."""
        return (None, *self.runtime.input_shape[-3:])

    @property
    def output_shape(self) -> tuple:
        """(None, classes), as Keras models give it."""
        return (None, self.num_classes)


def resolve_engine(record: ModelRecord, choice: EngineChoice) -> Engine:
    """The engine the record scores with when `choice` is asked for (see choose_engine)."""
    return choose_engine(record.exports, choice, record.version)


def choose_engine(exports: ModelExports | None, choice: EngineChoice, name: str) -> Engine:
    """The engine a model with these exports predicts on when `choice` is asked for.

    auto: the passed float32 export that ran fastest when exported, else Keras. A named engine must
    have an export that passed its check; otherwise the error says why and what to ask for instead.
    """
    if choice == KERAS:
        return KERAS
    if choice == AUTO:
        fastest = exports.fastest_passed() if exports else None
        return fastest.engine if fastest else KERAS
    export = exports.export_of(choice) if exports else None
    if export is None:
        int8 = " --int8" if choice.endswith("-int8") else ""
        raise InvalidSettingError(
            f"model {name} has no {choice} export: make it with `visionflow models export {name}{int8}`, "
            "or score with --engine auto or keras"
        )
    if not export.passed:
        raise InvalidSettingError(
            f"model {name}'s {choice} export may not score ({export.reason}); score with --engine auto or keras"
        )
    return choice


def open_export(folder: Path, exports: ModelExports, engine: Engine, name: str) -> ScoringModel:
    """An export in folder on its engine, loaded from bytes whose sha256 matches the record (else
    DamagedStateError, exit 6), and warmed up."""
    export = exports.export_of(engine)
    if export is None:
        raise InvalidSettingError(f"model {name} has no {engine} export to predict with")
    runtime = open_runtime(engine, read_checked_export(folder, export, name))
    scoring = ScoringModel(engine, runtime, exports.flip_tta, runtime.num_classes)
    _warm_up(scoring)
    return scoring


def open_model_file(model_path: Path, exports: ModelExports | None, name: str) -> ScoringModel:
    """The model at model_path on the engine scoring takes by default (auto): its export beside it, or
    the Keras model itself. Evaluation and the gate predict through it, so what they measure is
    what scoring will deliver."""
    engine = choose_engine(exports, AUTO, name)
    if engine == KERAS:
        model = load_model(model_path)
        return ScoringModel(KERAS, model, uses_flip_tta(model, None), int(model.output_shape[-1]))
    return open_export(Path(model_path).parent, exports, engine, name)


# Engine predictors this process opened, by (file, sha256, engine), the most recently used last: a
# service scores drop after drop with the champion, and opening a runtime again costs more than
# scoring a small drop.
_RUNTIMES: OrderedDict[tuple[str, str, str], ScoringModel] = OrderedDict()
_RUNTIMES_LOCK = threading.Lock()
RUNTIMES_KEPT_OPEN = 4  # At most this many engine predictors stay open per process.


def load_scoring_model(record: ModelRecord) -> ScoringModel:
    """The record's model on record.engine, checked and warm (its first batches already run).

    Keras: registry.load_checked_model's model, its predict function traced. An export: its file,
    checked against the record's sha256 on every call (DamagedStateError, exit 6, when it differs)
    and opened on its runtime the first time.
    """
    if record.engine == KERAS:
        model = load_warm_model(record)
        return ScoringModel(KERAS, model, uses_flip_tta(model, None), len(record.class_names))
    export = record.exports.export_of(record.engine) if record.exports else None
    if export is None:
        raise InvalidSettingError(f"model {record.version} has no {record.engine} export to score with")
    key = (str(record.folder / export.file), export.sha256, record.engine)
    with _RUNTIMES_LOCK:
        if key in _RUNTIMES:
            read_checked_export(record.folder, export, record.version)  # Still the bytes checked when opened.
            _RUNTIMES.move_to_end(key)
        else:
            _RUNTIMES[key] = open_export(record.folder, record.exports, record.engine, record.version)
            while len(_RUNTIMES) > RUNTIMES_KEPT_OPEN:
                _RUNTIMES.popitem(last=False)
        scoring = _RUNTIMES[key]
    if scoring.num_classes != len(record.class_names):
        raise BadInputError(
            f"model {record.version}'s {record.engine} export predicts {scoring.num_classes} classes but its registry "
            f"record names {len(record.class_names)}: rebuild it with `visionflow models export {record.version}`"
        )
    return scoring


def scoring_model_is_warm(record: ModelRecord) -> bool:
    """Whether this process holds the record's model on its engine, loaded and ready (nothing loads here)."""
    if record.engine == KERAS:
        return model_is_warm(record)
    export = record.exports.export_of(record.engine) if record.exports else None
    if export is None:
        return False
    return (str(record.folder / export.file), export.sha256, record.engine) in _RUNTIMES


def _warm_up(scoring: ScoringModel) -> None:
    """Run one blank image, then two: the engine plans its graph before the first real batch."""
    input_shape = scoring.input_shape[1:]
    for size in (1, 2):
        scoring.predict_on_batch(np.zeros((size, *input_shape), dtype=np.uint8))


def decode_and_predict_shard(
    rows: Sequence[tuple[str, str, int]],
    spec: ImageSpec,
    root: str,
    record: ModelRecord,
    batch_size: int,
    flip_tta: bool | None,
) -> ShardPredictions:
    """Decode (absolute path, expected sha256, bytes) rows and predict them: one scoring shard on a
    Dask worker. The model is loaded once per worker process, on the record's engine, and reused
    while its file is unchanged."""
    sha256s: list[str] = []
    pixels: list[bytes] = []
    rejected: list[tuple[str, str]] = []
    for sha256, decoded, reason in decode_for_scoring(rows, spec, root):
        if decoded is None:
            rejected.append((sha256, reason))
        else:
            sha256s.append(sha256)
            pixels.append(decoded)
    images = np.frombuffer(b"".join(pixels), dtype=np.uint8).reshape(len(pixels), *record.input_shape)
    return predict_images(load_scoring_model(record), images, sha256s, rejected, batch_size, flip_tta)
