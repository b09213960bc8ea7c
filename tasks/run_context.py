"""Logging and artifacts that work inside a Prefect run and outside one alike.

A task's function is also called directly (`task.fn(...)`, scripts, tests). There, Prefect's
run logger does not exist and an artifact would need a server, so these helpers fall back to
standard logging and skip the artifact, instead of failing.
"""

from __future__ import annotations

import logging
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import MissingContextError


def in_prefect_run() -> bool:
    """True inside a flow or task run."""
    return TaskRunContext.get() is not None or FlowRunContext.get() is not None


def run_logger(name: str) -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a run (its lines show in the UI), else the standard logger."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(name)


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """A keyed markdown artifact, so each run's version shows under the same key in the UI."""
    if in_prefect_run():
        create_markdown_artifact(key=key, markdown=markdown, description=description)


def publish_table(key: str, table: list[dict], description: str) -> None:
    """A keyed table artifact."""
    if in_prefect_run():
        create_table_artifact(key=key, table=table, description=description)


def start_progress(key: str, description: str) -> UUID | None:
    """A progress artifact at 0 %, or None outside a run."""
    if not in_prefect_run():
        return None
    return create_progress_artifact(progress=0.0, key=key, description=description)


def update_progress(artifact_id: UUID | None, percent: float) -> None:
    """Move a progress artifact to percent (0 to 100); nothing outside a run."""
    if artifact_id is not None:
        update_progress_artifact(artifact_id=artifact_id, progress=percent)
