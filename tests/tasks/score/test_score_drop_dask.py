"""Scoring on a real local Dask cluster gives the same outputs as the single-machine path."""

from __future__ import annotations

import numpy as np
import pytest

from visionflow.ledger.drops import DropOutputs
from visionflow.ledger.ledger import PredictionLedger
from visionflow.models.registry import find_model, load_checked_model
from visionflow.processes.dask_shards import DaskConfig
from visionflow.tasks.score.list_drop_files import DropScanConfig, list_drop_files
from visionflow.tasks.score.score_drop import ScoreConfig, score_drop

from tests.scoring_helpers import build_hostile_drop, register_tiny_model
from tests.tasks.score.test_score_drop import rows

pytestmark = pytest.mark.dask

CONFIG = ScoreConfig(workers=1, batch_size=4)
TWO_WORKERS = DaskConfig(workers=2, files_per_shard=5)  # Small shards, so the drop spans several.


def score(tmp_path, drop, record, name, dask):
    files = list_drop_files(drop, DropScanConfig(workers=1))
    outputs = DropOutputs(tmp_path / name / drop.name)
    model = None if dask.enabled else load_checked_model(record)
    with PredictionLedger(tmp_path / name / "ledger.sqlite") as ledger:
        return score_drop(files, drop, record, model, ledger, outputs, CONFIG, dask=dask), outputs


def test_a_drop_scored_on_a_two_worker_cluster_matches_the_default_path_row_for_row(tmp_path, prefect_server):
    register_tiny_model(tmp_path / "models")
    record = find_model(tmp_path / "models")
    drop = tmp_path / "drop"
    build_hostile_drop(drop, tmp_path / "outside")

    here, here_outputs = score(tmp_path, drop, record, "here", DaskConfig())
    cluster, cluster_outputs = score(tmp_path, drop, record, "cluster", TWO_WORKERS)

    for field in ("files", "scored", "already_scored", "rejected", "contents_predicted", "class_counts"):
        assert getattr(cluster, field) == getattr(here, field), field
    assert cluster.profile.channel_mean == here.profile.channel_mean
    expected, found = (rows(outputs.predictions).sort_values("path") for outputs in (here_outputs, cluster_outputs))
    assert list(found["path"]) == list(expected["path"]) and list(found["sha256"]) == list(expected["sha256"])
    assert list(found["label"]) == list(expected["label"])
    columns = [name for name in expected.columns if name.startswith("probability_")] + ["confidence"]
    assert np.allclose(found[columns].to_numpy(), expected[columns].to_numpy(), atol=1e-5)
    expected, found = (rows(outputs.rejections).sort_values("path") for outputs in (here_outputs, cluster_outputs))
    assert list(found["path"]) == list(expected["path"]) and list(found["reason"]) == list(expected["reason"])


def test_a_second_run_on_the_cluster_predicts_nothing_again(tmp_path, prefect_server):
    register_tiny_model(tmp_path / "models")
    record = find_model(tmp_path / "models")
    drop = tmp_path / "drop"
    build_hostile_drop(drop, tmp_path / "outside")
    first, _ = score(tmp_path, drop, record, "cluster", TWO_WORKERS)
    second, _ = score(tmp_path, drop, record, "cluster", TWO_WORKERS)
    assert first.contents_predicted > 0 and second.contents_predicted == 0
    assert second.already_scored == first.scored
