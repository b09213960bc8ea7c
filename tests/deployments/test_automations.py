"""The automation of docs/operations/integrations.md: created on a real Prefect server, it waits for drifted drops."""

from __future__ import annotations

import pytest

from visionflow.deployments.automations import RETRAIN_ON_DRIFT, retrain_on_drift
from visionflow.deployments.definitions import train_deployment
from visionflow.deployments.settings import ServeConfig
from visionflow.events import DROP_DRIFTED


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
