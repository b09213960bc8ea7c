"""The model registry: versions, each model's metadata, finding a model (the champion too), and safe loading.

Every trained model is registered under VISIONFLOW_HOME/models/<version>/ (model.keras, its ONNX
exports, metadata.json and the files that explain it). This module owns metadata.json, read and
written as ModelMetadata. models/champion.json (champion_pointer.py) names the champion, which
champion.py moves. Models load with Keras' safe mode: nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from visionflow.atomic import write_json_atomically
from visionflow.engines.engine_exports import KERAS, Engine, ModelExports
from visionflow.errors import BadInputError, DamagedStateError, InvalidSettingError, first_validation_problem
from visionflow.images.image_profile import ImageProfile
from visionflow.models.champion_pointer import read_champion
from visionflow.models.evaluation_metrics import RecordedMetrics
from visionflow.models.metadata_records import GateRecord, LabelsSnapshotRecord, MachineChoiceRecord

if TYPE_CHECKING:
    import keras

CHAMPION = "champion"  # The name that means "whichever version the champion pointer names".
VERSION_PATTERN = re.compile(r"v[0-9]{4,}")  # Registered versions: v0001, v0002, ...
MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"


class ModelRecord(BaseModel):
    """What scoring needs to know about a registered model."""

    version: str  # Registry version, e.g. "v0003".
    model_path: Path  # The model.keras file.
    class_names: list[str]  # Class of each output, in output order.
    input_shape: tuple[int, int, int]  # (height, width, channels) of the images the model takes, in pixels.
    training_profile: ImageProfile | None = None  # Statistics of the training images; None for older models.
    exports: ModelExports | None = None  # Its exports to inference engines; None until it is exported.
    engine: Engine = KERAS  # The engine it scores with, once scoring has chosen (models/scoring_model.py).

    @property
    def folder(self) -> Path:  # The version's folder in the registry.
        return self.model_path.parent


class ModelMetadata(BaseModel):
    """metadata.json of a registered version: its data, recipe, results and provenance.

    Registries written by older visionflow versions, or by hand, may lack any field, so every one
    has a default and only the fields the file holds are written back (find_model names the ones
    scoring needs). Fields this visionflow does not know are kept as they are.
    """

    model_config = ConfigDict(extra="allow")

    dataset_fingerprint: str | None = None  # sha256 of the dataset trained on (its ingest's fingerprint).
    dataset_dir: str | None = None  # The folder of that dataset's split files; its test split is gated on.
    contract_versions: dict[str, str] = {}  # Version of each data contract the dataset passed, by suite.
    class_names: list[str] | None = None  # Class of each model output, in output order.
    input_shape: list[int] | None = None  # [height, width, channels] of the images the model takes, in pixels.
    training_profile: ImageProfile | None = None  # The training images' statistics, the drift reference.
    preset: str | None = None  # The training recipe's name.
    hyperparameters: dict[str, Any] = {}  # The recipe's settings, as the preset resolved them.
    seed: int | None = None  # Seed of the weights, augmentation and shuffling.
    precision: str | None = None  # Keras dtype policy of the compute layers.
    epochs_run: int | None = None  # Epochs trained, resumed ones included.
    train_seconds: float | None = None  # Wall-clock seconds of the fit.
    train_images_per_second: float | None = None  # Training throughput, validation excluded.
    metrics: RecordedMetrics | None = None  # The test results; None when none were recorded.
    packages: dict[str, str] = {}  # Installed version of each package that shapes a model, by name.
    git_commit: str | None = None  # The visionflow commit it was trained with; None outside a git checkout.
    gate: GateRecord | None = None  # The gate's decision at registration.
    registered_at: str | None = None  # When it was registered, ISO 8601 in UTC.
    version: str | None = None  # Its registry version, e.g. "v0003".
    exports: ModelExports | None = None  # Its exports to inference engines (visionflow/engines/engine_exports.py).
    labels: LabelsSnapshotRecord | None = None  # The reviewed labels it learnt from; None: its folders' alone.
    # The machine kind its recipe was sized for, and what that changed; None in records older than the choice.
    machine: MachineChoiceRecord | None = None

    def file_fields(self) -> dict[str, Any]:
        """The fields as metadata.json holds them: those set, in this order, then unknown ones."""
        return self.model_dump(mode="json", exclude_unset=True)


def read_metadata(version_dir: Path) -> ModelMetadata:
    """A registered version's metadata.json. Raises DamagedStateError when it cannot be read as one."""
    path = Path(version_dir) / METADATA_FILE
    try:
        fields = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        fields = None
    if not isinstance(fields, dict):
        raise DamagedStateError(
            f"the model metadata {path} is damaged (not a JSON object): restore it from a backup, or move "
            f"{Path(version_dir)} out of {Path(version_dir).parent} and register the model again by training"
        )
    try:
        return ModelMetadata.model_validate(fields)
    except ValidationError as error:
        raise DamagedStateError(
            f"the model metadata {path} is damaged ({first_validation_problem(error)}): restore it from a backup, "
            f"or move {Path(version_dir)} out of {Path(version_dir).parent} and register the model again by training"
        ) from None


