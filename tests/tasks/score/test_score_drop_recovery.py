"""Scoring a drop after damage on one machine: a full disk under the ledger, a committed part cut in
half or gone, a lost output folder. Each ends well: a full disk as NoSpaceError and a later run that
finishes the drop; lost or damaged parts written again from the ledger, damaged files set aside.

The full disk is a real file system (a small tmpfs, tests/visionflow/ledger/small_disk.py) where the
machine lets a test mount one, else the test is skipped saying so; the parts are damaged on disk.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from visionflow.errors import NoSpaceError
from visionflow.ledger.drops import DropOutputs
from visionflow.ledger.ledger import PredictionLedger
from visionflow.ledger.part_repair import REBUILT_REJECTION
from visionflow.models.registry import find_model, load_checked_model
from visionflow.tasks.score.list_drop_files import DropScanConfig, list_drop_files
from visionflow.tasks.score.score_drop import ScoreConfig, score_drop

from tests.scoring_helpers import build_hostile_drop, register_tiny_model
from tests.visionflow.ledger.small_disk import fill, log, small_disk

SMALL_PARTS = ScoreConfig(workers=1, batch_size=2, part_rows=3)  # Many parts, many commits.


@pytest.fixture
def scoring(tmp_path):
    """A function that scores a drop with a registered tiny model, the ledger at a given location."""
    register_tiny_model(tmp_path / "models")
    record = find_model(tmp_path / "models")
    model = load_checked_model(record)

    def score(drop: Path, ledger_location: Path | None = None, model_record=record, loaded=model):
        files = list_drop_files(drop, DropScanConfig(workers=1))
        outputs = DropOutputs(tmp_path / "predictions" / drop.name)
        with PredictionLedger(ledger_location or tmp_path / "ledger" / "scoring.sqlite") as ledger:
            return score_drop(files, drop, model_record, loaded, ledger, outputs, SMALL_PARTS)

    return score


def rows(folder: Path) -> pd.DataFrame:
    """Every row of a drop's predictions or rejections folder, sorted by path."""
    table = ds.dataset(folder, format="parquet").to_table().to_pandas()
    return table.sort_values("path").reset_index(drop=True)


def one_row_each(outputs: Path, expected: dict[str, str]) -> None:
    """Every file of the drop has exactly one row, in the dataset its expected outcome names."""
    predictions, rejections = rows(outputs / "predictions"), rows(outputs / "rejections")
    assert not predictions["path"].duplicated().any() and not rejections["path"].duplicated().any()
    outcome = {path: "predicted" for path in predictions["path"]} | {path: "rejected" for path in rejections["path"]}
    assert len(predictions) + len(rejections) == len(expected) and outcome == expected


# Free bytes beside the ledger: none, a few pages ("disk I/O error" from SQLite), a few parts' worth.
@pytest.mark.parametrize("free_kib", [0, 8, 64])
def test_a_full_disk_under_the_ledger_stops_scoring_as_no_space_and_a_later_run_finishes(scoring, tmp_path, free_kib):
    drop = tmp_path / "drop"
    expected = build_hostile_drop(drop, tmp_path / "outside")
    with small_disk(tmp_path / "ledger", 2048) as disk:
        PredictionLedger(disk / "scoring.sqlite").close()
        filler = fill(disk, free_kib * 1024)
        with pytest.raises(NoSpaceError, match="the disk holding the scoring ledger .* is full"):
            scoring(drop)
        log.info("%d KiB free beside the ledger: scoring stopped as NoSpaceError", free_kib)
        filler.unlink()
        again = scoring(drop)
    one_row_each(tmp_path / "predictions" / "drop", expected)
    assert again.files == len(expected) and again.recovery_warnings == []


