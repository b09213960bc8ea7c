"""The score flow: one image drop in, predictions and rejections out, every file exactly once.

select model -> list and hash the drop -> decode and predict new contents in batches (ledger)
-> predictions contract on the rows on disk -> report with drift. Every step is a task in tasks/.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow
from pydantic import BaseModel, Field

from flows.runtime import resolve_home
from tasks.find_drop_files import DropScanConfig, list_drop_files_task
from tasks.profile_images import DriftConfig
from tasks.report_scoring import report_scoring_task
from tasks.score_images import ScoreConfig, score_images_task
from tasks.select_model import CHAMPION, select_model_task
from tasks.validate_predictions import PredictionContractConfig, validate_predictions_task


class ScoringConfig(BaseModel):
    """Every scoring setting, grouped by the stage that uses it."""

    scan: DropScanConfig = Field(default_factory=DropScanConfig)  # Listing and hashing the drop.
    score: ScoreConfig = Field(default_factory=ScoreConfig)  # Decoding, batching, predicting, writing.
    contract: PredictionContractConfig = Field(default_factory=PredictionContractConfig)  # Contract tolerances.
    drift: DriftConfig = Field(default_factory=DriftConfig)  # When a drop counts as drifted.


def _run_name() -> str:
    """ "score-<drop folder name>": the full path is a parameter of the run, its name stays short."""
    from prefect.runtime import flow_run

    return f"score-{Path(str(flow_run.parameters.get('drop', 'drop'))).name}"


@flow(name="score", flow_run_name=_run_name)
def score_flow(drop: str, model: str = CHAMPION, config: ScoringConfig | None = None, home: str | None = None) -> dict:
    """Score every file of the folder `drop` with a registered model; each file once.

    Args:
        drop: The folder of images to score (a path on the serving machine); any nesting.
        model: "champion" (the promoted model) or a registered version such as "v0002".
        config: Listing, decoding, batching, the predictions contract and the drift limits.
        home: VISIONFLOW_HOME to use; empty means the serving process's.
    """
    started = time.perf_counter()
    config = config or ScoringConfig()
    layout = resolve_home(home)
    drop_path = Path(drop).expanduser().resolve()
    outputs_root = layout.predictions / drop_path.name
    record = select_model_task(layout.models, model)
    files = list_drop_files_task(drop_path, config.scan)
    result = score_images_task(files, drop_path, record, layout.ledger, outputs_root, config.score)
    contract = validate_predictions_task(
        result.predictions_path,
        record.class_names,
        record.version,
        result.drop_name,
        layout.ledger,
        outputs_root / "reports" / "predictions-contract.json",
        config.contract,
    )
    report = report_scoring_task(result, record, str(drop_path), contract, outputs_root / "reports", config.drift)
    seconds = time.perf_counter() - started
    return {
        "drop": str(drop_path),
        "model_version": record.version,
        "files": result.files,
        "scored": result.scored,
        "already_scored": result.already_scored,
        "rejected": result.rejected,
        "predictions_path": result.predictions_path,
        "rejections_path": result.rejections_path,
        "report_path": report["report_path"],
        "drifted": report["drift"].get("drifted"),
        "drift_reasons": report["drift"].get("reasons", []),
        "class_counts": result.class_counts,
        "rejection_examples": result.rejection_examples[:5],
        "seconds": round(seconds, 2),
        "images_per_second": round(result.scored / seconds, 1) if seconds > 0 else 0.0,
        "scoring_seconds": result.seconds,  # Decoding, predicting and writing only.
        "scoring_images_per_second": result.images_per_second,
    }