def write_metadata(version_dir: Path, metadata: ModelMetadata) -> None:
    """Replace a registered version's metadata.json atomically; the caller holds the registry's lock."""
    write_json_atomically(Path(version_dir) / METADATA_FILE, metadata.file_fields())


def register(model_files: dict[str, Path], metadata: ModelMetadata, models_root: Path) -> str:
    """Copy a model and its files into a new version folder; return the version ("v0001", ...).

    The folder is filled under a temporary name and renamed into place, so a version folder
    that exists is complete. Versions are claimed with an exclusive rename, so two runs
    registering at once get different versions.
    """
    models_root = Path(models_root)
    models_root.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(models_root)
    staging = models_root / f".staging-{os.getpid()}-{datetime.now(UTC).strftime('%H%M%S%f')}"
    staging.mkdir()
    try:
        for name, source in model_files.items():
            shutil.copy2(source, staging / name)
        while True:
            version = next_version(models_root)
            write_metadata(staging, metadata.model_copy(update={"version": version}))
            try:
                os.rename(staging, models_root / version)
                return version
            except OSError:
                if not (models_root / version).exists():
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_abandoned_staging(models_root: Path) -> list[Path]:
    """Delete staging folders of registrations whose process is gone (killed mid-copy); return them.

    A staging folder never holds the only copy of anything: its files are copies of a training
    run's outputs, which stay in the run folder.
    """
    removed = []
    for folder in Path(models_root).glob(".staging-*"):
        pid = folder.name.split("-")[1]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def process_alive(pid: int) -> bool:
    """True while a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # It exists but belongs to someone else.
        pass
    return True


def next_version(models_root: Path) -> str:
    """The next free version name: one more than the highest registered."""
    numbers = [int(path.name[1:]) for path in Path(models_root).glob("v[0-9]*") if path.name[1:].isdigit()]
    return f"v{max(numbers, default=0) + 1:04d}"


def find_model(models_root: Path, model: str = CHAMPION) -> ModelRecord:
    """The record of `model` ("champion" or a version). Raises BadInputError when there is none."""
    models_root = Path(models_root)
    if model == CHAMPION:
        pointer = read_champion(models_root)
        if pointer is None:
            raise BadInputError(
                f"no champion model yet in {models_root}: train one first (`visionflow train --data ...`), "
                "or pass --model with a registered version"
            )
        version = pointer.version
    elif VERSION_PATTERN.fullmatch(model):
        version = model
    else:
        # Never a path: a model name reaches the file system only as a folder of the registry.
        raise InvalidSettingError(
            f"{model!r} is not a model version: use 'champion' or a registered version such as v0002"
        )
    folder = models_root / version
    if not (folder / METADATA_FILE).is_file():
        known = sorted(path.name for path in models_root.glob("v[0-9]*") if (path / METADATA_FILE).is_file())
        raise BadInputError(
            f"no registered model {version!r} in {models_root}; registered: {', '.join(known) or 'none'} "
            "(or 'champion' for the current champion)"
        )
    if not (folder / MODEL_FILE).is_file():
        raise BadInputError(f"model {version} has no {MODEL_FILE} in {folder}: the registry entry is incomplete")
    metadata = read_metadata(folder)
    missing = [name for name in ("class_names", "input_shape") if getattr(metadata, name) is None]
    if missing:
        raise DamagedStateError(
            f"the model metadata {folder / METADATA_FILE} lacks {', '.join(missing)}: restore it from a backup, "
            "or register the model again by training"
        )
    return ModelRecord(
        version=version,
        model_path=folder / MODEL_FILE,
        class_names=metadata.class_names,
        input_shape=tuple(metadata.input_shape),
        training_profile=metadata.training_profile,
        exports=metadata.exports,
    )


def load_model(path: str | Path) -> keras.Model:
    """A saved Keras model, loaded in safe mode (no pickled code runs)."""
    import keras  # Imported here: TensorFlow takes seconds to import.

    if Path(path).is_file() and not zipfile.is_zipfile(path):
        # Keras reports such a file as "File not found", which sends a person looking in the wrong place.
        raise ValueError(f"{path} is not a Keras model file: it is damaged or truncated")
    return keras.models.load_model(path, safe_mode=True)


# Models this process loaded, by file identity; one service process scores drop after drop with
# the same champion, and loading it again (and tracing its predict function again) costs more
# than scoring a small drop. A changed or replaced file has a new identity and loads afresh.
_LOADED_MODELS: dict[tuple, keras.Model] = {}
MODELS_KEPT_LOADED = 2  # At most this many models stay loaded per process (the champion and one other).


def load_checked_model(record: ModelRecord) -> keras.Model:
    """The Keras model of a record, loaded in safe mode and checked against the record.

    A model whose input shape or class count differs from what its metadata.json says is refused:
    the images would be decoded to one shape and fed to a network expecting another. The model
    this process loaded last from the same, unchanged file is reused.
    """
    identity = _file_identity(record)
    if identity in _LOADED_MODELS:
        return _LOADED_MODELS[identity]
    model = _load_and_check(record)
    if identity is not None:
        while len(_LOADED_MODELS) >= MODELS_KEPT_LOADED:
            _LOADED_MODELS.pop(next(iter(_LOADED_MODELS)))
        _LOADED_MODELS[identity] = model
    return model


def loaded_model(record: ModelRecord) -> keras.Model | None:
    """The model load_checked_model holds for the record's unchanged file, or None: nothing loads here."""
    return _LOADED_MODELS.get(_file_identity(record))


