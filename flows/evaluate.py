"""The evaluate flow: a registered model measured on a new labelled folder, alone or beside another.

select model -> ingest the folder as an evaluation set (subflow: the same scan, decode and
contracts as training data, every image in the test split, at the model's input size) ->
evaluate (metrics.json, confusion.png, predictions.parquet, artifacts) -> with `compare`, the
second model on the same split and the two side by side.
"""

from __future__ import annotations

import time

from prefect import flow
from pydantic import BaseModel

from visionflow.access import check_deployment_parameters
from visionflow.engines.engine_exports import KERAS
from visionflow.errors import BadInputError
from visionflow.flows.ingest import IngestConfig, ingest_flow
from visionflow.home import resolve_home
from visionflow.models.registry import CHAMPION
from visionflow.tasks.ingest.prepare_source import source_folders
from visionflow.tasks.score.select_model import select_model_task
from visionflow.tasks.train.compare_models import Comparison, compare_models_task
from visionflow.tasks.train.evaluate_model import EvaluationConfig, evaluate_model_task


class EvaluateSummary(BaseModel):
    """What one evaluate flow run measured."""

    model_version: str  # The registered model evaluated.
    data: str  # The labelled folder it was evaluated on.
    dataset_fingerprint: str  # That folder's evaluation set (its ingest fingerprint).
    images: int  # Labelled images evaluated.
    accuracy: float  # Share classified correctly, 0 to 1.
    macro_f1: float  # Mean per-class F1, 0 to 1.
    metrics_path: str  # metrics.json: per-class table, confusion matrix, most-confused pairs.
    confusion_png: str  # The confusion matrix as a picture.
    predictions_path: str  # predictions.parquet: every image's true and predicted class.
    comparison: Comparison | None  # The second model beside this one, when compare was given.
    seconds: float  # Wall-clock seconds of the whole flow run.


def evaluation_ingest_config(ingest: IngestConfig | None, input_shape: tuple[int, int, int]) -> IngestConfig:
    """Ingest settings that decode like the model's training data and put every image in test."""
    config = ingest or IngestConfig()
    decode = config.decode.model_copy(update={"image_size": input_shape[0], "channels": input_shape[2]})
    split = config.split.model_copy(update={"evaluation_only": True})
    return config.model_copy(update={"decode": decode, "split": split})


@flow(name="evaluate", flow_run_name="evaluate-{model}-{data}")
def evaluate_flow(
    data: str,
    model: str = CHAMPION,
    compare: str | None = None,
    ingest: IngestConfig | None = None,
    evaluation: EvaluationConfig | None = None,
    home: str | None = None,
) -> EvaluateSummary:
    """Evaluate a registered model on a labelled folder; with compare, a second model beside it.

    Args:
        data: A labelled image folder (<class>/<images>) with the model's classes.
        model: "champion" or a registered version such as "v0002".
        compare: Another registered version to put side by side with it on the same images.
        ingest: Scanning and contract settings (image size and channels follow the model).
        evaluation: Batch size and flip test-time augmentation.
        home: VISIONFLOW_HOME to use; empty means the serving process's.
    """
    started = time.perf_counter()
    check_deployment_parameters(home, source_folders(data))
    layout, evaluation = resolve_home(home), evaluation or EvaluationConfig()
    # Keras as the run's engine: evaluating never exports a model; each model is measured on the
    # engine its own exports give scoring by default (evaluate_model_task), Keras when it has none.
    record = select_model_task(layout.models, model, KERAS)
    other = select_model_task(layout.models, compare, KERAS) if compare else None
    if other is not None and other.version == record.version:
        raise BadInputError(f"--compare names {other.version}, the model being evaluated: choose another version")
    dataset = ingest_flow(data=data, config=evaluation_ingest_config(ingest, record.input_shape), home=str(layout.root))
    output = layout.evaluations / f"{record.version}-{dataset.dataset_fingerprint[:12]}"
    test_path = dataset.parquet["test"]
    evaluated = evaluate_model_task(
        str(record.model_path), test_path, output, evaluation, record.class_names, record.version, record.exports
    )
    comparison = None
    if other is not None:
        other_output = layout.evaluations / f"{other.version}-{dataset.dataset_fingerprint[:12]}"
        other_evaluated = evaluate_model_task(
            str(other.model_path), test_path, other_output, evaluation, other.class_names, other.version, other.exports
        )
        comparison = compare_models_task((record.version, other.version), (evaluated, other_evaluated), output)
    return EvaluateSummary(
        model_version=record.version,
        data=data,
        dataset_fingerprint=dataset.dataset_fingerprint,
        images=evaluated.metrics.test_images,
        accuracy=evaluated.metrics.accuracy,
        macro_f1=evaluated.metrics.macro_f1,
        metrics_path=str(evaluated.metrics_path),
        confusion_png=str(evaluated.confusion_png),
        predictions_path=str(evaluated.predictions_path),
        comparison=comparison,
        seconds=round(time.perf_counter() - started, 2),
    )
