"""Logging and artifacts that work inside a Prefect run and outside one alike.

A task's function is also called directly (`task.fn(...)`, scripts, tests). There, Prefect's
run logger does not exist and an artifact would need a server, so these helpers fall back to
standard logging and skip the artifact, instead of failing.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    create_image_artifact,
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


def flow_run_name() -> str:
    """The current flow run's name, or "visionflow" outside a run (names a Data Docs page)."""
    context = FlowRunContext.get()
    return context.flow_run.name if context is not None and context.flow_run is not None else "visionflow"


def run_label() -> str | None:
    """ "flow run NAME (ID)" inside a flow run, for records of who did what; None outside one."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    return f"flow run {context.flow_run.name} ({context.flow_run.id})"


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


# PNGs larger than this, in bytes, are not embedded in an artifact (the Prefect database keeps it).
MAX_EMBEDDED_IMAGE_BYTES = 2 * 1024 * 1024


def publish_image(key: str, png_path: Path, description: str) -> None:
    """A keyed image artifact showing a PNG in the UI, embedded as a data URL.

    The image travels inside the artifact, so the UI shows it wherever the browser is, with no
    file server and nothing reachable from outside.
    """
    if not in_prefect_run():
        return
    data = Path(png_path).read_bytes()
    if len(data) > MAX_EMBEDDED_IMAGE_BYTES:
        run_logger(__name__).info("%s is too large to show in the UI; open it on disk", png_path)
        return
    url = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    create_image_artifact(image_url=url, key=key, description=description)


def start_progress(key: str, description: str) -> UUID | None:
    """A progress artifact at 0 %, or None outside a run."""
    if not in_prefect_run():
        return None
    return create_progress_artifact(progress=0.0, key=key, description=description)


def update_progress(artifact_id: UUID | None, percent: float) -> None:
    """Move a progress artifact to percent (0 to 100); nothing outside a run."""
    if artifact_id is not None:
        update_progress_artifact(artifact_id=artifact_id, progress=percent)


def progress_reporter(
    log, artifact_id: UUID | None, verb: str, total_items: int | None = None, interval_seconds: float = 5.0
) -> Callable[[int, int, float], None]:
    """An on_progress(done, total, seconds elapsed) callback for long work: a log line such as
    "predicted 512 of 10000 images (2,345 images/s, ETA 4 s)" at most every interval_seconds and
    at the end, and the progress artifact moved at most once a second (each move is a call to
    the server).

    done and total count images, or units of work (chunks) when total_items says how many images
    all the units hold together; the line then counts images in proportion to the units done.
    """
    last_logged = [0.0]
    last_moved = [0.0]

    def report(done: int, total: int, elapsed: float) -> None:
        if done >= total or elapsed - last_moved[0] >= 1.0:
            last_moved[0] = elapsed
            update_progress(artifact_id, 100.0 * done / max(total, 1))
        if done < total and elapsed - last_logged[0] < interval_seconds:
            return
        last_logged[0] = elapsed
        if total_items is not None:
            done, total = round(total_items * done / max(total, 1)), total_items
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("nan")
        log.info("%s %d of %d images (%.0f images/s, ETA %.0f s)", verb, done, total, rate, eta)

    return report
