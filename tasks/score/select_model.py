"""Scoring stage 0: find the registered model to score with, and the engine it predicts on.

"champion" follows the registry's champion pointer; "v0003" names a version. The registry
(visionflow/models/registry.py) owns the lookup and the safe, checked loading; the engine is the
one asked for, or with "auto" the fastest export that passed its parity check, else Keras
(visionflow/models/scoring_model.py). A model registered before visionflow exported models is
exported here, once, on its first use by a non-Keras engine. This stage logs what was chosen, so
a run's log says which model and engine scored its drop.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from visionflow.engines.engine_exports import AUTO, FP32_ENGINES, EngineChoice
from visionflow.models.registry import ModelRecord, find_model
from visionflow.models.scoring_model import resolve_engine
from visionflow.run_context import run_logger


def select_model(models_root: Path, model: str, engine: EngineChoice = AUTO) -> ModelRecord:
    """The record of `model` ("champion" or a version), its engine resolved from `engine`."""
    record = find_model(Path(models_root), model)
    # A float32 engine (or auto) on a model never exported: export it now. int8 is made only when
    # asked for, by `visionflow models export VERSION --int8`, which resolve_engine's refusal names.
    if engine in (AUTO, *FP32_ENGINES) and record.exports is None:
        record = _export_on_first_use(Path(models_root), record)
    return record.model_copy(update={"engine": resolve_engine(record, engine)})


def _export_on_first_use(models_root: Path, record: ModelRecord) -> ModelRecord:
    """Export a model that has no exports yet (under the registry's lock), or say why it cannot be."""
    from visionflow.models.model_export import ExportConfig
    from visionflow.models.registry_exports import export_registered  # Imports TensorFlow: once.

    log = run_logger(__name__)
    log.info("model %s has no exports yet: exporting it now, once", record.version)
    try:
        export_registered(models_root, record.version, ExportConfig(), again=False)
    except Exception as error:  # Keras can still score it: a failed export must not stop the run.
        log.warning("model %s could not be exported (%s); auto scores it on Keras", record.version, error)
        return record
    return find_model(models_root, record.version)


@task(name="select-model", cache_policy=NO_CACHE)
def select_model_task(models_root: Path, model: str, engine: EngineChoice = AUTO) -> ModelRecord:
    """Prefect task: the record of `model` ("champion" or a version) and its engine, logged."""
    record = select_model(models_root, model, engine)
    run_logger(__name__).info(
        "scoring with model %s on %s (%s, %d classes, input %s)",
        record.version,
        record.engine,
        record.model_path,
        len(record.class_names),
        "x".join(str(size) for size in record.input_shape),
    )
    return record
