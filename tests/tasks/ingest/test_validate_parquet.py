"""Stage 6: the processed_parquet contract task checks the split files on disk against the manifest."""

from __future__ import annotations

import json

import pytest

from visionflow.errors import ContractBreachError
from visionflow.images.splits import DatasetMetadata
from visionflow.tasks.ingest.validate_parquet import (
    accepted_rows_per_split,
    processed_frame,
    validate_processed_task,
    validate_split_files,
)
from visionflow.tasks.ingest.write_parquet import ParquetConfig, write_split_parquet

from tests.tasks.ingest.conftest import CONFIG


def test_processed_contract_checks_the_files_on_disk(contract_dataset, tmp_path):
    assigned, classes, decode_dir = contract_dataset
    spec = CONFIG.image_spec()
    paths = write_split_parquet(
        assigned, decode_dir, tmp_path / "out", spec, DatasetMetadata(classes=classes), ParquetConfig()
    )
    frame = processed_frame(paths["train"])
    assert list(frame.columns) == ["label", "path", "sha256", "pixel_bytes"]
    reports = validate_processed_task.fn(paths, assigned, len(classes), spec.pixel_bytes, tmp_path / "p.json")
    assert [report.target for report in reports] == ["test split", "train split", "val split"]
    assert all(report.success for report in reports)
    assert [entry["success"] for entry in json.loads((tmp_path / "p.json").read_text())] == [True] * 3


def test_a_file_with_other_rows_than_the_manifest_stops_the_run(contract_dataset, tmp_path):
    assigned, classes, decode_dir = contract_dataset
    spec = CONFIG.image_spec()
    paths = write_split_parquet(
        assigned, decode_dir, tmp_path / "out", spec, DatasetMetadata(classes=classes), ParquetConfig()
    )
    expected = accepted_rows_per_split(assigned)
    too_many = {**expected, "train": expected["train"] + 1}
    reports = validate_split_files(paths, too_many, len(classes), spec.pixel_bytes)
    assert [report.success for report in reports] == [True, False, True]
    dropped = assigned.drop(index=assigned.index[assigned["split"] == "train"][:1])
    with pytest.raises(ContractBreachError, match="expect_table_row_count_to_equal"):
        validate_processed_task.fn(paths, dropped, len(classes), spec.pixel_bytes, tmp_path / "p.json")
    with pytest.raises(ContractBreachError, match="split test has 15 accepted images but no Parquet file"):
        validate_processed_task.fn(
            {"train": paths["train"]}, assigned, len(classes), spec.pixel_bytes, tmp_path / "p.json"
        )
