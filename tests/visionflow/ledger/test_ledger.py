"""The scoring ledger: contents by model, rows by drop, parts committed atomically.

The tests that hold for any database run on SQLite and on PostgreSQL (a fresh database each)."""

from __future__ import annotations

import random
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from visionflow.errors import BadInputError, DamagedStateError, NoSpaceError, UnreachableError
from visionflow.home import LEDGER_URL_VARIABLE, resolve_home
from visionflow.ledger.ledger import PENDING, PredictionLedger, part_files, reservation_owner
from visionflow.ledger.store import ledger_url

from tests.postgres_helpers import free_port


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def location(request, tmp_path):
    """Where a test's ledger lives: a SQLite file, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return tmp_path / "ledger.sqlite"
    server = request.getfixturevalue("postgres_server")
    return server.url(server.create_database("ledger"))


def run_sql(ledger: PredictionLedger, sql: str) -> list:
    """Run one statement on the ledger's own connection and commit it; its rows, if any."""
    result = ledger._connection.exec_driver_sql(sql)
    rows = result.all() if result.returns_rows else []
    ledger._connection.commit()
    return rows


def test_a_committed_part_records_its_files_and_new_predictions(location):
    probabilities = np.array([0.2, 0.8], dtype=np.float32)
    with PredictionLedger(location) as ledger:
        files = [("a.png", "aa", "predicted"), ("copy.png", "aa", "predicted"), ("bad.png", "", "rejected")]
        ledger.commit_part("drop", "predictions", "part-1", files, [("aa", probabilities, "2026-01-01T00:00:00")], "v1")
    with PredictionLedger(location) as ledger:
        known = ledger.known_probabilities(["aa", "bb"], "v1")
        assert list(known) == ["aa"] and np.array_equal(known["aa"][0], probabilities)
        assert ledger.known_probabilities(["aa"], "v2") == {}, "another model has scored nothing"
        assert ledger.recorded_files("drop", "v1")[("copy.png", "aa")] == "predicted"
        assert ledger.accepted_count("drop", "v1") == 2 and ledger.parts("drop", "predictions") == {"part-1"}


def test_a_failed_commit_leaves_nothing_behind(location):
    with PredictionLedger(location) as ledger:
        ledger.commit_part("drop", "predictions", "part-1", [("a.png", "aa", "predicted")], [], "v1")
        with pytest.raises(Exception, match="UNIQUE|unique constraint"):
            ledger.commit_part(
                "drop", "predictions", "part-2", [("b.png", "bb", "predicted"), ("a.png", "aa", "predicted")], [], "v1"
            )
        assert ledger.parts("drop", "predictions") == {"part-1"} and ledger.accepted_count("drop", "v1") == 1


def test_a_reserved_part_is_pending_until_committed_and_can_be_forgotten(location):
    with PredictionLedger(location) as ledger:
        ledger.reserve_part("drop", "predictions", "part-1")
        ledger.reserve_part("drop", "predictions", "part-2")
        assert ledger.parts("drop", "predictions") == set()
        assert ledger.parts("drop", "predictions", PENDING) == {"part-1", "part-2"}
        ledger.commit_part("drop", "predictions", "part-1", [("a.png", "aa", "predicted")], [], "v1")
        ledger.forget_part("drop", "predictions", "part-2")
        assert ledger.parts("drop", "predictions") == {"part-1"}
        assert ledger.parts("drop", "predictions", PENDING) == set()


def test_adopting_a_part_keeps_rows_the_ledger_already_holds(location):
    with PredictionLedger(location) as ledger:
        ledger.commit_part("drop", "predictions", "part-1", [("a.png", "aa", "predicted")], [], "v1")
        files = [("a.png", "aa", "predicted"), ("b.png", "bb", "predicted")]
        ledger.commit_part("drop", "predictions", "part-2", files, [], "v1", adopt=True)
        assert ledger.accepted_count("drop", "v1") == 2
        assert ledger.parts("drop", "predictions") == {"part-1", "part-2"}