def test_committed_parts_cut_in_half_are_set_aside_and_written_again_from_the_ledger(scoring, tmp_path):
    drop = tmp_path / "drop"
    expected = build_hostile_drop(drop, tmp_path / "outside")
    first = scoring(drop)
    outputs = tmp_path / "predictions" / "drop"
    predictions, rejections = rows(outputs / "predictions"), rows(outputs / "rejections")
    damaged = [sorted((outputs / kind).glob("part-*.parquet"))[1] for kind in ("predictions", "rejections")]
    halves = {}
    for part in damaged:
        halves[part.name] = part.read_bytes()[: part.stat().st_size // 2]
        part.write_bytes(halves[part.name])  # What a crash or a copy that stopped leaves.

    again = scoring(drop)
    assert again.parts_rebuilt == [str(part) for part in damaged]
    for part in damaged:
        (aside,) = (outputs / "set-aside" / part.parent.name).glob(f"{part.name}.damaged-*")
        assert aside.read_bytes() == halves[part.name], "the damaged file is kept as it was"
        assert any(str(part) in line and str(aside) in line for line in again.recovery_warnings)
    one_row_each(outputs, expected)
    assert rows(outputs / "predictions").equals(predictions), "every prediction row is back, as it was"
    rebuilt = rows(outputs / "rejections")
    assert rebuilt[["path", "sha256"]].equals(rejections[["path", "sha256"]])
    assert (rebuilt["reason"] == REBUILT_REJECTION).sum() == (rebuilt["reason"] != rejections["reason"]).sum() > 0
    assert again.scored == 0 and again.prediction_rows_written == 0 and first.scored > 0


def test_a_missing_committed_part_is_written_again_from_the_ledger(scoring, tmp_path):
    drop = tmp_path / "drop"
    build_hostile_drop(drop, tmp_path / "outside")
    scoring(drop)
    folder = tmp_path / "predictions" / "drop" / "predictions"
    before = rows(folder)
    lost = sorted(folder.glob("part-*.parquet"))[-1]
    lost.unlink()
    again = scoring(drop)
    assert again.parts_rebuilt == [str(lost)] and rows(folder).equals(before)
    assert again.recovery_warnings == [
        f"drop drop: committed part {lost} was missing; its {len(lost_rows(before, lost))} rows were written again "
        "from the scoring ledger"
    ]


def lost_rows(before: pd.DataFrame, part: Path) -> pd.DataFrame:
    """The rows of before that part held (read back from the part written again)."""
    return before[before["path"].isin(ds.dataset(part, format="parquet").to_table().column("path").to_pylist())]


def test_a_lost_output_folder_is_written_again_from_the_ledger(scoring, tmp_path):
    drop = tmp_path / "drop"
    expected = build_hostile_drop(drop, tmp_path / "outside")
    scoring(drop)
    outputs = tmp_path / "predictions" / "drop"
    before = rows(outputs / "predictions")
    shutil.rmtree(outputs)

    again = scoring(drop)
    one_row_each(outputs, expected)
    assert rows(outputs / "predictions").equals(before)
    assert again.scored == 0 and again.already_scored == len(before)
    for kind in ("predictions", "rejections"):
        assert any(f"its output folder {outputs / kind} was lost" in line for line in again.recovery_warnings)


def test_a_damaged_part_of_a_model_no_longer_registered_is_set_aside_and_named(scoring, tmp_path):
    drop = tmp_path / "drop"
    build_hostile_drop(drop, tmp_path / "outside")
    scoring(drop)
    folder = tmp_path / "predictions" / "drop" / "predictions"
    part = sorted(folder.glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])
    old = find_model(tmp_path / "models")
    record = find_model(tmp_path / "models", register_tiny_model(tmp_path / "models"))
    shutil.rmtree(old.folder)  # Its class names are gone with it.

    again = scoring(drop, model_record=record, loaded=load_checked_model(record))
    assert not part.exists() and again.parts_rebuilt == []
    assert len(list((folder.parent / "set-aside" / "predictions").glob(f"{part.name}.damaged-*"))) == 1
    (warning,) = again.recovery_warnings
    assert str(part) in warning and f"class names of model {old.version}" in warning
    written = rows(folder)
    assert again.scored == (written["model_version"] == record.version).sum() > 0, "the new model scores the drop"
