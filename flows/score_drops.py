"""The score-drops flow: score every ready drop in the inbox, each exactly once.

find ready drops -> per drop: claim it (atomic rename into processing/) -> score flow (subflow)
-> move it to done/, or to failed/ with the reason. A drop another run claimed first is left
to that run, so a schedule and a trigger firing together never score a drop twice.
"""

from __future__ import annotations

import time

from prefect import flow

from visionflow.access import check_deployment_parameters
from visionflow.deployments.inbox import (
    DropFolders,
    claim_drop_task,
    find_ready_drops_task,
    finish_drop_task,
    release_drop_task,
)
from visionflow.deployments.settings import InboxConfig
from visionflow.errors import BusyError, VisionflowError
from visionflow.flows.score import ScoringConfig, score_flow
from visionflow.home import resolve_home
from visionflow.registry import CHAMPION


@flow(name="score-drops", flow_run_name="score-drops")
def score_drops_flow(
    model: str = CHAMPION,
    inbox: InboxConfig | None = None,
    scoring: ScoringConfig | None = None,
    home: str | None = None,
) -> dict:
    """Score every ready drop in VISIONFLOW_HOME/drops/inbox; move each to done/ or failed/.

    Args:
        model: "champion" (the promoted model) or a registered version such as "v0002".
        inbox: When a drop is ready (quiet seconds without a _READY file) and when a claim is stale.
        scoring: Listing, decoding, batching, the predictions contract and the drift limits.
        home: VISIONFLOW_HOME to use; empty means the serving process's.
    """
    started = time.perf_counter()
    check_deployment_parameters(home, {})
    layout = resolve_home(home)
    folders = DropFolders(layout.drops)
    outcomes: dict[str, dict] = {}
    for drop in find_ready_drops_task(folders, inbox or InboxConfig()):
        claimed = claim_drop_task(drop, folders)
        if claimed is None:
            continue
        try:
            summary = score_flow(drop=str(claimed), model=model, config=scoring, home=str(layout.root))
        except BusyError:  # Another run is writing a drop of this name: try again on the next run.
            outcomes[drop.name] = {"moved_to": release_drop_task(claimed, folders)}
            continue
        except Exception as error:  # Every claimed drop must leave processing/, whatever went wrong.
            reason = str(error) or repr(error)
            outcomes[drop.name] = {"moved_to": finish_drop_task(claimed, folders, failure=reason), "error": reason}
            continue
        outcomes[drop.name] = {**summary.model_dump(mode="json"), "moved_to": finish_drop_task(claimed, folders)}
    failed = sorted(name for name, outcome in outcomes.items() if "error" in outcome)
    if failed:
        raise VisionflowError(
            f"{len(failed)} of {len(outcomes)} drops failed and moved to {folders.failed}: {', '.join(failed)}"
        )
    return {"drops": outcomes, "seconds": round(time.perf_counter() - started, 2)}
