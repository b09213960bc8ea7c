"""visionflow's Prefect deployments: what runs on a schedule, on an event, or from the UI.

- `train`: retrains on a schedule (weekly by default), or when someone triggers it from the UI
  with parameters (data, preset, epochs, with_labels to add the reviewed labels, and the grouped
  settings, each a typed form field).
- `score-drops`: scores every ready drop in the inbox, on a schedule (every 5 minutes by default)
  and whenever the inbox watcher finds new ready drops (event `visionflow.inbox.ready`).
- `score`: scores one folder given as a parameter.
- `ingest`: turns an image folder into validated Parquet.
- `evaluate`: measures a registered model on a labelled folder, alone or beside another.
- `promote` and `rollback`: move the champion by hand, through the gate or past it with a reason.
- `review`: asks people, page by page in the UI, to label a review's images (docs/review.md); the
  automation `review_on_drift` (deployments/automations.py) starts it for a drifted drop.

`visionflow serve` runs them in one long-lived process (no work pool needed); `visionflow deploy`
registers the same flows with a work pool on a shared server.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events import DeploymentEventTrigger

from visionflow.deployments.settings import ServeConfig
from visionflow.errors import InvalidSettingError
from visionflow.flows.evaluate import evaluate_flow
from visionflow.flows.ingest import ingest_flow
from visionflow.flows.models import promote_flow, rollback_flow
from visionflow.flows.review import review_flow
from visionflow.flows.score import ScoringConfig, score_flow
from visionflow.flows.score_drops import score_drops_flow
from visionflow.flows.train import train_flow
from visionflow.ledger.inbox import INBOX_READY_EVENT, INBOX_RESOURCE_ID
from visionflow.tasks.score.streaming.predict_contents import ScoreConfig


def checked_cron(expression: str) -> str:
    """expression, if Prefect's cron schedules accept it; else InvalidSettingError saying what they take.

    Checked here, where Prefect is imported: `visionflow serve` must not import Prefect before its
    server answers (deployments/settings.py), so ServeConfig cannot check it.
    """
    try:
        CronSchedule(cron=expression)
    except ValueError:
        raise InvalidSettingError(
            f"train cron {expression!r} is not a cron expression: give five fields, minute hour day-of-month "
            "month day-of-week, e.g. '0 3 * * 1' for Mondays at 03:00"
        ) from None
    return expression


def train_deployment(schedule: ServeConfig) -> RunnerDeployment:
    """`train`: ingest, train, evaluate, gate and register; weekly by default."""
    return train_flow.to_deployment(
        entrypoint_type=EntrypointType.MODULE_PATH,
        name="train",
        description="Train a model on an image folder ('cifar10', 'demo' or a path); promote it if it passes the gate.",
        cron=checked_cron(schedule.train_cron),
        parameters={"data": schedule.train_data, "preset": "default"},
        tags=["visionflow", "training"],
    )


def score_drops_deployment(schedule: ServeConfig) -> RunnerDeployment:
    """`score-drops`: on a schedule, and on every `visionflow.inbox.ready` event."""
    return score_drops_flow.to_deployment(
        entrypoint_type=EntrypointType.MODULE_PATH,
        name="score-drops",
        description="Score every ready drop in VISIONFLOW_HOME/drops/inbox with the champion model.",
        interval=timedelta(seconds=schedule.score_every_seconds),
        # One run at a time: a burst of ready drops queues up instead of loading many models at once.
        concurrency_limit=1,
        # The flow judges readiness with the same quiet time as the inbox watcher.
        parameters={"inbox": {"settle_seconds": schedule.settle_seconds}, **_engine(schedule, "scoring")},
        triggers=[
            DeploymentEventTrigger(
                name="score-drops-on-ready-inbox",
                description="Drops became ready in the inbox and no score-drops run was waiting to start.",
                expect={INBOX_READY_EVENT},
                match={"prefect.resource.id": INBOX_RESOURCE_ID},
            )
        ],
        tags=["visionflow", "scoring"],
    )


def _engine(schedule: ServeConfig, config_parameter: str) -> dict:
    """The scoring engine as a flow parameter's default, when serve or deploy was given one."""
    if schedule.score_engine is None:
        return {}
    config = ScoringConfig(score=ScoreConfig(engine=schedule.score_engine))
    return {config_parameter: config.model_dump(mode="json", exclude_unset=True)}


def score_deployment(schedule: ServeConfig | None = None) -> RunnerDeployment:
    """`score`: one folder, given as the `drop` parameter; run from the UI or the API."""
    return score_flow.to_deployment(
        entrypoint_type=EntrypointType.MODULE_PATH,
        name="score",
        parameters=_engine(schedule or ServeConfig(), "config"),
        description="Score every file of one folder (the 'drop' parameter) with a registered model.",
        tags=["visionflow", "scoring"],
    )


def ingest_deployment() -> RunnerDeployment:
    """`ingest`: turn an image folder into validated Parquet, triggered from the UI or the API."""
    return ingest_flow.to_deployment(
        entrypoint_type=EntrypointType.MODULE_PATH,
        name="ingest",
        description="Ingest a labelled image folder (or 'cifar10', 'demo') into validated Parquet.",
        parameters={"data": "demo"},
        tags=["visionflow", "data"],
    )


def evaluate_deployment() -> RunnerDeployment:
    """`evaluate`: a registered model on a labelled folder (the `data` parameter), from the UI or the API."""
    return evaluate_flow.to_deployment(
        entrypoint_type=EntrypointType.MODULE_PATH,
        name="evaluate",
        description="Evaluate a registered model on a labelled folder; with 'compare', beside another version.",
        tags=["visionflow", "registry"],
    )


def registry_deployments() -> list[RunnerDeployment]:
    """`promote` and `rollback`: champion changes from the UI, recorded in the champion history."""
    promote = promote_flow.to_deployment(
        entrypoint_type=EntrypointType.MODULE_PATH,
        name="promote",
        description="Make a registered model the champion if the approval gate passes it (or past it, with a reason).",
        tags=["visionflow", "registry"],
    )
    rollback = rollback_flow.to_deployment(
        entrypoint_type=EntrypointType.MODULE_PATH,
        name="rollback",
        description="Return the champion to the one before it.",
        tags=["visionflow", "registry"],
    )
    return [promote, rollback]


def review_deployment() -> RunnerDeployment:
    """`review`: label a review's images in the UI (review_id), or review a drop's least-sure images (drop)."""
    return review_flow.to_deployment(
        entrypoint_type=EntrypointType.MODULE_PATH,
        name="review",
        description="Ask reviewers, page by page in this UI, what a review's images show (review_id), or review the "
        "least-sure images of a scored drop (drop). Open the paused run and press Resume to answer a page.",
        tags=["visionflow", "labels"],
    )


def all_deployments(schedule: ServeConfig | None = None) -> list[RunnerDeployment]:
    """Every deployment visionflow serves, scheduled as schedule (a ServeConfig) says.

    Each names its flow by module ("visionflow.flows.train.train_flow"), so it runs wherever
    visionflow is installed: in `visionflow serve`, or on a worker of a work pool.
    """
    schedule = schedule or ServeConfig()
    return [
        train_deployment(schedule),
        score_drops_deployment(schedule),
        score_deployment(schedule),
        ingest_deployment(),
        evaluate_deployment(),
        *registry_deployments(),
        review_deployment(),
    ]
