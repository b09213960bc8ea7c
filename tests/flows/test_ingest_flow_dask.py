"""Ingest on a real local Dask cluster builds the same dataset as the single-machine path."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from visionflow.flows.ingest import IngestConfig, ingest_flow

pytestmark = [pytest.mark.dask, pytest.mark.usefixtures("prefect_server")]

SETTINGS = {
    "scan": {"workers": 1},
    "decode": {"image_size": 16, "workers": 1, "files_per_chunk": 16},  # Several shards for 76 files.
    "split": {"val_fraction": 0.25},
}


def task_run_names(flow_state) -> list[str]:
    """The name of every task run of one flow run, read back from the server."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_state.state_details.flow_run_id]))
        )
    return [run.name for run in runs]


def test_ingest_on_a_two_worker_cluster_writes_the_same_parquet_and_manifest(make_image_folder, tmp_path):
    root = make_image_folder(layout="split", per_class=20, test_per_class=5)
    (root / "train" / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")
    here = ingest_flow(data=str(root), config=IngestConfig.model_validate(SETTINGS), home=str(tmp_path / "here"))
    on_cluster = IngestConfig.model_validate({**SETTINGS, "dask": {"workers": 2}})
    state = ingest_flow(data=str(root), config=on_cluster, home=str(tmp_path / "cluster"), return_state=True)
    cluster = state.result()

    shards = [name for name in task_run_names(state) if name.startswith("decode-shard")]
    assert len(shards) == 5, "76 files in chunks of 16 are five shard tasks on the cluster"

    assert cluster.dataset_fingerprint == here.dataset_fingerprint
    assert (cluster.splits, cluster.quarantined) == (here.splits, here.quarantined)
    assert here.splits == {"train": 45, "val": 15, "test": 15} and here.quarantined == 1
    assert cluster.quarantine_examples == here.quarantine_examples
    pd.testing.assert_frame_equal(pd.read_parquet(cluster.manifest), pd.read_parquet(here.manifest))
    for split, path in here.parquet.items():
        assert pq.read_table(cluster.parquet[split]).equals(pq.read_table(path)), split
