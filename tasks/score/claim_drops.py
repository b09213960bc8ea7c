"""Stage: the drop inbox's claims, as Prefect tasks (the rules live in visionflow/ledger/inbox.py).

A score-drops run finds the ready drops, claims each by renaming it into processing/, and moves it
to done/ or failed/ when scored, or back to the inbox when its drop name is busy in another run.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from visionflow.ledger.inbox import (
    DropFolders,
    InboxConfig,
    claim,
    finish,
    ready_drops,
    release,
    return_stale_claims,
)
from visionflow.run_context import run_logger


@task(name="find-ready-drops", cache_policy=NO_CACHE)
def find_ready_drops_task(folders: DropFolders, config: InboxConfig) -> list[Path]:
    """Prefect task: the ready inbox drops, after returning stale claims to the inbox."""
    log = run_logger(__name__)
    folders.create()
    for drop in return_stale_claims(folders, config):
        log.warning("drop %s was claimed by a run that did not finish; it is back in the inbox", drop.name)
    ready = ready_drops(folders, config)
    log.info("%d drops ready in %s", len(ready), folders.inbox)
    return ready


@task(name="claim-drop", cache_policy=NO_CACHE)
def claim_drop_task(drop: Path, folders: DropFolders) -> Path | None:
    """Prefect task: claim one drop; None when another run claimed it first."""
    claimed = claim(drop, folders)
    if claimed is None:
        run_logger(__name__).info("drop %s was claimed by another run, or one of its name is being scored", drop.name)
    return claimed


@task(name="release-drop", cache_policy=NO_CACHE)
def release_drop_task(drop: Path, folders: DropFolders) -> str:
    """Prefect task: return a claimed drop to the inbox (its drop name is busy in another run)."""
    target = release(drop, folders)
    run_logger(__name__).warning("drop %s is busy in another run; back in the inbox for the next run", drop.name)
    return str(target)


@task(name="finish-drop", cache_policy=NO_CACHE)
def finish_drop_task(drop: Path, folders: DropFolders, failure: str | None = None) -> str:
    """Prefect task: move a scored drop to done/ or failed/."""
    target = finish(drop, folders, failure)
    log = run_logger(__name__)
    if failure:
        log.error("drop %s failed and moved to %s: %s", drop.name, target, failure.splitlines()[0])
    else:
        log.info("drop %s scored and moved to %s", drop.name, target)
    return str(target)
