"""The scoring ledger: contents by model, rows by drop, parts committed atomically."""

from __future__ import annotations

import numpy as np
import pytest

from visionflow.ledger import PredictionLedger, orphan_parts


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


def test_orphan_parts_are_the_files_the_ledger_does_not_know(tmp_path):
    (tmp_path / "part-1").write_text("")
    (tmp_path / "part-2").write_text("")
    assert orphan_parts(tmp_path, {"part-1"}) == [tmp_path / "part-2"]
    assert orphan_parts(tmp_path / "missing", set()) == []
