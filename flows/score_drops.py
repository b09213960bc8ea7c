"""The score-drops flow: score every ready drop in the inbox, each exactly once.

find ready drops -> per drop: claim it (atomic rename into processing/) -> the score flow's
steps, as tasks of this run -> move it to done/, or to failed/ with the reason; then look again,
until a look finds no drop this run has not handled. A drop another run claimed first is left
to that run, so a schedule and a trigger firing together never score a drop twice, and drops
that arrive while a run works are scored by that run instead of waiting for the next.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow

from visionflow.access import check_deployment_parameters
from visionflow.errors import BusyError, VisionflowError
from visionflow.flows.score import ScoringConfig, score_one_drop
from visionflow.home import HomeLayout, resolve_home
from visionflow.ledger.inbox import DropFolders, InboxConfig
from visionflow.models.registry import CHAMPION
from visionflow.tasks.score.claim_drops import (
    claim_drop_task,
    find_ready_drops_task,
    finish_drop_task,
    release_drop_task,
)
from visionflow.tasks.score.validate_predictions import refresh_data_docs_task


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
    handled: set[str] = set()  # Drops this run claimed, or found claimed by another run.
    while waiting := [
        drop for drop in find_ready_drops_task(folders, inbox or InboxConfig()) if drop.name not in handled
    ]:
        for drop in waiting:
            handled.add(drop.name)
            if (claimed := claim_drop_task(drop, folders)) is not None:
                outcomes[drop.name] = score_claimed_drop(claimed, folders, model, scoring or ScoringConfig(), layout)
    if outcomes:
        refresh_data_docs_task(layout.root)
    failed = sorted(name for name, outcome in outcomes.items() if "error" in outcome)
    if failed:
        raise VisionflowError(
            f"{len(failed)} of {len(outcomes)} drops failed and moved to {folders.failed}: {', '.join(failed)}"
        )
    return {"drops": outcomes, "seconds": round(time.perf_counter() - started, 2)}


def score_claimed_drop(
    claimed: Path, folders: DropFolders, model: str, scoring: ScoringConfig, layout: HomeLayout
) -> dict:
    """Score one claimed drop and move it on; return its summary and where it went."""
    try:
        summary = score_one_drop(claimed, model, scoring, layout)
    except BusyError:  # Another run is writing a drop of this name: try again on the next run.
        return {"moved_to": release_drop_task(claimed, folders)}
    except Exception as error:  # Every claimed drop must leave processing/, whatever went wrong.
        reason = str(error) or repr(error)
        return {"moved_to": finish_drop_task(claimed, folders, failure=reason), "error": reason}
    return {**summary.model_dump(mode="json"), "moved_to": finish_drop_task(claimed, folders)}
