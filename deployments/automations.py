"""Automations on visionflow's events: what a team sets up once so that Prefect reacts for it.

`retrain_on_drift` builds the automation docs/operations/integrations.md shows: when a scored drop drifted
(`visionflow.drop.drifted`), start the `train` deployment, so a model trained on fresher data
can take over through the gate. `review_on_drift` answers the same event by asking people: it
starts the `review` deployment on the drifted drop, which chooses the images the model was least
sure of and pauses for reviewers in the UI (docs/review.md). Any other action of Prefect's (a
notification, pausing the score-drops schedule) fits the same trigger.
"""

from __future__ import annotations

from prefect.automations import Automation
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import EventTrigger, Posture

from visionflow.events import DROP_DRIFTED, DROP_RESOURCE_PREFIX, LABELS_ADDED, LABELS_RESOURCE_PREFIX

RETRAIN_ON_DRIFT = "visionflow: retrain when a drop drifted"
REVIEW_ON_DRIFT = "visionflow: review a drifted drop"
# The review deployment's `drop` parameter, rendered by the server from the event: the drop's name,
# which the review finds in the home's records wherever the drop's folder has moved (inbox, done).
DRIFTED_DROP_NAME = "{{ event.resource.name }}"


def drifted_drop_trigger() -> EventTrigger:
    """Every `visionflow.drop.drifted` event, each acted on at once."""
    return EventTrigger(
        expect={DROP_DRIFTED},
        match={"prefect.resource.id": f"{DROP_RESOURCE_PREFIX}*"},
        posture=Posture.Reactive,
        threshold=1,
    )


def retrain_on_drift(
    train_deployment_id, parameters: dict | None = None, min_new_labels: int | None = None
) -> Automation:
    """An automation (not yet created) that runs the train deployment for every drifted drop.

    With min_new_labels, the run trains with the labels store's accepted labels, and only once it
    holds that many beyond those the champion learnt from (the train flow ends at once, Completed,
    while it does not); the automation then also answers `visionflow.labels.added`, so a drift met
    with too few labels retrains when the labels arrive.
    """
    trigger, description = drifted_drop_trigger(), "A scored drop looks unlike the training data: train again."
    if min_new_labels:
        parameters = {**(parameters or {}), "with_labels": True, "min_new_labels": min_new_labels}
        trigger = EventTrigger(
            expect={DROP_DRIFTED, LABELS_ADDED},
            match={"prefect.resource.id": [f"{DROP_RESOURCE_PREFIX}*", f"{LABELS_RESOURCE_PREFIX}*"]},
            posture=Posture.Reactive,
            threshold=1,
        )
        description += f" With reviewed labels, once {min_new_labels} new ones are accepted."
    return Automation(
        name=RETRAIN_ON_DRIFT,
        description=description,
        trigger=trigger,
        actions=[RunDeployment(source="selected", deployment_id=train_deployment_id, parameters=parameters)],
    )


def review_on_drift(review_deployment_id, parameters: dict | None = None) -> Automation:
    """An automation (not yet created) that runs the review deployment on every drifted drop.

    parameters are further review_flow parameters (choice, page_size, page_timeout_seconds); the
    drop is the event's.
    """
    return Automation(
        name=REVIEW_ON_DRIFT,
        description="A scored drop looks unlike the training data: ask people to label the images the model was "
        "least sure of.",
        trigger=drifted_drop_trigger(),
        actions=[
            RunDeployment(
                source="selected",
                deployment_id=review_deployment_id,
                parameters={**(parameters or {}), "drop": DRIFTED_DROP_NAME},
            )
        ],
    )
