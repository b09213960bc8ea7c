"""A PostgreSQL ledger whose server restarts, stops for a while, or loses a COMMIT's answer: the
operation is run again once the server answers, for up to the reconnect bound, without writing
anything twice; past the bound, UnreachableError (exit 9) says so. Real servers of the tests' own."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from visionflow.errors import InvalidSettingError, UnreachableError
from visionflow.ledger.connection import RECONNECT_VARIABLE, reconnect_seconds_setting
from visionflow.ledger.ledger import PENDING, PredictionLedger

from tests.postgres_restarts import CommitAnswerLosingProxy, OwnPostgresServer, own_postgres_server

PROBABILITIES = np.array([0.25, 0.75], dtype=np.float32)


@pytest.fixture
def own_server() -> Iterator[OwnPostgresServer]:
    yield from own_postgres_server()


def commit(ledger: PredictionLedger, part: str, contents: list[str]) -> None:
    """Reserve and commit a part of drop "drop" holding one file per content, each newly predicted."""
    ledger.reserve_part("drop", "predictions", part)
    ledger.commit_part("drop", "predictions", part, *rows(contents), "v1")


def rows(contents: list[str]) -> tuple[list, list]:
    """A part's files, one per content, and their new predictions."""
    files = [(f"{sha256}.png", sha256, "predicted") for sha256 in contents]
    return files, [(sha256, PROBABILITIES, "2026-12-07T00:00:00") for sha256 in contents]


def assert_each_file_once(url: str, expected: dict[str, list[str]]) -> None:
    """The ledger holds exactly the expected committed parts, each file's row once, each content once."""
    with PredictionLedger(url) as ledger:
        assert ledger.part_sizes("drop", "predictions") == {part: len(rows) for part, rows in expected.items()}
        assert ledger.parts("drop", "predictions", PENDING) == set()
        contents = [sha256 for rows in expected.values() for sha256 in rows]
        recorded = ledger.recorded_files("drop", "v1")
        assert sorted(recorded) == sorted((f"{sha256}.png", sha256) for sha256 in contents)
        assert set(ledger.known_probabilities(contents, "v1")) == set(contents)
        assert ledger.accepted_count("drop", "v1") == len(contents)


def waits(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if "retrying for up to" in record.getMessage()]


@pytest.mark.postgres
def test_a_restart_between_two_commits_is_waited_for_and_the_second_commit_goes_through(own_server, caplog):
    server = own_server.server
    url = server.url(server.create_database("ledger"))
    with caplog.at_level(logging.INFO), PredictionLedger(url, reconnect_seconds=60) as ledger:
        commit(ledger, "part-1", ["aa", "bb"])
        own_server.restart()  # Ends the ledger's connection, as a server upgrade or a failover does.
        commit(ledger, "part-2", ["cc", "dd"])
    [wait] = waits(caplog)
    assert wait.startswith(f"the scoring ledger {url} cannot be reached (terminating connection")
    assert any("answers again after" in record.getMessage() for record in caplog.records)
    assert_each_file_once(url, {"part-1": ["aa", "bb"], "part-2": ["cc", "dd"]})


@pytest.mark.postgres
def test_a_server_stopped_for_a_while_is_waited_for_until_it_starts_again(own_server, caplog):
    server = own_server.server
    url = server.url(server.create_database("ledger"))
    with caplog.at_level(logging.WARNING), PredictionLedger(url, reconnect_seconds=120) as ledger:
        commit(ledger, "part-1", ["aa"])
        own_server.stop()
        committing = threading.Thread(target=commit, args=(ledger, "part-2", ["bb"]))
        committing.start()
        deadline = time.monotonic() + 60
        while len(waits(caplog)) < 2 and committing.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(waits(caplog)) >= 2, "the commit waited, and tried again meanwhile"
        assert "refused" in waits(caplog)[-1], "a server that is down refuses connections"
        own_server.start()
        committing.join(timeout=60)
        assert not committing.is_alive()
    assert_each_file_once(url, {"part-1": ["aa"], "part-2": ["bb"]})


@pytest.mark.postgres
def test_past_the_bound_the_ledger_is_out_of_reach_and_a_later_run_finishes_the_work(own_server, caplog):
    server = own_server.server
    url = server.url(server.create_database("ledger"))
    with caplog.at_level(logging.WARNING), PredictionLedger(url, reconnect_seconds=2) as ledger:
        commit(ledger, "part-1", ["aa"])
        own_server.stop()
        with pytest.raises(UnreachableError) as caught:
            ledger.reserve_part("drop", "predictions", "part-2")
        tries = len(waits(caplog))
        with pytest.raises(UnreachableError):
            ledger.release_contents("a run giving up")
        assert len(waits(caplog)) == tries, "a ledger that gave up does not wait a second time"
    message = str(caught.value)
    assert message.startswith(f"cannot reach the scoring ledger {url} for 2 s (connection failed")
    assert "run the same command again: parts committed before are kept" in message
    assert len(waits(caplog)) >= 2, "it tried again before giving up"
    own_server.start()
    with PredictionLedger(url) as ledger:
        commit(ledger, "part-2", ["bb"])
    assert_each_file_once(url, {"part-1": ["aa"], "part-2": ["bb"]})


@pytest.mark.postgres
def test_a_bound_of_zero_reports_a_lost_connection_at_once(own_server, caplog):
    server = own_server.server
    url = server.url(server.create_database("ledger"))
    with caplog.at_level(logging.WARNING), PredictionLedger(url, reconnect_seconds=0) as ledger:
        own_server.restart()
        with pytest.raises(UnreachableError, match="^cannot reach the scoring ledger .* run the same command again"):
            ledger.parts("drop", "predictions")
    assert waits(caplog) == []


@pytest.mark.postgres
@pytest.mark.parametrize("lost", ["reserve_part", "commit_part"])
def test_a_commit_whose_answer_was_lost_is_not_written_twice(own_server, caplog, lost):
    server = own_server.server
    proxy = CommitAnswerLosingProxy(server)
    try:
        url = proxy.url(server.create_database("ledger"))
        with caplog.at_level(logging.WARNING), PredictionLedger(url, reconnect_seconds=60) as ledger:
            proxy.armed.set() if lost == "reserve_part" else None
            ledger.reserve_part("drop", "predictions", "part-1")
            proxy.armed.set() if lost == "commit_part" else None
            ledger.commit_part("drop", "predictions", "part-1", *rows(["aa"]), "v1")
        assert proxy.lost.is_set(), f"{lost}'s COMMIT went through and its answer was lost"
        assert len(waits(caplog)) == 1
        assert_each_file_once(url, {"part-1": ["aa"]})
    finally:
        proxy.close()


def test_the_bound_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv(RECONNECT_VARIABLE, raising=False)
    assert reconnect_seconds_setting() == 60
    monkeypatch.setenv(RECONNECT_VARIABLE, "7.5")
    assert reconnect_seconds_setting() == 7.5
    for wrong in ("-1", "soon", "nan"):
        monkeypatch.setenv(RECONNECT_VARIABLE, wrong)
        with pytest.raises(InvalidSettingError, match=f"^{RECONNECT_VARIABLE}='{wrong}' is not a number of seconds"):
            reconnect_seconds_setting()
