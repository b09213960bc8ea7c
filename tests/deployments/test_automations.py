"""The automations on drifted drops, created on a real Prefect server: retrain (docs/operations/integrations.md)
and review (docs/review.md), which runs the review deployment on the drop the event names."""

from __future__ import annotations

import time

import pytest

from visionflow.deployments.automations import RETRAIN_ON_DRIFT, retrain_on_drift, review_on_drift
from visionflow.deployments.definitions import review_deployment, train_deployment
from visionflow.deployments.settings import ServeConfig
from visionflow.events import DROP_DRIFTED, DROP_RESOURCE_PREFIX, LABELS_ADDED, LABELS_RESOURCE_PREFIX

WAIT_SECONDS = 120  # Longest the test waits for the automation to act; a failure, never a measurement.


@pytest.mark.usefixtures("prefect_server")
def test_retrain_on_drift_is_created_for_the_train_deployment():
    from prefect.automations import Automation

    deployment_id = train_deployment(ServeConfig()).apply()
    created = retrain_on_drift(deployment_id, {"data": "demo"}).create()
    read_back = Automation.read(id=created.id)
    assert read_back.name == RETRAIN_ON_DRIFT and read_back.enabled
    assert read_back.trigger.expect == {DROP_DRIFTED}
    assert read_back.actions[0].deployment_id == deployment_id
    assert read_back.actions[0].parameters == {"data": "demo"}


@pytest.mark.usefixtures("prefect_server")
def test_review_on_drift_runs_the_review_deployment_on_the_drifted_drop():
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.events import emit_event

    deployment_id = review_deployment().apply()
    review_on_drift(deployment_id, {"page_size": 10}).create()
    deadline = time.monotonic() + WAIT_SECONDS
    runs = []
    with get_client(sync_client=True) as client:
        while not runs and time.monotonic() < deadline:
            # Sent again until it acts: the server's triggers take a new automation in a moment after it is created.
            emit_event(
                event=DROP_DRIFTED,
                resource={
                    "prefect.resource.id": f"{DROP_RESOURCE_PREFIX}night-shift",
                    "prefect.resource.name": "night-shift",
                },
            )
            for _ in range(10):
                time.sleep(0.5)
                runs = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
                )
                if runs:
                    break
    assert runs and all(run.parameters == {"page_size": 10, "drop": "night-shift"} for run in runs)


@pytest.mark.usefixtures("prefect_server")
def test_retrain_on_drift_can_wait_for_new_labels():
    from prefect.automations import Automation

    deployment_id = train_deployment(ServeConfig()).apply()
    created = retrain_on_drift(deployment_id, {"preset": "seed"}, min_new_labels=500).create()
    read_back = Automation.read(id=created.id)  # The server takes the two events and their resources.
    assert read_back.trigger.expect == {DROP_DRIFTED, LABELS_ADDED}
    assert read_back.trigger.match.root["prefect.resource.id"] == [
        f"{DROP_RESOURCE_PREFIX}*",
        f"{LABELS_RESOURCE_PREFIX}*",
    ]
    assert read_back.actions[0].parameters == {"preset": "seed", "with_labels": True, "min_new_labels": 500}
