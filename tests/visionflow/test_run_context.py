"""Outside a Prefect run: logs go to standard logging, artifacts are skipped, progress lines count images."""

from __future__ import annotations

import logging

from visionflow.run_context import progress_reporter, publish_markdown, run_logger, start_progress


class Lines:
    """A stand-in logger that keeps each formatted line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str, *arguments) -> None:
        self.lines.append(message % arguments)


def test_outside_a_run_the_standard_logger_is_used_and_artifacts_are_skipped():
    assert isinstance(run_logger("visionflow.test"), logging.Logger)
    assert start_progress("some-progress", "nothing to show") is None
    publish_markdown("some-report", "# nothing", "no server is needed outside a run")


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
