"""visionflow's Prefect deployments: what runs on a schedule, on an event, or from the UI.

- `train`: retrains on a schedule (weekly by default), or when someone triggers it from the UI
  with parameters (data, preset, epochs and the grouped settings, each a typed form field).
- `score-drops`: scores every ready drop in the inbox, on a schedule (every 5 minutes by default)
  and whenever the inbox watcher announces a ready drop (event `visionflow.drop.ready`).
- `score`: scores one folder given as a parameter.
- `ingest`: turns an image folder into validated Parquet.

`visionflow serve` runs them in one long-lived process (no work pool needed); `visionflow deploy`
registers the same flows with a work pool on a shared server.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events import DeploymentEventTrigger

from deployments.serve import ServeConfig
from flows.ingest import ingest_flow
from flows.score import score_flow
from flows.score_drops import score_drops_flow
from flows.train import train_flow

DROP_READY_EVENT = "visionflow.drop.ready"  # Emitted by the inbox watcher for each ready drop.
DROP_RESOURCE_PREFIX = "visionflow.drop."  # Resource id of a drop: this prefix and the drop's name.


def train_deployment(
    schedule: ServeConfig, entrypoint_type: EntrypointType = EntrypointType.FILE_PATH
) -> RunnerDeployment:
    """`train`: ingest, train, evaluate, gate and register; weekly by default."""
    return train_flow.to_deployment(
        entrypoint_type=entrypoint_type,
        name="train",
        description="Train a model on an image folder ('cifar10', 'demo' or a path); promote it if it passes the gate.",
        cron=schedule.train_cron,
        parameters={"data": schedule.train_data, "preset": "default"},
        tags=["visionflow", "training"],
    )


def score_drops_deployment(
    schedule: ServeConfig, entrypoint_type: EntrypointType = EntrypointType.FILE_PATH
) -> RunnerDeployment:
    """`score-drops`: on a schedule, and on every `visionflow.drop.ready` event."""
    return score_drops_flow.to_deployment(
        entrypoint_type=entrypoint_type,
        name="score-drops",
        description="Score every ready drop in VISIONFLOW_HOME/drops/inbox with the champion model.",
        interval=timedelta(seconds=schedule.score_every_seconds),
        # One run at a time: a burst of ready drops queues up instead of loading many models at once.
        concurrency_limit=1,
        # The flow judges readiness with the same quiet time as the inbox watcher.
        parameters={"inbox": {"settle_seconds": schedule.settle_seconds}},
        triggers=[
            DeploymentEventTrigger(
                name="score-drops-on-ready-drop",
                description="A drop became ready in the inbox.",
                expect={DROP_READY_EVENT},
                match={"prefect.resource.id": f"{DROP_RESOURCE_PREFIX}*"},
            )
        ],
        tags=["visionflow", "scoring"],
    )


def score_deployment(entrypoint_type: EntrypointType = EntrypointType.FILE_PATH) -> RunnerDeployment:
    """`score`: one folder, given as the `drop` parameter; run from the UI or the API."""
    return score_flow.to_deployment(
        entrypoint_type=entrypoint_type,
        name="score",
        description="Score every file of one folder (the 'drop' parameter) with a registered model.",
        tags=["visionflow", "scoring"],
    )


def ingest_deployment(entrypoint_type: EntrypointType = EntrypointType.FILE_PATH) -> RunnerDeployment:
    """`ingest`: turn an image folder into validated Parquet, triggered from the UI or the API."""
    return ingest_flow.to_deployment(
        entrypoint_type=entrypoint_type,
        name="ingest",
        description="Ingest a labelled image folder (or 'cifar10', 'demo') into validated Parquet.",
        parameters={"data": "demo"},
        tags=["visionflow", "data"],
    )


def all_deployments(
    schedule: ServeConfig | None = None, entrypoint_type: EntrypointType = EntrypointType.FILE_PATH
) -> list[RunnerDeployment]:
    """Every deployment visionflow serves, scheduled as schedule (a ServeConfig) says.

    entrypoint_type MODULE_PATH names each flow by its module ("flows.train.train_flow"), for
    workers on other machines that have visionflow installed rather than this checkout.
    """
    schedule = schedule or ServeConfig()
    return [
        train_deployment(schedule, entrypoint_type),
        score_drops_deployment(schedule, entrypoint_type),
        score_deployment(entrypoint_type),
        ingest_deployment(entrypoint_type),
    ]
