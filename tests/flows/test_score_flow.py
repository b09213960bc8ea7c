"""The score flow end to end on tiny data, under a real Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from visionflow.errors import BadInputError
from visionflow.flows.score import ScoringConfig, score_flow
from visionflow.tasks.score.score_drop import EARLIER_REJECTION

from tests.scoring_helpers import build_hostile_drop, register_tiny_model

ONE_PROCESS = ScoringConfig.model_validate({"scan": {"workers": 1}, "score": {"workers": 1, "batch_size": 8}})


@pytest.mark.usefixtures("prefect_server")
def test_an_empty_drop_path_is_refused_not_taken_for_the_current_folder(home, tmp_path, monkeypatch):
    register_tiny_model(home / "models")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInputError, match="the drop folder is empty"):
        score_flow(drop="", config=ONE_PROCESS, home=str(home))
    assert not (home / "predictions").exists(), "nothing was scored"


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
    reasons = dict(zip(rejections.column("path").to_pylist(), rejections.column("reason").to_pylist(), strict=True))
    assert len(again.rejection_examples) == len(summary.rejection_examples) > 0, "rejected files are named again"
    for example in again.rejection_examples:
        assert example.reason in (reasons[example.path], EARLIER_REJECTION), example


def _task_names(flow_state) -> set[str]:
    """Names (without their run suffix) of the task runs of one flow run, read back from the server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_state.state_details.flow_run_id]))
        )
    return {run.name.rsplit("-", 1)[0] for run in runs}


@pytest.mark.usefixtures("prefect_server")
def test_the_model_loads_beside_the_listing_once_per_process(home, tmp_path):
    from visionflow.models.prediction import model_is_warm
    from visionflow.models.registry import find_model

    register_tiny_model(home / "models")
    record = find_model(home / "models")
    drop = tmp_path / "drop"
    build_hostile_drop(drop, tmp_path / "outside")
    assert not model_is_warm(record)
    first = score_flow(drop=str(drop), config=ONE_PROCESS, home=str(home), return_state=True)
    assert first.is_completed() and model_is_warm(record)
    assert {"select-model", "load-model", "list-drop-files", "score-images"} <= _task_names(first)
    again = score_flow(drop=str(drop), config=ONE_PROCESS, home=str(home), return_state=True)
    assert again.is_completed() and "load-model" not in _task_names(again), "the warm model is reused"
