"""A contract's verdict reaches people: the JSON report beside the data, a markdown table, warnings, a stop."""

from __future__ import annotations

import json
import logging

import pytest

from visionflow.data_contracts.contract_reports import (
    breach_message,
    publish_contract_reports,
    report_markdown,
    write_report,
)
from visionflow.data_contracts.contract_suites import ContractReport, ExpectationOutcome
from visionflow.errors import ContractBreachError

ROWS_CHECK = ExpectationOutcome(
    expectation="expect_table_row_count_to_be_between",
    column=None,
    severity="hard",
    check="the manifest lists at least one image",
    success=True,
    observed=18,
)
LABELS_BROKEN = ExpectationOutcome(
    expectation="expect_column_values_to_be_in_set",
    column="class_name",
    severity="hard",
    check="every label is one of the dataset's classes",
    success=False,
    unexpected_count=2,
    element_count=18,
    examples=["train/cat/001.png", "train/cat/002.png"],
    unexpected_values=["cta"],
)
SIZES_WARNING = ExpectationOutcome(
    expectation="expect_column_values_to_be_between",
    column="width",
    severity="soft",
    check="images are at least | 8 pixels wide",
    success=False,
    unexpected_count=1,
    element_count=18,
    examples=["val/dog/004.png"],
)


def report(*outcomes: ExpectationOutcome, docs_url: str | None = None) -> ContractReport:
    return ContractReport("raw_manifest", "1.2", "manifest", list(outcomes), docs_url=docs_url)


def test_a_passing_report_is_written_beside_the_data_and_its_soft_breaches_only_warn(tmp_path, caplog):
    reports = [report(ROWS_CHECK, SIZES_WARNING)]
    path = tmp_path / "reports" / "manifest.json"
    with caplog.at_level(logging.INFO):
        publish_contract_reports(reports, path, "raw-manifest", "Raw manifest contract")
    written = json.loads(path.read_text())
    assert written == [reports[0].to_dict()]
    assert written[0]["success"] and written[0]["warnings"] == ["expect_column_values_to_be_between"]
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == [f"data contract warning [raw_manifest / manifest] {SIZES_WARNING.describe()}"]
    assert any("all hard expectations passed" in record.getMessage() for record in caplog.records)
    assert not list(path.parent.glob(".*")), "no temporary file is left beside the report"


def test_a_hard_breach_stops_the_run_naming_what_broke_and_where_the_report_is(tmp_path):
    path = tmp_path / "manifest.json"
    with pytest.raises(ContractBreachError) as stopped:
        publish_contract_reports([report(ROWS_CHECK, LABELS_BROKEN)], path, "raw-manifest", "Raw manifest contract")
    message = str(stopped.value)
    assert stopped.value.exit_code == 3
    for detail in ("[raw_manifest / manifest]", "class_name", "2 of 18 rows", "['cta']", "train/cat/001.png"):
        assert detail in message
    assert message.endswith(f"full report: {path}")
    # The report is written before the run stops, so the breach can be read there in full.
    assert json.loads(path.read_text())[0]["failed"] == ["expect_column_values_to_be_in_set"]


def test_the_breach_message_lists_only_hard_failures_one_per_line():
    message = breach_message([report(LABELS_BROKEN, SIZES_WARNING), report(ROWS_CHECK)])
    lines = message.splitlines()
    assert lines[0] == "data contract breached, the run stopped before using the data:"
    assert lines[1:] == [f"  - [raw_manifest / manifest] {LABELS_BROKEN.describe()}"]


def test_the_markdown_table_has_a_row_per_expectation_and_links_the_data_docs():
    reports = [report(ROWS_CHECK, LABELS_BROKEN, SIZES_WARNING, docs_url="file:///docs/manifest.html")]
    lines = report_markdown(reports, "Raw manifest contract").splitlines()
    assert lines[0] == "# Raw manifest contract"
    rows = [line for line in lines if line.startswith("| raw_manifest ")]
    assert [row.split(" | ")[5] for row in rows] == ["pass", "FAIL", "warn"]
    # A "|" inside a detail would end its cell early; it is written as "/".
    assert all(row.count("|") == 8 for row in rows)
    assert "at least / 8 pixels" in rows[2]
    assert lines[-1] == "- [raw_manifest / manifest](file:///docs/manifest.html)"
    assert "Data Docs" not in report_markdown([report(ROWS_CHECK)], "Raw manifest contract")


def test_no_reports_make_an_empty_report_and_a_report_path_that_cannot_be_written_is_an_error(tmp_path):
    publish_contract_reports([], tmp_path / "empty.json", "nothing", "Nothing validated")
    assert json.loads((tmp_path / "empty.json").read_text()) == []
    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")
    with pytest.raises(OSError):
        write_report([report(ROWS_CHECK)], blocked / "manifest.json")
    assert blocked.read_text() == "not a folder"
