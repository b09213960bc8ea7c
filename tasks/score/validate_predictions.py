"""Scoring stage 3: hold a drop's predictions, read back from disk, to the predictions contract.

The contract (data_contracts/predictions.json) sees every prediction row of the drop for the
scoring model, across all runs, so it also proves that no file got two rows and that the rows
on disk match what the ledger recorded. Per-class probability columns are named after the
model's classes; they are summarised per row (smallest, largest, sum, whether the label is the
most probable class) so that one suite fits every model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from visionflow.data_contracts.contract_reports import publish_contract_reports
from visionflow.data_contracts.contract_suites import ContractReport, contract_version
from visionflow.data_contracts.gx_validation import refresh_data_docs_index, validate
from visionflow.ledger.drops import PROBABILITY_PREFIX, DropOutputs, predictions_schema
from visionflow.ledger.ledger import PredictionLedger
from visionflow.run_context import run_logger

PREDICTIONS_SUITE = "predictions"


class PredictionContractConfig(BaseModel):
    """Tolerances of the predictions contract."""

    sum_tolerance: float = Field(default=1e-3, gt=0, lt=1)  # Largest distance of a row's probability sum from 1.
    # Keep each drop's validation in the GX Data Docs site too (about 0.2 s per drop on two cores).
    data_docs: bool = True


class PredictionContractResult(BaseModel):
    """The predictions contract's outcome for one drop and model (a breach raises instead)."""

    success: bool  # True: every hard expectation passed.
    contract_version: str  # Version of data_contracts/predictions.json.
    report: str  # Path of the JSON report.


def predictions_frame(predictions_path: Path, class_names: list[str], model_version: str) -> pd.DataFrame:
    """The drop's prediction rows of one model, with per-row probability summaries.

    The dataset is read with this model's schema, so parts written by a model with other classes
    (filtered out here) cannot break the read; no rows at all gives an empty frame of the same columns.
    """
    path = Path(predictions_path)
    schema = predictions_schema(class_names)
    columns = [f"{PROBABILITY_PREFIX}{name}" for name in class_names]
    if path.is_dir() and any(path.glob("*.parquet")):
        dataset = ds.dataset(path, format="parquet", schema=schema)
        frame = dataset.to_table(filter=ds.field("model_version") == model_version).to_pandas()
    else:
        frame = schema.empty_table().to_pandas()
    probabilities = frame[columns].to_numpy(dtype=np.float64).reshape(len(frame), len(columns))
    summary = frame.drop(columns=columns)
    best = np.asarray(class_names, dtype=object)[probabilities.argmax(axis=1)] if len(frame) else np.empty(0, object)
    summary["min_probability"] = probabilities.min(axis=1, initial=np.inf)
    summary["max_probability"] = probabilities.max(axis=1, initial=-np.inf)
    summary["probability_sum"] = probabilities.sum(axis=1)
    summary["label_is_argmax"] = (best == frame["label"].to_numpy()) & np.isclose(
        frame["confidence"].to_numpy(dtype=np.float64), summary["max_probability"].to_numpy()
    )
    return summary


def validate_predictions(
    predictions_path: Path,
    class_names: list[str],
    model_version: str,
    expected_rows: int,
    config: PredictionContractConfig,
    data_docs: Path | None = None,
    drop_name: str = "drop",
) -> ContractReport:
    """The predictions contract's verdict on a drop's rows of one model (kept in Data Docs under data_docs)."""
    frame = predictions_frame(predictions_path, class_names, model_version)
    parameters = {
        "expected_rows": expected_rows,
        "classes": class_names,
        "model_versions": [model_version],
        "min_sum": 1.0 - config.sum_tolerance,
        "max_sum": 1.0 + config.sum_tolerance,
    }
    target = f"predictions of {model_version}"
    return validate(frame, PREDICTIONS_SUITE, parameters, target, data_docs=data_docs, run_name=drop_name)


@task(name="validate-predictions", cache_policy=NO_CACHE)
def validate_predictions_task(
    predictions_path: Path,
    class_names: list[str],
    model_version: str,
    drop_name: str,
    ledger_location: str | Path,
    report_path: Path,
    config: PredictionContractConfig,
    data_docs: Path | None = None,
) -> PredictionContractResult:
    """Prefect task: validate, write the JSON report, publish it; stop the run on a hard breach."""
    # Under the drop's lock, so another run's part that is written but not yet committed is not read.
    with (
        DropOutputs(Path(predictions_path).parent).exclusive(wait_seconds=600),
        PredictionLedger(ledger_location) as ledger,
    ):
        expected_rows = ledger.accepted_count(drop_name, model_version)
        docs = data_docs if config.data_docs else None
        report = validate_predictions(
            Path(predictions_path), class_names, model_version, expected_rows, config, docs, drop_name
        )
    publish_contract_reports([report], Path(report_path), "contract-predictions", "Predictions contract")
    return PredictionContractResult(
        success=True, contract_version=contract_version(PREDICTIONS_SUITE), report=str(report_path)
    )


@task(name="refresh-data-docs", cache_policy=NO_CACHE)
def refresh_data_docs_task(home: Path) -> str | None:
    """Prefect task: bring the Data Docs index up to date after a burst of drops; its path."""
    index = refresh_data_docs_index(Path(home))
    if index is not None:
        run_logger(__name__).info("Great Expectations Data Docs: %s", index)
    return str(index) if index else None