def _file_identity(record: ModelRecord) -> tuple | None:
    """What tells two loads of one file apart from loads of a changed file; None when it cannot be read."""
    try:
        status = os.stat(record.model_path)
    except OSError:
        return None
    facts = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)
    return (str(record.model_path), *facts, tuple(record.input_shape), tuple(record.class_names))


def _load_and_check(record: ModelRecord) -> keras.Model:
    try:
        model = load_model(record.model_path)
    except Exception as error:  # Keras raises many types for a damaged file; all mean the same here.
        raise DamagedStateError(
            f"cannot load model {record.version} from {record.model_path} ({type(error).__name__}: {error}); "
            "score with another version (--model) or retrain"
        ) from None
    model_shape = tuple(model.input_shape[1:])
    if model_shape != tuple(record.input_shape):
        raise BadInputError(
            f"model {record.version} takes images of shape {model_shape} but its registry record says "
            f"{tuple(record.input_shape)}: the registry entry does not belong to this model file; "
            "score with another version (--model) or retrain"
        )
    if model.output_shape[-1] != len(record.class_names):
        raise BadInputError(
            f"model {record.version} predicts {model.output_shape[-1]} classes but its registry record names "
            f"{len(record.class_names)}: score with another version (--model) or retrain"
        )
    return model
