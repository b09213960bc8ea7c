"""Committed parts written again from the ledger: once per loss, every committed row, nothing made up."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from visionflow.errors import DamagedStateError
from visionflow.ledger.drops import PREDICTIONS, DropOutputs
from visionflow.ledger.ledger import PredictionLedger
from visionflow.ledger.part_repair import part_is_intact

CLASSES = ["cat", "dog"]
SCORED_AT = "2026-01-01T00:00:00.000000"


def class_names(version: str) -> list[str] | None:
    return CLASSES if version == "v1" else None


def test_an_intact_part_has_a_readable_footer_and_the_committed_rows(tmp_path):
    from visionflow.ledger.drops import predictions_table

    table = predictions_table(["a.png"], ["aa"], np.array([[0.4, 0.6]]), [SCORED_AT], CLASSES, "v1")
    pq.write_table(table, tmp_path / "part")
    assert part_is_intact(tmp_path / "part", 1)
    assert not part_is_intact(tmp_path / "part", 2), "fewer rows than the ledger committed"
    assert not part_is_intact(tmp_path / "missing", 1)
    (tmp_path / "half").write_bytes((tmp_path / "part").read_bytes()[:50])
    assert not part_is_intact(tmp_path / "half", 1)


def test_an_adopted_part_written_again_with_fewer_rows_is_not_written_again_by_the_next_run(tmp_path):
    outputs = DropOutputs(tmp_path / "drop")
    with PredictionLedger(tmp_path / "ledger.sqlite") as ledger:
        probabilities = np.array([0.4, 0.6], dtype=np.float32)
        ledger.commit_part("drop", PREDICTIONS, "part-1", [("a.png", "aa", "predicted")], [], "v1")
        # Adopted after the ledger was lost: a.png's row is the older part's, b.png's this one's.
        files = [("a.png", "aa", "predicted"), ("b.png", "bb", "predicted")]
        predictions = [("aa", probabilities, SCORED_AT), ("bb", probabilities, SCORED_AT)]
        ledger.commit_part("drop", PREDICTIONS, "part-2", files, predictions, "v1", adopt=True)

        first = outputs.recover(ledger, class_names)
        assert [(repair.part.name, repair.rows) for repair in first.repaired] == [("part-1", 1), ("part-2", 1)]
        assert first.lost_folders == [outputs.predictions] and len(first.warnings("drop")) == 1
        assert pq.read_table(outputs.predictions / "part-2").column("path").to_pylist() == ["b.png"]
        assert outputs.recover(ledger, class_names).repaired == [], "the ledger counts what the file holds"
        assert ledger.accepted_count("drop", "v1") == 2


def test_a_ledger_without_the_prediction_of_a_committed_row_is_told_as_damaged(tmp_path):
    with PredictionLedger(tmp_path / "ledger.sqlite") as ledger:
        ledger.commit_part("drop", PREDICTIONS, "part-1", [("a.png", "aa", "predicted")], [], "v1")
        with pytest.raises(
            DamagedStateError, match=f"ledger {tmp_path / 'ledger.sqlite'} .*part-1 .*holds no prediction"
        ):
            DropOutputs(tmp_path / "drop").recover(ledger, class_names)
