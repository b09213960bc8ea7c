"""Stages 4 and 6: the contract tasks write reports, warn on soft breaches and stop on hard ones."""

from __future__ import annotations

import json

import pytest

from tasks.assign_splits import SplitConfig, assign_splits
from tasks.decode_images import DecodeConfig, decode_dataset
from tasks.errors import ContractBreachError
from tasks.scan_files import ScanConfig, scan_dataset
from tasks.validate_data import (
    ContractConfig,
    accepted_rows_per_split,
    processed_frame,
    validate_processed_task,
    validate_raw_manifest_task,
)
from tasks.write_parquet import ParquetConfig, write_split_parquet

CONFIG = DecodeConfig(image_size=8, channels=3, workers=1)


@pytest.fixture
def dataset(make_image_folder, tmp_path):
    """A small split dataset taken through scan, decode and split assignment."""
    root = make_image_folder(layout="split", per_class=20, test_per_class=5)
    decoded = decode_dataset(scan_dataset(root, ScanConfig(workers=1)), root, CONFIG, tmp_path / "decoded")
    assigned, classes = assign_splits(decoded, SplitConfig(val_fraction=0.25))
    return assigned, classes, tmp_path / "decoded"


def test_a_good_manifest_passes_and_its_report_is_written(dataset, tmp_path):
    assigned, classes, _ = dataset
    report = validate_raw_manifest_task.fn(assigned, classes, ContractConfig(), tmp_path / "raw.json")
    assert report.success and not report.soft_failures
    written = json.loads((tmp_path / "raw.json").read_text())
    assert written[0]["suite"] == "raw_manifest" and written[0]["success"] is True


def test_leakage_stops_the_run_naming_the_expectation_and_the_files(dataset, tmp_path):
    assigned, classes, _ = dataset
    leaked = assigned.copy()
    test_row = leaked.index[leaked["split"] == "test"][0]
    leaked.loc[test_row, "in_other_split"] = True
    with pytest.raises(ContractBreachError) as error:
        validate_raw_manifest_task.fn(leaked, classes, ContractConfig(), tmp_path / "raw.json")
    message = str(error.value)
    assert "expect_column_values_to_be_in_set on column 'in_other_split'" in message
    assert leaked.at[test_row, "path"] in message and "1 of" in message
    assert str(tmp_path / "raw.json") in message
    assert json.loads((tmp_path / "raw.json").read_text())[0]["failed"] == ["expect_column_values_to_be_in_set"]


def test_a_soft_breach_only_warns(dataset, tmp_path, caplog):
    assigned, classes, _ = dataset
    unbalanced = assigned.copy()
    unbalanced.loc[unbalanced["class_name"] == "red", "class_balance"] = 0.05
    report = validate_raw_manifest_task.fn(unbalanced, classes, ContractConfig(), tmp_path / "r.json")
    assert report.success
    assert [outcome.column for outcome in report.soft_failures] == ["class_balance"]
    assert "class_balance" in caplog.text


def test_processed_contract_checks_the_files_on_disk(dataset, tmp_path):
    assigned, classes, decode_dir = dataset
    spec = CONFIG.image_spec()
    paths = write_split_parquet(assigned, decode_dir, tmp_path / "out", spec, {}, ParquetConfig())
    frame = processed_frame(paths["train"])
    assert list(frame.columns) == ["label", "path", "sha256", "pixel_bytes"]
    expected = accepted_rows_per_split(assigned)
    reports = validate_processed_task.fn(paths, expected, len(classes), spec.pixel_bytes, tmp_path / "p.json")
    assert [report.target for report in reports] == ["test split", "train split", "val split"]
    assert all(report.success for report in reports)

    too_many = {**expected, "train": expected["train"] + 1}
    with pytest.raises(ContractBreachError, match="expect_table_row_count_to_equal"):
        validate_processed_task.fn(paths, too_many, len(classes), spec.pixel_bytes, tmp_path / "p.json")
    with pytest.raises(ContractBreachError, match="split test has 15 accepted images but no Parquet file"):
        validate_processed_task.fn(
            {"train": paths["train"]}, expected, len(classes), spec.pixel_bytes, tmp_path / "p.json"
        )
