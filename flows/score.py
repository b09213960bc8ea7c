"""The score flow: one image drop in, predictions and rejections out, every file exactly once.

select model -> list and hash the drop, the model loading meanwhile -> decode and predict new
contents in batches (ledger) -> predictions contract on the rows on disk -> report with drift.
Every step is a task in tasks/score/.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow
from pydantic import BaseModel, Field

from visionflow.access import check_deployment_parameters
from visionflow.engines.engine_exports import Engine
from visionflow.errors import BadInputError
from visionflow.home import HomeLayout, resolve_home
from visionflow.images.image_profile import DriftConfig
from visionflow.models.registry import CHAMPION
from visionflow.models.scoring_model import scoring_model_is_warm
from visionflow.processes.dask_shards import DaskConfig, start_cluster_task
from visionflow.tasks.score.list_drop_files import DropScanConfig, list_drop_files_task
from visionflow.tasks.score.load_model import load_model_task
from visionflow.tasks.score.report_scoring import report_scoring_task
from visionflow.tasks.score.score_drop import ScoreConfig, score_drop_task
from visionflow.tasks.score.select_model import select_model_task
from visionflow.tasks.score.streaming.part_buffer import RejectionExample
from visionflow.tasks.score.validate_predictions import PredictionContractConfig, validate_predictions_task


class ScoringConfig(BaseModel):
    """Every scoring setting, grouped by the stage that uses it."""

    scan: DropScanConfig = Field(default_factory=DropScanConfig)  # Listing and hashing the drop.
    score: ScoreConfig = Field(default_factory=ScoreConfig)  # Decoding, batching, predicting, writing.
    contract: PredictionContractConfig = Field(default_factory=PredictionContractConfig)  # Contract tolerances.
    drift: DriftConfig = Field(default_factory=DriftConfig)  # When a drop counts as drifted.
    dask: DaskConfig = Field(default_factory=DaskConfig)  # Shards on a Dask cluster; off by default.


class ScoreSummary(BaseModel):
    """What one score flow run did to a drop."""

    drop: str  # The drop folder, as an absolute path.
    model_version: str  # The registered model that scored it.
    engine: Engine  # The engine that predicted: keras, onnx, openvino, onnx-int8 or openvino-int8.
    files: int  # Files listed in the drop (its control files excepted).
    scored: int  # Files whose content the model predicted in this run.
    already_scored: int  # Files whose content the ledger held for this model before this run.
    rejected: int  # Files that cannot be scored; each has a rejection row.
    contents_predicted: int  # Distinct contents the model predicted in this run (copies share one prediction).
    predictions_path: str  # Folder of the drop's prediction parts (a pyarrow dataset).
    rejections_path: str  # Folder of the drop's rejection parts (a pyarrow dataset).
    report_path: str  # This run's JSON report.
    drifted: bool | None  # True: the drop looks unlike the training data; None: not judged.
    drift_reasons: list[str]  # One sentence per finding, or why drift was not judged.
    class_counts: dict[str, int]  # Predicted class of the rows this run wrote.
    rejection_examples: list[RejectionExample]  # Up to 5 rejected files with their reasons.
    seconds: float  # Wall-clock seconds of the whole flow run.
    images_per_second: float  # scored / seconds.
    scoring_seconds: float  # Seconds of decoding, predicting and writing only.
    scoring_images_per_second: float  # scored / scoring_seconds.


def _run_name() -> str:
    """ "score-<drop folder name>": the full path is a parameter of the run, its name stays short."""
    from prefect.runtime import flow_run

    return f"score-{Path(str(flow_run.parameters.get('drop', 'drop'))).name}"


@flow(name="score", flow_run_name=_run_name)
def score_flow(
    drop: str, model: str = CHAMPION, config: ScoringConfig | None = None, home: str | None = None
) -> ScoreSummary:
    """Score every file of the folder `drop` with a registered model; each file once.

    Args:
        drop: The folder of images to score (a path on the serving machine); any nesting.
        model: "champion" (the promoted model) or a registered version such as "v0002".
        config: Listing, decoding, batching, the predictions contract and the drift limits.
        home: VISIONFLOW_HOME to use; empty means the serving process's.
    """
    if not str(drop).strip():  # An empty path would otherwise name the current folder.
        raise BadInputError("the drop folder is empty (''): give the folder of images to score")
    check_deployment_parameters(home, {"drop": drop})
    return score_one_drop(Path(drop), model, config or ScoringConfig(), resolve_home(home))


def score_one_drop(drop: Path, model: str, config: ScoringConfig, layout: HomeLayout) -> ScoreSummary:
    """The score flow's steps for one drop, as tasks of the calling flow run.

    score_drops runs them for each inbox drop inside its own run: a subflow run per drop costs
    more server round trips than scoring a small drop does.
    """
    started = time.perf_counter()
    drop_path = Path(drop).expanduser().resolve()
    outputs_root = layout.predictions / drop_path.name
    record = select_model_task(layout.models, model, config.score.engine)
    loading = []  # The model loads (here, or on the cluster's workers) while the drop is listed.
    if config.dask.enabled:
        loading.append(start_cluster_task.submit(config.dask, record))
    elif not scoring_model_is_warm(record):  # An inbox run scores drop after drop with the model it loaded once.
        loading.append(load_model_task.submit(record))
    files = list_drop_files_task(drop_path, config.scan)
    result = score_drop_task(
        files, drop_path, record, layout.ledger_url, outputs_root, config.score, config.dask, wait_for=loading
    )
    contract = validate_predictions_task(
        result.predictions_path,
        record.class_names,
        record.version,
        result.drop_name,
        layout.ledger_url,
        outputs_root / "reports" / "predictions-contract.json",
        config.contract,
        layout.root,
    )
    report = report_scoring_task(result, record, str(drop_path), contract, outputs_root / "reports", config.drift)
    seconds = time.perf_counter() - started
    return ScoreSummary(
        drop=str(drop_path),
        model_version=record.version,
        engine=result.engine,
        files=result.files,
        scored=result.scored,
        already_scored=result.already_scored,
        rejected=result.rejected,
        contents_predicted=result.contents_predicted,
        predictions_path=result.predictions_path,
        rejections_path=result.rejections_path,
        report_path=report.report_path,
        drifted=report.drifted,
        drift_reasons=report.drift_reasons,
        class_counts=result.class_counts,
        rejection_examples=result.rejection_examples[:5],
        seconds=round(seconds, 2),
        images_per_second=round(result.scored / seconds, 1) if seconds > 0 else 0.0,
        scoring_seconds=result.seconds,
        scoring_images_per_second=result.images_per_second,
    )
