"""`visionflow score` on a PostgreSQL ledger whose server is restarted, or stopped for longer than
the reconnect bound, in the middle of a run of several parts. Restarted: the run waits, says so,
and completes. Stopped too long: exit 9 with its one line; once the server is back the same
command completes. Either way every file ends in exactly one row, and the ledger holds each
content and each file's row once. A PostgreSQL server of the tests' own.

The fault lands mid-run whatever the machine's speed: the test holds one of the drop's contents
as another run would, so the scoring run commits its own part of predictions and then waits on
the ledger, asking it every half second whether that content is done, until the test lets go of it
(the run then predicts it itself, a second part; the undecodable files make a third)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from sqlalchemy import create_engine

from visionflow.ledger.ledger import PredictionLedger, reservation_owner
from visionflow.ledger.reservation_owners import owner_gone

from tests.conftest import write_image
from tests.postgres_restarts import (
    OwnPostgresServer,
    finished,
    ledger_counts,
    own_postgres_server,
    start_scoring,
    wait_until,
)
from tests.scoring_helpers import register_tiny_model

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(600), pytest.mark.usefixtures("prefect_server")]

IMAGES = 300
BROKEN = 3  # Files that cannot be decoded: a part of rejections besides the predictions' parts.


@pytest.fixture
def own_server() -> Iterator[OwnPostgresServer]:
    yield from own_postgres_server()


def reservation_holders(ledger_url: str) -> set[str]:
    """The owners of the reservations the ledger holds now."""
    engine = create_engine(ledger_url)
    try:
        with engine.connect() as connection:
            return {owner for (owner,) in connection.exec_driver_sql("SELECT DISTINCT owner FROM reservations")}
    finally:
        engine.dispose()


def holding_one_content(ledger_url: str, drop: Path, version: str) -> tuple[PredictionLedger, str]:
    """A ledger of the test's own, holding the reservation of the drop's first image as a live run
    on this host does; returns it and the holder's name (release_contents lets go)."""
    content = hashlib.sha256((drop / "folder 0" / "0.png").read_bytes()).hexdigest()
    ledger, holder = PredictionLedger(ledger_url), reservation_owner()
    assert ledger.reserve_contents([content], version, holder) == {content}
    return ledger, holder


@pytest.fixture
def scoring_setup(own_server, home, tmp_path) -> tuple[str, Path, set[str], str]:
    """A ledger database on the test's own server, a registered model, and a drop of IMAGES images
    and BROKEN undecodable files; returns (ledger URL, drop, the drop's files, model version)."""
    version = register_tiny_model(home / "models")
    drop = tmp_path / "drop"
    for index in range(IMAGES):
        write_image(drop / f"folder {index % 7}" / f"{index}.png", (index % 255, 90, 160), seed=index)
    for index in range(BROKEN):
        (drop / "broken").mkdir(exist_ok=True)
        (drop / "broken" / f"{index}.png").write_bytes(f"not an image {index}".encode())
    files = {str(path.relative_to(drop)) for path in drop.rglob("*") if path.is_file()}
    return own_server.server.url(own_server.server.create_database("ledger")), drop, files, version


def assert_each_file_once(ledger_url: str, summary: dict, files: set[str]) -> None:
    """Every file in exactly one output row; the ledger holds each file's row and each content once."""
    predicted = ds.dataset(summary["predictions_path"], format="parquet").to_table().to_pandas()
    rejected = ds.dataset(summary["rejections_path"], format="parquet").to_table().to_pandas()
    rows = list(predicted["path"]) + list(rejected["path"])
    assert sorted(rows) == sorted(files), "every file has exactly one row"
    assert len(rejected) == BROKEN
    counts = ledger_counts(ledger_url)
    assert counts["files"] == counts["distinct_files"] == counts["committed_rows"] == len(files)
    assert counts["predictions"] == counts["distinct_predictions"] == IMAGES, "each content once"
    assert counts["pending_parts"] == 0
    # A run that stopped with exit 9 could not release its reservations, as a killed run cannot:
    # they count as abandoned, its process being gone, and a later run takes over any it needs.
    assert all(owner_gone(owner, 0.0, time.time()) for owner in reservation_holders(ledger_url))


def test_a_server_restarted_mid_run_is_waited_for_and_the_run_completes(own_server, scoring_setup, home):
    ledger_url, drop, files, version = scoring_setup
    holder_ledger, holder = holding_one_content(ledger_url, drop, version)
    with holder_ledger:
        run = start_scoring(home, ledger_url, drop)
        wait_until(lambda: ledger_counts(ledger_url)["committed_parts"], run, "the run's first commit")
        own_server.restart()
        wait_until(lambda: "cannot be reached" in (home / "score.err").read_text(), run, "a wait")
        holder_ledger.release_contents(holder)
        code, summary, stderr = finished(run, home)
    assert code == 0, stderr[-3000:]
    assert f"the scoring ledger {ledger_url} cannot be reached (terminating connection" in stderr
    assert "retrying for up to" in stderr and "answers again after" in stderr
    assert summary["scored"] == IMAGES and summary["rejected"] == BROKEN
    assert_each_file_once(ledger_url, summary, files)
    assert ledger_counts(ledger_url)["committed_parts"] == 3 and reservation_holders(ledger_url) == set()


def test_a_server_stopped_past_the_bound_stops_the_run_with_exit_9_and_the_rerun_completes(
    own_server, scoring_setup, home
):
    ledger_url, drop, files, version = scoring_setup
    holder_ledger, holder = holding_one_content(ledger_url, drop, version)
    with holder_ledger:
        run = start_scoring(home, ledger_url, drop, reconnect_seconds=3)
        wait_until(lambda: ledger_counts(ledger_url)["committed_parts"], run, "the run's first commit")
        own_server.stop()
        try:
            code, summary, stderr = finished(run, home)
        finally:
            own_server.start()
        holder_ledger.release_contents(holder)
    assert code == 9, stderr[-3000:]
    assert summary["exit_code"] == 9
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"visionflow: cannot reach the scoring ledger {ledger_url} for 3 s (")
    assert "run the same command again" in last and "Traceback" not in stderr
    assert "retrying for up to" in stderr

    code, summary, stderr = finished(start_scoring(home, ledger_url, drop), home)
    assert code == 0, stderr[-3000:]
    assert "cannot be reached" not in stderr
    assert summary["already_scored"] == IMAGES - 1, "the first run's committed part is kept"
    assert summary["scored"] == 1 and summary["rejected"] == BROKEN
    assert_each_file_once(ledger_url, summary, files)
