"""The score flow on a real local Dask cluster: the cluster starts during listing, shards run as task runs."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest

from visionflow.flows.score import ScoringConfig, score_flow

from tests.flows.test_ingest_flow_dask import task_run_names
from tests.scoring_helpers import build_hostile_drop, register_tiny_model

pytestmark = [pytest.mark.dask, pytest.mark.usefixtures("prefect_server")]

ON_CLUSTER = ScoringConfig.model_validate(
    {"scan": {"workers": 1}, "score": {"batch_size": 8}, "dask": {"workers": 2, "files_per_shard": 6}}
)


def test_a_drop_scored_on_the_cluster_is_validated_and_reported(home, tmp_path):
    register_tiny_model(home / "models")
    drop = tmp_path / "drop"
    expected = build_hostile_drop(drop, tmp_path / "outside")
    state = score_flow(drop=str(drop), config=ON_CLUSTER, home=str(home), return_state=True)
    summary = state.result()

    accepted = sum(outcome == "predicted" for outcome in expected.values())
    assert (summary.scored, summary.rejected) == (accepted, len(expected) - accepted)
    assert ds.dataset(summary.predictions_path, format="parquet").to_table().num_rows == accepted
    names = task_run_names(state)
    assert sum(name.startswith("start-dask-cluster") for name in names) == 1
    shards = sum(name.startswith("score-shard") for name in names)
    assert -(-summary.contents_predicted // 6) <= shards <= -(-len(expected) // 6), names


def test_dask_workers_score_on_the_export_and_never_import_tensorflow(home, tmp_path):
    from visionflow.processes.dask_shards import cluster_runner

    from tests.engine_helpers import register_exported_model

    register_exported_model(home / "models", tmp_path / "dataset")
    drop = tmp_path / "drop"
    expected = build_hostile_drop(drop, tmp_path / "outside")
    # A cluster of its own (one worker): the other test's workers predicted on Keras.
    config = ScoringConfig.model_validate(
        {
            "scan": {"workers": 1},
            "score": {"batch_size": 8, "engine": "onnx"},
            "dask": {"workers": 1, "files_per_shard": 6},
        }
    )
    summary = score_flow(drop=str(drop), config=config, home=str(home))
    assert summary.engine == "onnx"
    assert summary.scored == sum(outcome == "predicted" for outcome in expected.values())
    client = cluster_runner(config.dask).client
    imported = client.run(lambda: sorted(name for name in ("tensorflow", "keras") if name in __import__("sys").modules))
    assert imported and all(modules == [] for modules in imported.values()), imported
