"""visionflow's Prefect deployments: what can be run from the Prefect UI, with which defaults.

Each function returns a deployment that `deployments.serve` runs in a long-lived process (no
work pool needed); the same flows can be deployed to a work pool with `prefect deploy`.
"""

from __future__ import annotations

from prefect.deployments.runner import RunnerDeployment

from flows.ingest import ingest_flow


def ingest_deployment() -> RunnerDeployment:
    """`ingest`: turn an image folder into validated Parquet, triggered from the UI or the API.

    It has no schedule: datasets are ingested when someone asks (training runs ingest itself).
    """
    return ingest_flow.to_deployment(
        name="ingest",
        description="Ingest a labelled image folder (or 'cifar10', 'demo') into validated Parquet.",
        parameters={"data": "demo"},
        tags=["visionflow", "data"],
    )


def all_deployments() -> list[RunnerDeployment]:
    """Every deployment visionflow serves."""
    return [ingest_deployment()]
