"""visionflow's Prefect events: what happened to a drop or a model, for automations to act on.

Each event names its resource (`visionflow.drop.<name>` or `visionflow.model.<version>`) and
carries the numbers and reasons in its payload. An automation in the Prefect UI can react to
one, e.g. notify a channel when a drop drifted (docs/operations/integrations.md).
"""

from __future__ import annotations

import logging

DROP_RESOURCE_PREFIX = "visionflow.drop."  # Resource id of a drop: this prefix and the drop's name.
MODEL_RESOURCE_PREFIX = "visionflow.model."  # Resource id of a model: this prefix and its version.
LABELS_RESOURCE_PREFIX = "visionflow.labels."  # Resource id of a labels store: this prefix and its home's name.

DROP_READY = "visionflow.drop.ready"  # The inbox watcher found a drop ready to score.
DROP_SCORED = "visionflow.drop.scored"  # A drop was scored: counts, model, report path.
DROP_DRIFTED = "visionflow.drop.drifted"  # A scored drop looks unlike the training data: the reasons.
MODEL_PROMOTED = "visionflow.model.promoted"  # A model became champion: metrics, gate reason, previous champion.
MODEL_REJECTED = "visionflow.model.rejected"  # The gate kept a model from becoming champion: its reason.
LABELS_ADDED = "visionflow.labels.added"  # People's labels were stored: how many, and the snapshot now.

logger = logging.getLogger(__name__)


def emit(event: str, resource_prefix: str, name: str, payload: dict, outside_runs: bool = False) -> None:
    """Emit one event about the resource resource_prefix+name from inside a flow or task run.

    Outside a run (a stage called as a plain function) there is no server to tell, and nothing
    is sent; unless outside_runs, for what a command does without a flow run (`visionflow labels
    import`): then it is sent where PREFECT_API_URL names a server. A failure is logged, never raised.
    """
    import os

    from visionflow.run_context import in_prefect_run

    if not in_prefect_run() and not (outside_runs and os.environ.get("PREFECT_API_URL")):
        return
    from prefect.events import emit_event  # Imported here: Prefect must be set up first.

    resource = {"prefect.resource.id": f"{resource_prefix}{name}", "prefect.resource.name": name}
    try:
        emit_event(event=event, resource=resource, payload=payload)
    except Exception:  # Telling automations must never change a run's outcome.
        logger.warning("could not emit the event %s for %s", event, name, exc_info=True)
