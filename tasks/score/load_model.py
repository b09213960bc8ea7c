"""Scoring stage 1, beside the listing: load the model on its engine and warm it up ahead of use.

Loading a model (and, on Keras, tracing its predict function) costs a fresh process about as much
as predicting a few thousand small images, and none of it needs the drop. The score flow submits this stage
while it lists and hashes the drop (work done by worker processes), so the scoring stage finds
the model loaded and ready (visionflow/models/scoring_model.py keeps it per process).
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from visionflow.models.registry import ModelRecord
from visionflow.models.scoring_model import load_scoring_model
from visionflow.run_context import run_logger


@task(name="load-model", cache_policy=NO_CACHE)
def load_model_task(record: ModelRecord) -> bool:
    """Prefect task, submitted at a flow's start: load and trace the model; whether that worked.

    A failure is only logged here: the scoring stage loads the model itself and stops with the
    error, worded for the person who runs it.
    """
    started = time.perf_counter()
    try:
        load_scoring_model(record)
    except Exception as error:
        run_logger(__name__).warning("model %s did not load ahead of scoring: %s", record.version, error)
        return False
    seconds = time.perf_counter() - started
    run_logger(__name__).info(
        "model %s loaded on %s, ready to predict, in %.2f s", record.version, record.engine, seconds
    )
    return True
