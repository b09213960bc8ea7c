"""The score flow end to end on tiny data, under a real Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from visionflow.flows.score import ScoringConfig, score_flow

from tests.scoring_helpers import build_hostile_drop, register_tiny_model

ONE_PROCESS = ScoringConfig.model_validate({"scan": {"workers": 1}, "score": {"workers": 1, "batch_size": 8}})


@pytest.mark.usefixtures("prefect_server")
def test_a_hostile_drop_is_scored_validated_and_reported_then_nothing_is_scored_twice(home, tmp_path):
    version = register_tiny_model(home / "models")
    drop = tmp_path / "drop"
    expected = build_hostile_drop(drop, tmp_path / "outside")
    summary = score_flow(drop=str(drop), config=ONE_PROCESS, home=str(home))

    accepted = sum(outcome == "predicted" for outcome in expected.values())
    assert summary.model_version == version and summary.files == len(expected)
    assert (summary.scored, summary.already_scored, summary.rejected) == (
        accepted, 0, len(expected) - accepted,
    )  # fmt: skip
    predictions = ds.dataset(summary.predictions_path, format="parquet").to_table()
    rejections = ds.dataset(summary.rejections_path, format="parquet").to_table()
    assert predictions.num_rows == accepted and rejections.num_rows == len(expected) - accepted
    report = json.loads(Path(summary.report_path).read_text())
    assert report["contract"]["success"] and report["counts"]["files"] == len(expected)
    assert report["drift"]["drifted"] is None, "too few images to judge"

    again = score_flow(drop=str(drop), config=ONE_PROCESS, home=str(home))
    assert (again.scored, again.already_scored, again.rejected) == (0, accepted, len(expected) - accepted)
    assert ds.dataset(summary.predictions_path, format="parquet").to_table().num_rows == accepted
