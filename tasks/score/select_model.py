"""Scoring stage 0: find the registered model to score with.

"champion" follows the registry's champion pointer; "v0003" names a version. The registry
(visionflow/models/registry.py) owns the lookup and the safe, checked loading; this stage logs what
was chosen, so a run's log says which model scored its drop.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from visionflow.models.registry import ModelRecord, find_model
from visionflow.run_context import run_logger


@task(name="select-model", cache_policy=NO_CACHE)
def select_model_task(models_root: Path, model: str) -> ModelRecord:
    """Prefect task: the record of `model` ("champion" or a version), logged."""
    record = find_model(Path(models_root), model)
    run_logger(__name__).info(
        "scoring with model %s (%s, %d classes, input %s)",
        record.version,
        record.model_path,
        len(record.class_names),
        "x".join(str(size) for size in record.input_shape),
    )
    return record
