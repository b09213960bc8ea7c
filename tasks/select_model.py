"""Scoring stage 0: find the registered model to score with, and load it safely.

"champion" follows the registry's champion pointer; "v0003" names a version. The model is
loaded with Keras' safe mode (no pickled code) and held to its registry record: a model whose
input shape or class count differs from what its metadata.json says is refused, because the
drop would be decoded to one shape and fed to a network expecting another.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from tasks.errors import BadInputError
from tasks.profile_images import ImageProfile
from tasks.register_model import METADATA_FILE, MODEL_FILE, read_champion
from tasks.run_context import run_logger

if TYPE_CHECKING:
    import keras

CHAMPION = "champion"


class ModelRecord(BaseModel):
    """What scoring needs to know about a registered model."""

    version: str  # Registry version, e.g. "v0003".
    model_path: Path  # The model.keras file.
    class_names: list[str]  # Class of each output, in output order.
    input_shape: tuple[int, int, int]  # (height, width, channels) of the images the model takes.
    training_profile: ImageProfile | None = None  # Statistics of the training images; None for older models.


def select_model(models_root: Path, model: str = CHAMPION) -> ModelRecord:
    """The record of `model` ("champion" or a version). Raises BadInputError when there is none."""
    models_root = Path(models_root)
    if model == CHAMPION:
        pointer = read_champion(models_root)
        if pointer is None:
            raise BadInputError(
                f"no champion model yet in {models_root}: train one first (`visionflow train --data ...`), "
                "or pass --model with a registered version"
            )
        version = pointer["version"]
    else:
        version = model
    folder = models_root / version
    metadata_path = folder / METADATA_FILE
    if not metadata_path.is_file():
        known = sorted(path.name for path in models_root.glob("v[0-9]*") if (path / METADATA_FILE).is_file())
        raise BadInputError(
            f"no registered model {version!r} in {models_root}; registered: {', '.join(known) or 'none'} "
            "(or use --model champion)"
        )
    if not (folder / MODEL_FILE).is_file():
        raise BadInputError(f"model {version} has no {MODEL_FILE} in {folder}: the registry entry is incomplete")
    metadata = json.loads(metadata_path.read_text())
    profile = metadata.get("training_profile")
    return ModelRecord(
        version=version,
        model_path=folder / MODEL_FILE,
        class_names=metadata["class_names"],
        input_shape=tuple(metadata["input_shape"]),
        training_profile=ImageProfile.model_validate(profile) if profile else None,
    )


def load_checked_model(record: ModelRecord) -> keras.Model:
    """The Keras model of a record, loaded in safe mode and checked against the record."""
    import keras  # Imported here: TensorFlow takes seconds to import.

    try:
        model = keras.models.load_model(record.model_path, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged file; all mean the same here.
        raise BadInputError(
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


@task(name="select-model", cache_policy=NO_CACHE)
def select_model_task(models_root: Path, model: str) -> ModelRecord:
    """Prefect task: select_model, logged."""
    record = select_model(Path(models_root), model)
    run_logger(__name__).info(
        "scoring with model %s (%s, %d classes, input %s)",
        record.version,
        record.model_path,
        len(record.class_names),
        "x".join(str(size) for size in record.input_shape),
    )
    return record
