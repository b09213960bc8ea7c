"""The scoring ledger: contents by model, rows by drop, parts committed atomically."""

from __future__ import annotations

import socket
import sqlite3

import numpy as np
import pytest

from visionflow.errors import DamagedStateError, NoSpaceError
from visionflow.ledger import PENDING, PredictionLedger, part_files, reservation_owner


def test_a_committed_part_records_its_files_and_new_predictions(tmp_path):
    probabilities = np.array([0.2, 0.8], dtype=np.float32)
    with PredictionLedger(tmp_path / "ledger.sqlite") as ledger:
        files = [("a.png", "aa", "predicted"), ("copy.png", "aa", "predicted"), ("bad.png", "", "rejected")]
        ledger.commit_part("drop", "predictions", "part-1", files, [("aa", probabilities, "2026-01-01T00:00:00")], "v1")
    with PredictionLedger(tmp_path / "ledger.sqlite") as ledger:
        known = ledger.known_probabilities(["aa", "bb"], "v1")
        assert list(known) == ["aa"] and np.array_equal(known["aa"][0], probabilities)
        assert ledger.known_probabilities(["aa"], "v2") == {}, "another model has scored nothing"
        assert ledger.recorded_files("drop", "v1")[("copy.png", "aa")] == "predicted"
        assert ledger.accepted_count("drop", "v1") == 2 and ledger.parts("drop", "predictions") == {"part-1"}


def test_a_failed_commit_leaves_nothing_behind(tmp_path):
    with PredictionLedger(tmp_path / "ledger.sqlite") as ledger:
        ledger.commit_part("drop", "predictions", "part-1", [("a.png", "aa", "predicted")], [], "v1")
        with pytest.raises(Exception, match="UNIQUE"):
            ledger.commit_part(
                "drop", "predictions", "part-2", [("b.png", "bb", "predicted"), ("a.png", "aa", "predicted")], [], "v1"
            )
        assert ledger.parts("drop", "predictions") == {"part-1"} and ledger.accepted_count("drop", "v1") == 1


def test_a_reserved_part_is_pending_until_committed_and_can_be_forgotten(tmp_path):
    with PredictionLedger(tmp_path / "ledger.sqlite") as ledger:
        ledger.reserve_part("drop", "predictions", "part-1")
        ledger.reserve_part("drop", "predictions", "part-2")
        assert ledger.parts("drop", "predictions") == set()
        assert ledger.parts("drop", "predictions", PENDING) == {"part-1", "part-2"}
        ledger.commit_part("drop", "predictions", "part-1", [("a.png", "aa", "predicted")], [], "v1")
        ledger.forget_part("drop", "predictions", "part-2")
        assert ledger.parts("drop", "predictions") == {"part-1"}
        assert ledger.parts("drop", "predictions", PENDING) == set()


def test_adopting_a_part_keeps_rows_the_ledger_already_holds(tmp_path):
    with PredictionLedger(tmp_path / "ledger.sqlite") as ledger:
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
        pages = ledger._connection.execute("PRAGMA page_count").fetchone()[0]
        ledger._connection.execute(f"PRAGMA max_page_count = {pages + 1}")  # As good as a full disk.
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


def test_a_content_reserved_by_a_live_run_is_not_handed_to_another(tmp_path):
    with PredictionLedger(tmp_path / "ledger.sqlite") as ledger:
        first, second = reservation_owner(), reservation_owner()
        assert ledger.reserve_contents(["aa", "bb"], "v1", first) == {"aa", "bb"}
        assert ledger.reserve_contents(["bb", "cc"], "v1", second) == {"cc"}, "bb is the first run's"
        assert ledger.reserve_contents(["bb"], "v2", second) == {"bb"}, "another model's reservations are apart"
        ledger.release_contents(first)
        assert ledger.reserve_contents(["bb"], "v1", second) == {"bb"}


def test_reservations_of_runs_that_are_gone_are_taken_over(tmp_path):
    with PredictionLedger(tmp_path / "ledger.sqlite") as ledger:
        dead_here = f"{socket.gethostname()}:999999999:token"  # No process has this id.
        ledger.reserve_contents(["aa"], "v1", dead_here)
        ledger.reserve_contents(["bb", "cc"], "v1", "another-host:1234:token")
        ledger._connection.execute("UPDATE reservations SET reserved_at = 0 WHERE sha256 = 'cc'")  # Long ago.
        assert ledger.reserve_contents(["aa", "bb", "cc"], "v1", reservation_owner()) == {"aa", "cc"}
