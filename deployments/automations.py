"""Automations on visionflow's events: what a team sets up once so that Prefect reacts for it.

`retrain_on_drift` builds the automation docs/operations/integrations.md shows: when a scored drop drifted
(`visionflow.drop.drifted`), start the `train` deployment, so a model trained on fresher data
can take over through the gate. Any other action of Prefect's (a notification, pausing the
score-drops schedule) fits the same trigger.
"""

from __future__ import annotations

from prefect.automations import Automation
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import EventTrigger, Posture

from visionflow.events import DROP_DRIFTED, DROP_RESOURCE_PREFIX

RETRAIN_ON_DRIFT = "visionflow: retrain when a drop drifted"


def retrain_on_drift(train_deployment_id, parameters: dict | None = None) -> Automation:
    """An automation (not yet created) that runs the train deployment for every drifted drop."""
    return Automation(
        name=RETRAIN_ON_DRIFT,
        description="A scored drop looks unlike the training data: train again on the configured data.",
        trigger=EventTrigger(
            expect={DROP_DRIFTED},
            match={"prefect.resource.id": f"{DROP_RESOURCE_PREFIX}*"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[RunDeployment(source="selected", deployment_id=train_deployment_id, parameters=parameters)],
    )
