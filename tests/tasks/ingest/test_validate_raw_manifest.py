"""Stage 4: the raw_manifest contract task writes its report, warns on soft breaches and stops on hard ones."""

from __future__ import annotations

import json

import pytest

from visionflow.errors import ContractBreachError
from visionflow.tasks.ingest.validate_raw_manifest import ContractConfig, validate_raw_manifest_task


def test_a_good_manifest_passes_and_its_report_is_written(contract_dataset, tmp_path):
    assigned, classes, _ = contract_dataset
    report = validate_raw_manifest_task.fn(assigned, classes, ContractConfig(), tmp_path / "raw.json")
    assert report.success and not report.soft_failures
    written = json.loads((tmp_path / "raw.json").read_text())
    assert written[0]["suite"] == "raw_manifest" and written[0]["success"] is True


def test_leakage_stops_the_run_naming_the_expectation_and_the_files(contract_dataset, tmp_path):
    assigned, classes, _ = contract_dataset
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


def test_a_soft_breach_only_warns(contract_dataset, tmp_path, caplog):
    assigned, classes, _ = contract_dataset
    unbalanced = assigned.copy()
    unbalanced.loc[unbalanced["class_name"] == "red", "class_balance"] = 0.05
    report = validate_raw_manifest_task.fn(unbalanced, classes, ContractConfig(), tmp_path / "r.json")
    assert report.success
    assert [outcome.column for outcome in report.soft_failures] == ["class_balance"]
    assert "class_balance" in caplog.text
