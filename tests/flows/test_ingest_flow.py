"""The ingest flow end to end on tiny data, against a real Prefect server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from visionflow.errors import ContractBreachError
from visionflow.flows.ingest import IngestConfig, ingest_flow

from tests.conftest import write_image

SMALL = IngestConfig.model_validate(
    {"scan": {"workers": 1}, "decode": {"image_size": 16, "workers": 1}, "split": {"val_fraction": 0.25}}
)


def task_states(flow_state) -> dict[str, str]:
    """Task name -> final state name for one flow run, read back from the server."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_state.state_details.flow_run_id]))
        )
    return {run.name.rsplit("-", 1)[0]: run.state.name for run in runs}


@pytest.mark.usefixtures("prefect_server")
def test_a_split_folder_becomes_validated_parquet(make_image_folder, home):
    root = make_image_folder(layout="split", per_class=20, test_per_class=5)
    summary = ingest_flow(data=str(root), config=SMALL, home=str(home))
    assert summary.classes == ["blue", "green", "red"]
    assert summary.image_shape == [16, 16, 3]
    assert summary.splits == {"train": 45, "val": 15, "test": 15}
    assert summary.quarantined == 0
    assert {suite: outcome["success"] for suite, outcome in summary.contracts.items()} == {
        "raw_manifest": True,
        "processed_parquet": True,
    }
    assert {split: ds.dataset(path).count_rows() for split, path in summary.parquet.items()} == summary.splits
    record = json.loads((Path(summary.dataset_dir) / "dataset.json").read_text())
    assert record["dataset_fingerprint"] == summary.dataset_fingerprint
    assert Path(summary.dataset_dir).is_relative_to(home)
    # Every validation is in the GX Data Docs site under the home, and the index lists all four.
    pages = [url for outcome in summary.contracts.values() for url in outcome["data_docs"]]
    assert len(pages) == 4 and all(Path(url.removeprefix("file://")).is_file() for url in pages)
    index = (home / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").read_text()
    assert all(Path(url).parent.parent.name in index for url in pages), "the index links every run"


@pytest.mark.usefixtures("prefect_server")
def test_an_unchanged_dataset_is_not_decoded_again(make_image_folder, home):
    root = make_image_folder(layout="flat", per_class=30)
    first = ingest_flow(data=str(root), config=SMALL, home=str(home), return_state=True)
    decoded = next((home / "cache" / "decoded").iterdir())
    written = (decoded / "decoded_manifest.parquet").stat().st_mtime_ns
    second = ingest_flow(data=str(root), config=SMALL, home=str(home), return_state=True)
    third = ingest_flow(data=str(root), config=SMALL, home=str(home), return_state=True)
    assert task_states(first)["decode-images"] == "Completed"
    assert task_states(third)["decode-images"] == "Cached"
    assert (decoded / "decoded_manifest.parquet").stat().st_mtime_ns == written
    assert first.result().dataset_fingerprint == second.result().dataset_fingerprint

    shutil.rmtree(decoded)
    fourth = ingest_flow(data=str(root), config=SMALL, home=str(home), return_state=True)
    assert task_states(fourth)["decode-images"] == "Completed", "deleted pixels are rebuilt, not served from cache"


@pytest.mark.usefixtures("prefect_server")
def test_a_grayscale_dataset_of_another_size(tmp_path, home):
    root = tmp_path / "gray"
    for class_index, class_name in enumerate(["circle", "square"]):
        for index in range(25):
            write_image(
                root / class_name / f"{index}.png", (60 + 100 * class_index,) * 3, 20, "L", 100 * class_index + index
            )
    config = SMALL.model_copy(update={"decode": SMALL.decode.model_copy(update={"image_size": 28, "channels": 1})})
    summary = ingest_flow(data=str(root), config=config, home=str(home))
    assert summary.image_shape == [28, 28, 1]
    assert summary.splits == {"train": 28, "val": 12, "test": 10}
    table = ds.dataset(summary.parquet["train"]).to_table()
    assert table.schema.field("pixels").type.byte_width == 28 * 28


@pytest.mark.usefixtures("prefect_server")
def test_corrupt_files_are_quarantined_and_leakage_stops_the_run(make_image_folder, home):
    root = make_image_folder(layout="split", per_class=20, test_per_class=5)
    (root / "train" / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "train" / "green" / "notes.txt").write_text("shopping list")
    shutil.copy(root / "test" / "blue" / "000.png", root / "train" / "blue" / "copied-from-test.png")

    state = ingest_flow(data=str(root), config=SMALL, home=str(home), return_state=True)
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ContractBreachError)
    message = str(error)
    assert "in_other_split" in message and "leakage" in message
    assert "train/blue/copied-from-test.png" in message or "test/blue/000.png" in message

    manifest = pd.read_parquet(next((home / "datasets").iterdir()) / "manifest.parquet").set_index("path")
    assert manifest.at["train/red/broken.jpg", "status"] == "quarantined"
    assert "corrupt" in manifest.at["train/red/broken.jpg", "reason"]
    assert manifest.at["train/green/notes.txt", "reason"].startswith("not an image")
