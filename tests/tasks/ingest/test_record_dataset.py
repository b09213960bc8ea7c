"""Stage 7: the dataset record (dataset.json) and the summary the CLI prints."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from visionflow.data_contracts.contract_suites import ContractReport, ExpectationOutcome
from visionflow.tasks.ingest.record_dataset import class_count_table, dataset_summary, record_dataset_task


def manifest() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": ["train/a/1.png", "train/b/1.png", "test/a/1.png", "train/a/bad.png"],
            "class_name": ["a", "b", "a", "a"],
            "split": ["train", "train", "test", None],
            "status": ["ok", "ok", "ok", "quarantined"],
            "reason": [None, None, None, "corrupt or truncated image: broken data stream"],
        }
    )


def report(suite: str, success: bool, severity: str = "hard") -> ContractReport:
    outcome = ExpectationOutcome("expect_column_values_to_be_in_set", "x", severity, "a check", success)
    return ContractReport(suite=suite, contract_version="1", target="manifest", outcomes=[outcome])


def test_summary_counts_splits_quarantine_and_contract_outcomes(tmp_path):
    reports = [report("raw_manifest", True), report("processed_parquet", False, severity="soft")]
    parquet = {"train": "train.parquet", "test": "test.parquet"}
    summary = dataset_summary(manifest(), ["a", "b"], "f" * 64, [8, 8, 3], parquet, reports, tmp_path)
    assert summary.splits == {"train": 2, "test": 1}
    assert summary.files_found == 4 and summary.quarantined == 1
    assert summary.quarantine_examples == [
        {"path": "train/a/bad.png", "reason": "corrupt or truncated image: broken data stream"}
    ]
    assert summary.contracts["raw_manifest"] == {"success": True, "failed": [], "warnings": [], "data_docs": []}
    assert summary.contracts["processed_parquet"]["warnings"] == ["manifest: expect_column_values_to_be_in_set"]
    json.dumps(summary.model_dump(mode="json"))


def test_class_count_table_has_a_row_per_class_and_a_column_per_split():
    rows = class_count_table(manifest(), ["a", "b"])
    assert rows == [{"class": "a", "test": 1, "train": 1}, {"class": "b", "test": 0, "train": 1}]


def test_task_writes_dataset_json_last_and_atomically(tmp_path):
    summary = record_dataset_task.fn(manifest(), ["a", "b"], "f" * 64, [8, 8, 3], {"train": "t"}, [], tmp_path)
    written = json.loads((tmp_path / "dataset.json").read_text())
    assert written == summary.model_dump(mode="json") and written["dataset_fingerprint"] == "f" * 64
    assert [path.name for path in tmp_path.iterdir()] == ["dataset.json"]


def test_a_dataset_dir_that_cannot_be_written_raises(tmp_path):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    with pytest.raises(OSError):
        record_dataset_task.fn(manifest(), ["a", "b"], "f" * 64, [8, 8, 3], {}, [], blocked)