def test_a_ledger_from_before_part_states_counts_its_parts_as_committed(tmp_path):
    path = tmp_path / "ledger.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE parts (drop_name TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, rows INTEGER NOT NULL,"
        " PRIMARY KEY (drop_name, kind, name));"
        "INSERT INTO parts VALUES ('drop', 'predictions', 'part-old', 3);"
    )
    old.commit()
    old.close()
    with PredictionLedger(path) as ledger:
        assert ledger.parts("drop", "predictions") == {"part-old"}


def test_a_damaged_ledger_names_the_file_and_how_to_recover(tmp_path):
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is not a database, it is a text file that replaced one" * 100)
    with pytest.raises(DamagedStateError, match=f"scoring ledger {path} is damaged .*mv {path} .*rebuilt"):
        PredictionLedger(path)
    assert path.read_bytes().startswith(b"this is not a database"), "the damaged file is left as it was"


def test_a_full_disk_is_reported_as_such_and_loses_nothing_committed(tmp_path):
    with PredictionLedger(tmp_path / "ledger.sqlite") as ledger:
        ledger.commit_part("drop", "predictions", "part-1", [("a.png", "aa", "predicted")], [], "v1")
        pages = run_sql(ledger, "PRAGMA page_count")[0][0]
        run_sql(ledger, f"PRAGMA max_page_count = {pages + 1}")  # As good as a full disk.
        many = [(f"{index}.png", f"{index:064d}", "predicted") for index in range(5000)]
        with pytest.raises(NoSpaceError, match="ledger .* is full .*free some space and run the same command again"):
            ledger.commit_part("drop", "predictions", "part-2", many, [], "v1")
        assert ledger.parts("drop", "predictions") == {"part-1"} and ledger.accepted_count("drop", "v1") == 1


def test_part_files_lists_files_only(tmp_path):
    (tmp_path / "part-1").write_text("")
    (tmp_path / ".part-2.tmp-7").write_text("")
    (tmp_path / "folder").mkdir()
    assert part_files(tmp_path) == [tmp_path / ".part-2.tmp-7", tmp_path / "part-1"]
    assert part_files(tmp_path / "missing") == []


def test_a_content_reserved_by_a_live_run_is_not_handed_to_another(location):
    with PredictionLedger(location) as ledger:
        first, second = reservation_owner(), reservation_owner()
        assert ledger.reserve_contents(["aa", "bb"], "v1", first) == {"aa", "bb"}
        assert ledger.reserve_contents(["bb", "cc"], "v1", second) == {"cc"}, "bb is the first run's"
        assert ledger.reserve_contents(["bb"], "v2", second) == {"bb"}, "another model's reservations are apart"
        ledger.release_contents(first)
        assert ledger.reserve_contents(["bb"], "v1", second) == {"bb"}


def test_reservations_of_runs_that_are_gone_are_taken_over(location):
    with PredictionLedger(location) as ledger:
        dead_here = f"{socket.gethostname()}:999999999:token"  # No process has this id.
        ledger.reserve_contents(["aa"], "v1", dead_here)
        ledger.reserve_contents(["bb", "cc"], "v1", "another-host:1234:token")
        run_sql(ledger, "UPDATE reservations SET reserved_at = 0 WHERE sha256 = 'cc'")  # Long ago.
        assert ledger.reserve_contents(["aa", "bb", "cc"], "v1", reservation_owner()) == {"aa", "cc"}


def test_runs_reserving_at_once_never_both_hold_a_content(location):
    contents = [f"{index:064x}" for index in range(2500)]  # Several lookups of LOOKUP_CHUNK contents each.
    with PredictionLedger(location) as ledger:
        # The first lookup's contents are all abandoned, so the runs race to take them over at once.
        ledger.reserve_contents(contents[:1200], "v1", "another-host:1234:token")
        run_sql(ledger, "UPDATE reservations SET reserved_at = 0")  # Abandoned long ago: anyone may take them.
    runs = 4
    start = threading.Barrier(runs)

    def reserve(seed: int) -> set[str]:
        mine = random.Random(seed).sample(contents, len(contents))
        with PredictionLedger(location) as ledger:
            start.wait()
            return ledger.reserve_contents(mine, "v1", reservation_owner())

    with ThreadPoolExecutor(runs) as pool:
        held = list(pool.map(reserve, range(runs)))
    assert sum(len(contents_held) for contents_held in held) == len(contents), "no content is held twice"
    assert set().union(*held) == set(contents), "every content, the abandoned ones included, is held by one run"


