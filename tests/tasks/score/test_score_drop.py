"""Scoring a drop: every file in exactly one row, nothing scored twice, resumable after a crash."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from visionflow.errors import BusyError
from visionflow.ledger.drops import DropOutputs
from visionflow.ledger.ledger import PredictionLedger
from visionflow.models.registry import find_model, load_checked_model
from visionflow.tasks.score.list_drop_files import DropScanConfig, list_drop_files
from visionflow.tasks.score.score_drop import ScoreConfig, score_drop

from tests.conftest import write_image
from tests.scoring_helpers import CLASSES, build_hostile_drop, register_tiny_model

ONE_PROCESS = DropScanConfig(workers=1)
SMALL_BATCHES = ScoreConfig(workers=1, batch_size=4)


@pytest.fixture
def scoring(tmp_path):
    """A registered tiny model and a function that scores a drop with it."""
    models = tmp_path / "models"
    register_tiny_model(models)
    record = find_model(models)
    model = load_checked_model(record)

    def score(drop, config=SMALL_BATCHES):
        files = list_drop_files(drop, ONE_PROCESS)
        outputs = DropOutputs(tmp_path / "predictions" / drop.name)
        with PredictionLedger(tmp_path / "predictions" / "ledger.sqlite") as ledger:
            return score_drop(files, drop, record, model, ledger, outputs, config)

    return score


def rows(folder):
    return ds.dataset(folder, format="parquet").to_table().to_pandas() if any(folder.glob("*.parquet")) else None


def test_a_hostile_drop_is_fully_accounted_for_and_a_second_run_scores_nothing(scoring, tmp_path):
    drop = tmp_path / "drop-1"
    expected = build_hostile_drop(drop, tmp_path / "outside")
    first = scoring(drop)

    predictions, rejections = (
        rows(tmp_path / "predictions/drop-1/predictions"),
        rows(tmp_path / "predictions/drop-1/rejections"),
    )
    outcome = {path: "predicted" for path in predictions["path"]} | {path: "rejected" for path in rejections["path"]}
    assert len(predictions) + len(rejections) == len(expected) == first.files
    assert outcome == expected
    assert first.scored == len(predictions) and first.rejected == len(rejections) and first.already_scored == 0
    assert first.contents_predicted == first.scored - 3, "four copies of one content are predicted once"
    assert set(predictions["label"]) <= set(CLASSES)
    probabilities = predictions[[f"probability_{name}" for name in CLASSES]].sum(axis=1)
    assert probabilities.between(0.999, 1.001).all()
    copies = predictions[predictions["path"].str.startswith("copies/")]
    assert copies["sha256"].nunique() == 1 and copies["confidence"].nunique() == 1

    reasons = dict(zip(rejections["path"], rejections["reason"], strict=True))
    assert reasons["broken/text.png"].startswith("not an image")
    assert reasons["broken/empty.jpg"] == "empty file (0 bytes)"
    assert "too many pixels" in reasons["broken/bomb.png"]
    assert "truncated" in reasons["broken/truncated.jpg"]
    assert reasons["broken/icon.ico"] == "unsupported image format ICO"
    assert reasons["link-out.png"] == "symlink leading outside the drop"
    assert reasons[".cache/"] == "hidden folder, not entered" and reasons[".hidden.jpg"] == "hidden file"

    second = scoring(drop)
    assert (second.scored, second.already_scored, second.rejected) == (0, first.scored, first.rejected)
    assert second.prediction_rows_written == second.rejection_rows_written == 0
    assert len(rows(tmp_path / "predictions/drop-1/predictions")) == len(predictions)


def test_known_images_in_another_drop_get_rows_without_being_predicted_again(scoring, tmp_path):
    build_hostile_drop(tmp_path / "first", tmp_path / "outside")
    first = scoring(tmp_path / "first")
    second_drop = tmp_path / "second"
    (second_drop / "renamed").mkdir(parents=True)
    (second_drop / "renamed" / "x.png").write_bytes((tmp_path / "first" / "formats" / "image.png").read_bytes())
    (second_drop / "new.png").write_bytes((tmp_path / "first" / "modes" / "gray.png").read_bytes() + b"")
    result = scoring(second_drop)
    assert result.already_scored == 2 and result.scored == 0 and result.contents_predicted == 0
    new_rows = rows(tmp_path / "predictions/second/predictions")
    old_rows = rows(tmp_path / "predictions/first/predictions").set_index("path")
    assert sorted(new_rows["path"]) == ["new.png", "renamed/x.png"]
    reused = new_rows.set_index("path").loc["renamed/x.png"]
    assert reused["confidence"] == old_rows.loc["formats/image.png", "confidence"]
    assert reused["scored_at"] == old_rows.loc["formats/image.png", "scored_at"]
    assert first.scored > 0


def test_a_run_killed_mid_commit_is_finished_by_the_next_without_duplicates(scoring, tmp_path, monkeypatch):
    drop = tmp_path / "drop"
    expected = build_hostile_drop(drop, tmp_path / "outside")
    calls = {"count": 0}
    real_commit = PredictionLedger.commit_part

    def crash_on_second_predictions_commit(self, drop_name, kind, *arguments, **keywords):
        calls["count"] += kind == "predictions"
        if calls["count"] == 2:
            raise KeyboardInterrupt("killed after writing a part, before committing it")
        return real_commit(self, drop_name, kind, *arguments, **keywords)

    monkeypatch.setattr(PredictionLedger, "commit_part", crash_on_second_predictions_commit)
    with pytest.raises(KeyboardInterrupt):
        scoring(drop, ScoreConfig(workers=1, batch_size=2, part_rows=3))
    parts = list((tmp_path / "predictions/drop/predictions").glob("*.parquet"))
    assert len(parts) == 2, "one committed part and one orphan are on disk"

    monkeypatch.setattr(PredictionLedger, "commit_part", real_commit)
    result = scoring(drop, ScoreConfig(workers=1, batch_size=2, part_rows=3))
    assert result.orphan_parts_removed == 1
    predictions = rows(tmp_path / "predictions/drop/predictions")
    rejections = rows(tmp_path / "predictions/drop/rejections")
    assert not predictions["path"].duplicated().any() and not rejections["path"].duplicated().any()
    assert sorted([*predictions["path"], *rejections["path"]]) == sorted(expected)
    assert result.already_scored > 0, "what the killed run committed is not scored again"
    assert result.scored + result.already_scored == len(predictions)


def test_two_runs_on_one_drop_at_once_are_refused_as_busy(scoring, tmp_path):
    drop = tmp_path / "busy"
    build_hostile_drop(drop, tmp_path / "outside")
    with DropOutputs(tmp_path / "predictions" / "busy").exclusive(), pytest.raises(BusyError, match="another run"):
        scoring(drop)


def test_decoding_in_worker_processes_gives_the_same_rows(scoring, tmp_path):
    drop = tmp_path / "parallel"
    expected = build_hostile_drop(drop, tmp_path / "outside")
    result = scoring(drop, ScoreConfig(workers=2, files_per_chunk=3, batch_size=5, chunks_in_flight_per_worker=1))
    predictions = rows(tmp_path / "predictions/parallel/predictions")
    assert result.scored == len(predictions) == sum(outcome == "predicted" for outcome in expected.values())


def test_a_lost_ledger_destroys_nothing_and_is_rebuilt_from_the_parts(scoring, tmp_path):
    drop = tmp_path / "kept"
    expected = build_hostile_drop(drop, tmp_path / "outside")
    first = scoring(drop, ScoreConfig(workers=1, batch_size=2, part_rows=3))
    before = rows(tmp_path / "predictions/kept/predictions").sort_values("path").reset_index(drop=True)
    (tmp_path / "predictions" / "ledger.sqlite").unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / "predictions" / f"ledger.sqlite{suffix}").unlink(missing_ok=True)
    removed = sorted(path for path, outcome in expected.items() if outcome == "predicted")[::2]
    for path in removed:
        (drop / path).unlink()

    again = scoring(drop, ScoreConfig(workers=1, batch_size=2, part_rows=3))
    assert again.orphan_parts_removed == 0 and again.parts_adopted > 0 and again.parts_set_aside == []
    after = rows(tmp_path / "predictions/kept/predictions").sort_values("path").reset_index(drop=True)
    assert after.equals(before), "every row written before the ledger was lost is still there, unchanged"
    assert again.scored == 0 and again.prediction_rows_written == 0, "what the parts hold is not scored again"
    assert again.already_scored == first.scored - len(removed)
    with PredictionLedger(tmp_path / "predictions" / "ledger.sqlite") as ledger:
        assert ledger.accepted_count("kept", "v0001") == len(before)


def test_an_unreadable_part_the_ledger_does_not_know_is_set_aside_not_deleted(scoring, tmp_path):
    drop = tmp_path / "damaged"
    build_hostile_drop(drop, tmp_path / "outside")
    scoring(drop)
    stray = tmp_path / "predictions/damaged/predictions/part-stray.parquet"
    stray.write_bytes(b"half of a parquet file")
    again = scoring(drop)
    aside = tmp_path / "predictions/damaged/set-aside/predictions/part-stray.parquet"
    assert again.parts_set_aside == [str(aside)] and aside.read_bytes() == b"half of a parquet file"
    assert not stray.exists() and again.scored == 0


@pytest.mark.timeout(120)
def test_files_swapped_after_listing_for_a_fifo_or_a_device_link_are_rejected_not_waited_on(scoring, tmp_path):
    models = tmp_path / "models"
    record = find_model(models)
    drop = tmp_path / "swapped"
    for index in range(4):
        write_image(drop / f"{index}.png", (200, 30 * index, 30), size=12, seed=index)
    files = list_drop_files(drop, ONE_PROCESS)
    (drop / "1.png").unlink()
    os.mkfifo(drop / "1.png")
    (drop / "2.png").unlink()
    os.symlink("/dev/zero", drop / "2.png")
    outputs = DropOutputs(tmp_path / "predictions" / "swapped")
    with PredictionLedger(tmp_path / "predictions" / "ledger.sqlite") as ledger:
        result = score_drop(files, drop, record, load_checked_model(record), ledger, outputs, ScoreConfig(workers=2))
    assert (result.scored, result.rejected) == (2, 2)
    reasons = dict(zip(*[rows(outputs.rejections)[column] for column in ("path", "reason")], strict=True))
    assert reasons["1.png"].startswith("not a regular file any more")
    assert reasons["2.png"].startswith("now a link leading outside the folder")


def test_a_part_committed_but_not_yet_visible_is_hidden_from_readers_then_published(scoring, tmp_path, monkeypatch):
    drop = tmp_path / "late"
    expected = build_hostile_drop(drop, tmp_path / "outside")
    real_replace = os.replace

    def killed_before_the_visible_name(source, target):
        if Path(source).name.startswith(".part-") and "predictions" in str(source):
            raise KeyboardInterrupt("killed between the commit and the visible name")
        return real_replace(source, target)

    monkeypatch.setattr("visionflow.ledger.drops.os.replace", killed_before_the_visible_name)
    with pytest.raises(KeyboardInterrupt):
        scoring(drop, ScoreConfig(workers=1, batch_size=2, part_rows=1000))
    folder = tmp_path / "predictions/late/predictions"
    assert [path.name[:6] for path in folder.iterdir()] == [".part-"], "only the hidden, committed part is there"
    assert rows(folder) is None or rows(folder).empty, "readers of the folder do not see it yet"

    monkeypatch.setattr("visionflow.ledger.drops.os.replace", real_replace)
    again = scoring(drop, ScoreConfig(workers=1, batch_size=2, part_rows=1000))
    predictions = rows(folder)
    assert again.scored == 0 and again.orphan_parts_removed == 0, "the committed rows are not scored again"
    assert sorted(predictions["path"]) == sorted(path for path, outcome in expected.items() if outcome == "predicted")


def test_two_runs_scoring_drops_that_share_images_predict_each_image_once(tmp_path):
    models = tmp_path / "models"
    register_tiny_model(models)
    record = find_model(models)
    shared = [((7 * index) % 255, 90, (13 * index) % 255) for index in range(120)]
    drops = {}
    for name, extra_seed in (("monday", 1000), ("tuesday", 2000)):
        drop = tmp_path / name
        for index, color in enumerate(shared):
            write_image(drop / "shared" / f"{index}.png", color, seed=index)
        for index in range(40):
            write_image(drop / "own" / f"{index}.png", (30, 30, 30), seed=extra_seed + index)
        drops[name] = drop
    ledger_path = tmp_path / "predictions" / "ledger.sqlite"
    model = load_checked_model(record)
    config = ScoreConfig(workers=1, batch_size=8, part_rows=50)
    files = {name: list_drop_files(drop, ONE_PROCESS) for name, drop in drops.items()}

    def run(name: str):
        with PredictionLedger(ledger_path) as ledger:
            outputs = DropOutputs(tmp_path / "predictions" / name)
            return score_drop(files[name], drops[name], record, model, ledger, outputs, config)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, drops))
    assert sum(result.contents_predicted for result in results) == 120 + 2 * 40, "each content predicted once"
    assert all(result.scored + result.already_scored == 160 for result in results)
    with PredictionLedger(ledger_path) as ledger:
        for name in drops:
            table = rows(tmp_path / "predictions" / name / "predictions")
            known = ledger.known_probabilities(table["sha256"], record.version)
            ledger_times = [known[sha256][1] for sha256 in table["sha256"]]
            written_times = [stamp.isoformat(timespec="microseconds") for stamp in table["scored_at"]]
            assert ledger_times == written_times, "every row agrees with the ledger"
