"""Scoring after damage on one machine, as a user meets it: `visionflow score` on a full disk under
the ledger ends with exit 7 and its one line, and the same command finishes once space is freed;
the score flow runs a drop whose committed part was cut in half, then whose output folder was
deleted, to the end, the predictions contract passing on the parts written again from the ledger.

The full disk is a small tmpfs mounted at the home's ledger folder (tests/visionflow/ledger/
small_disk.py), or the test is skipped saying that mounting was refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from visionflow.flows.score import ScoringConfig, score_flow
from visionflow.ledger.ledger import PredictionLedger

from tests.scoring_helpers import build_hostile_drop, register_tiny_model
from tests.visionflow.ledger.small_disk import fill, log, small_disk

ONE_PROCESS = ScoringConfig.model_validate({"scan": {"workers": 1}, "score": {"workers": 1, "batch_size": 8}})


def test_a_full_disk_under_the_ledger_ends_the_command_with_exit_7_and_the_same_command_finishes(
    run_cli, home, tmp_path
):
    register_tiny_model(home / "models")
    drop = tmp_path / "drop"
    expected = build_hostile_drop(drop, tmp_path / "outside")
    command = ("score", str(drop), "--workers", "1", "--json")
    with small_disk(home / "ledger", 2048) as disk:
        PredictionLedger(disk / "scoring.sqlite").close()
        # A few pages free: SQLite cannot grow its shared-memory index ("disk I/O error"); a few more:
        # it opens, and a COMMIT fails (which left the connection unusable, hiding the full disk).
        for free_kib in (8, 48):
            filler = fill(disk, free_kib * 1024)
            failed = run_cli(*command)
            log.info("%d KiB free beside the ledger: exit %d", free_kib, failed.returncode)
            last = failed.stderr.strip().splitlines()[-1]
            assert failed.returncode == 7, failed.stderr[-3000:]
            assert last.startswith("visionflow: the disk holding the scoring ledger ") and "is full" in last, last
            assert "unexpected error" not in failed.stderr
            filler.unlink()
        finished = run_cli(*command)
    assert finished.returncode == 0, finished.stderr[-3000:]
    summary = json.loads(finished.stdout.strip().splitlines()[-1])
    assert summary["files"] == len(expected) and summary["scored"] + summary["rejected"] == len(expected)


@pytest.mark.usefixtures("prefect_server")
def test_a_part_cut_in_half_then_a_deleted_output_folder_are_written_again_and_the_contract_passes(home, tmp_path):
    register_tiny_model(home / "models")
    drop = tmp_path / "drop"
    expected = build_hostile_drop(drop, tmp_path / "outside")
    first = score_flow(drop=str(drop), config=ONE_PROCESS, home=str(home))
    outputs = home / "predictions" / "drop"
    (part,) = (outputs / "predictions").glob("part-*.parquet")
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])

    after_cut = score_flow(drop=str(drop), config=ONE_PROCESS, home=str(home))
    assert after_cut.already_scored == first.scored and after_cut.scored == 0
    assert len(list((outputs / "set-aside" / "predictions").glob(f"{part.name}.damaged-*"))) == 1
    assert json.loads(Path(after_cut.report_path).read_text())["contract"]["success"]
    shutil.rmtree(outputs)

    after_loss = score_flow(drop=str(drop), config=ONE_PROCESS, home=str(home))
    assert after_loss.already_scored == first.scored and after_loss.rejected == first.rejected
    predictions = ds.dataset(outputs / "predictions", format="parquet").to_table().column("path").to_pylist()
    rejections = ds.dataset(outputs / "rejections", format="parquet").to_table().column("path").to_pylist()
    assert sorted(predictions + rejections) == sorted(expected), "every file has exactly one row"
    assert json.loads(Path(after_loss.report_path).read_text())["contract"]["success"]