def test_runs_opening_a_new_ledger_at_once_create_it_once(location):
    runs = 4
    start = threading.Barrier(runs)

    def open_and_reserve(index: int) -> set[str]:
        start.wait()
        with PredictionLedger(location) as ledger:
            return ledger.reserve_contents([f"content-{index}"], "v1", reservation_owner())

    with ThreadPoolExecutor(runs) as pool:
        assert list(pool.map(open_and_reserve, range(runs))) == [{f"content-{index}"} for index in range(runs)]


def test_reservation_times_keep_fractions_of_a_second(location):
    with PredictionLedger(location) as ledger:
        before = time.time()
        ledger.reserve_contents(["aa"], "v1", reservation_owner())
        [(reserved_at,)] = run_sql(ledger, "SELECT reserved_at FROM reservations")
        assert before <= reserved_at <= time.time(), "seconds since the epoch, not rounded to minutes"


def test_an_unreachable_postgresql_ledger_says_which_what_failed_and_what_to_do():
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://scorer:s3cret@127.0.0.1:{free_port()}/ledger"
    with pytest.raises(UnreachableError) as caught:
        PredictionLedger(url)
    message = str(caught.value)
    assert message.startswith(f"cannot reach the scoring ledger {url.replace('s3cret', '***')} (")
    assert "refused" in message and "VISIONFLOW_LEDGER_URL" in message and "run the same command again" in message
    assert "s3cret" not in message


@pytest.mark.postgres
def test_a_connection_lost_mid_run_is_reported_as_out_of_reach_with_no_reconnect_bound(postgres_server):
    url = postgres_server.url(postgres_server.create_database("ledger"))
    with PredictionLedger(url, reconnect_seconds=0) as ledger:
        [(backend,)] = run_sql(ledger, "SELECT pg_backend_pid()")
        with PredictionLedger(url) as administrator:
            run_sql(administrator, f"SELECT pg_terminate_backend({backend})")  # As a server restart would.
        with pytest.raises(UnreachableError, match="cannot reach the scoring ledger .* run the same command again"):
            ledger.parts("drop", "predictions")


def test_a_ledger_url_must_name_sqlite_or_postgresql():
    with pytest.raises(BadInputError, match="mysql://scorer:\\*\\*\\*@db/ledger names a database .* postgresql"):
        PredictionLedger("mysql://scorer:s3cret@db/ledger")
    assert ledger_url("postgresql://scorer@db/ledger").drivername == "postgresql+psycopg", "psycopg 3 by default"


def test_the_ledger_is_the_homes_sqlite_file_unless_a_url_is_set(tmp_path, monkeypatch):
    layout = resolve_home(tmp_path / "a home?with 100% odd names")
    monkeypatch.delenv(LEDGER_URL_VARIABLE, raising=False)
    with PredictionLedger(layout.ledger_url) as ledger:
        ledger.reserve_part("drop", "predictions", "part-1")
    assert layout.ledger.is_file()
    monkeypatch.setenv(LEDGER_URL_VARIABLE, "postgresql+psycopg://scorer@db.example.internal/ledger")
    assert layout.ledger_url == "postgresql+psycopg://scorer@db.example.internal/ledger"


def test_a_sqlite_ledger_imports_nothing_of_postgresql(tmp_path):
    code = (
        "import sys; from visionflow.ledger.ledger import PredictionLedger; "
        f"PredictionLedger({str(tmp_path / 'ledger.sqlite')!r}).close(); "
        "print(sorted(name for name in sys.modules if name.startswith(('psycopg', 'sqlalchemy.dialects.postgresql'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "[]"
