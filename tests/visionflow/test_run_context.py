"""Outside a Prefect run: logs go to standard logging, artifacts are skipped, progress lines count images."""

from __future__ import annotations

import logging
from pathlib import Path
from uuid import UUID

import pytest

from visionflow import run_context
from visionflow.run_context import (
    progress_reporter,
    publish_image,
    publish_markdown,
    publish_table,
    run_logger,
    start_progress,
    update_progress,
)

# Prefect's artifact functions as run_context calls them, in the order publish_everything does.
ARTIFACT_CALLS = [
    "create_markdown_artifact",
    "create_table_artifact",
    "create_image_artifact",
    "create_progress_artifact",
    "update_progress_artifact",
]


class Lines:
    """A stand-in logger that keeps each formatted line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *arguments) -> None:
        self.lines.append(message % arguments)


@pytest.fixture
def artifacts_made(monkeypatch) -> list[str]:
    """The name of every Prefect artifact call run_context makes, which are recorded instead of sent."""
    made: list[str] = []

    def recorder(name: str):
        def record(*arguments, **settings) -> UUID:
            made.append(name)
            return UUID(int=len(made))  # An artifact's id, as Prefect returns it.

        return record

    for name in ARTIFACT_CALLS:
        monkeypatch.setattr(run_context, name, recorder(name))
    return made


def publish_everything(png_path: Path) -> None:
    publish_markdown("some-report", "# nothing", "no server is needed outside a run")
    publish_table("some-table", [{"images": 1}], "a table")
    publish_image("some-image", png_path, "an image")
    update_progress(start_progress("some-progress", "nothing to show"), 50.0)


def test_outside_a_run_the_standard_logger_is_used_and_artifacts_are_skipped(artifacts_made, tmp_path):
    assert run_logger("visionflow.test") is logging.getLogger("visionflow.test")
    assert start_progress("some-progress", "nothing to show") is None
    png_path = tmp_path / "tiny.png"
    png_path.write_bytes(b"\x89PNG\r\n\x1a\n")
    publish_everything(png_path)
    assert artifacts_made == []


def test_inside_a_run_every_artifact_is_made(artifacts_made, monkeypatch, tmp_path):
    # The same calls as outside a run, so the test above would see an artifact made there.
    monkeypatch.setattr(run_context, "in_prefect_run", lambda: True)
    png_path = tmp_path / "tiny.png"
    png_path.write_bytes(b"\x89PNG\r\n\x1a\n")
    publish_everything(png_path)
    assert artifacts_made == ARTIFACT_CALLS


def test_progress_counts_images_at_intervals_and_always_at_the_end():
    log = Lines()
    report = progress_reporter(log, None, "predicted", interval_seconds=5.0)
    report(100, 1000, 1.0)  # Too soon after the start: no line.
    report(600, 1000, 6.0)
    report(700, 1000, 7.0)  # Too soon after the last line.
    report(1000, 1000, 10.0)
    assert log.lines == [
        "predicted 600 of 1000 images (100 images/s, ETA 4 s)",
        "predicted 1000 of 1000 images (100 images/s, ETA 0 s)",
    ]


def test_progress_in_chunks_is_reported_in_images():
    log = Lines()
    report = progress_reporter(log, None, "decoded", total_items=5000)
    report(1, 4, 6.0)
    report(4, 4, 20.0)
    assert log.lines == [
        "decoded 1250 of 5000 images (208 images/s, ETA 18 s)",
        "decoded 5000 of 5000 images (250 images/s, ETA 0 s)",
    ]
