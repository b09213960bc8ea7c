"""The raw_manifest and processed_parquet data contracts, run through Great Expectations for real.

Every frame is built here with the dtypes the pipeline produces, and each broken frame breaks
exactly one expectation, so a test names the check it expects to fail and nothing else may.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from visionflow.data_contracts.contract_suites import SUITES_DIR, ContractReport, contract_version, load_suite
from visionflow.data_contracts.gx_validation import validate
from visionflow.tasks.ingest.validate_parquet import processed_parameters
from visionflow.tasks.ingest.validate_raw_manifest import ContractConfig, raw_manifest_parameters

CLASSES = ["cat", "dog", "fox"]
SPLIT_NAMES = ["train", "val", "test"]
PER_CLASS = 6  # Images of each class in each split: above the default min_images_per_class of 5.
QUARANTINED_PATH = "train/cat/broken.png"
PIXEL_BYTES = 12 * 12 * 3


def digest(index: int) -> str:
    """A distinct, well-formed sha256 hex digest for row index."""
    return f"{index:064x}"


def good_manifest() -> pd.DataFrame:
    """A valid raw manifest: 3 classes x 6 images in each split, plus one quarantined file."""
    rows = []
    for split in SPLIT_NAMES:
        for label, class_name in enumerate(CLASSES):
            for index in range(PER_CLASS):
                rows.append(
                    {
                        "path": f"{split}/{class_name}/{index:03d}.png",
                        "class_name": class_name,
                        "source_split": split,
                        "bytes": 600 + index,
                        "sha256": digest(len(rows)),
                        "status": "ok",
                        "reason": None,
                        "format": "PNG",
                        "width": 12,
                        "height": 12,
                        "mode": "RGB",
                        "decoded": True,
                        "split": split,
                        "label": label,
                        "class_count": PER_CLASS,
                        "class_balance": 1.0,
                        "classes_missing_from_split": "",
                        "in_other_split": False,
                        "duplicate_in_split": False,
                    }
                )
    # A file that failed to decode keeps its path, class and reason; everything measured is null.
    measured = [
        "format",
        "width",
        "height",
        "mode",
        "split",
        "label",
        "class_count",
        "class_balance",
        "classes_missing_from_split",
    ]
    quarantined = {**rows[0], **dict.fromkeys(measured), "path": QUARANTINED_PATH, "sha256": digest(999)}
    quarantined.update(status="quarantined", reason="cannot identify image file", in_other_split=None, decoded=False)
    quarantined["duplicate_in_split"] = None
    rows.append(quarantined)
    return typed(pd.DataFrame(rows))


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Give the columns the dtypes assign_splits produces (strings stay pandas' default str)."""
    for column in ["bytes", "width", "height", "label", "class_count"]:
        frame[column] = frame[column].astype("Int64")
    frame["class_balance"] = frame["class_balance"].astype("Float64")
    for column in ["in_other_split", "duplicate_in_split", "decoded"]:
        frame[column] = frame[column].astype("boolean")
    return frame


def validate_raw(frame: pd.DataFrame) -> ContractReport:
    return validate(frame, "raw_manifest", raw_manifest_parameters(CLASSES, ContractConfig()), target="manifest")


def failed(report: ContractReport) -> list[tuple[str, str | None]]:
    """The (expectation, column) of every failed outcome, hard or soft."""
    return [(outcome.expectation, outcome.column) for outcome in report.outcomes if not outcome.success]


def failed_outcome(report: ContractReport, column: str):
    """The one failed outcome on column."""
    (outcome,) = [o for o in report.outcomes if not o.success and o.column == column]
    return outcome


def set_first(column: str, value):
    """A mutation that sets column on the first row (train/cat/000.png)."""

    def mutate(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[0, column] = value
        return frame

    return mutate


def quarantine_many(frame: pd.DataFrame) -> pd.DataFrame:
    """Quarantine 8 more files: 9 of 55 then fail to decode, under the default decode_mostly of 90%."""
    frame.loc[0:7, "status"] = "quarantined"
    frame.loc[0:7, "decoded"] = False
    return frame


def width_and_height_out_of_bounds(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[0, "width"] = 4
    frame.loc[0, "height"] = 30_000
    return frame


IN_SET = "expect_column_values_to_be_in_set"
BETWEEN = "expect_column_values_to_be_between"
RAW_BREAKS = [
    ("missing_column", lambda frame: frame.drop(columns=["mode"]), [("expect_table_columns_to_match_set", None)]),
    ("undecodable", quarantine_many, [(IN_SET, "decoded")]),
    ("format", set_first("format", "PSD"), [(IN_SET, "format")]),
    ("sides", width_and_height_out_of_bounds, [(BETWEEN, "width"), (BETWEEN, "height")]),
    ("class", set_first("class_name", "wolf"), [(IN_SET, "class_name")]),
    ("sha256", set_first("sha256", "not-a-digest"), [("expect_column_values_to_match_regex", "sha256")]),
    ("class_count", set_first("class_count", 3), [(BETWEEN, "class_count")]),
    ("class_balance", set_first("class_balance", 0.05), [(BETWEEN, "class_balance")]),
    ("duplicate", set_first("duplicate_in_split", True), [(IN_SET, "duplicate_in_split")]),
    ("leakage", set_first("in_other_split", True), [(IN_SET, "in_other_split")]),
]
SOFT = {"class_balance", "duplicate_in_split"}


def test_good_manifest_passes_without_warnings():
    report = validate_raw(good_manifest())
    assert report.success, [outcome.describe() for outcome in report.hard_failures]
    assert report.soft_failures == []
    assert (report.suite, report.contract_version, report.target) == ("raw_manifest", "1", "manifest")


@pytest.mark.parametrize("mutate, expected", [(m, e) for _, m, e in RAW_BREAKS], ids=[n for n, _, _ in RAW_BREAKS])
def test_each_broken_manifest_fails_exactly_its_expectation(mutate, expected):
    report = validate_raw(mutate(good_manifest()))
    assert failed(report) == expected
    soft = all(column in SOFT for _, column in expected)
    assert report.success is soft
    assert [(o.expectation, o.column) for o in (report.soft_failures if soft else report.hard_failures)] == expected
    for outcome in report.outcomes:
        if not outcome.success and outcome.column not in (None, "decoded"):
            # Row-level breaks on the first row name it; the other 54 rows are fine.
            assert outcome.unexpected_count == 1
            assert outcome.examples == ["train/cat/000.png"]
            assert outcome.severity == ("soft" if soft else "hard")


def test_too_many_undecodable_files_counts_the_quarantined_rows():
    outcome = failed_outcome(validate_raw(quarantine_many(good_manifest())), "decoded")
    assert (outcome.unexpected_count, outcome.element_count) == (9, 55)
    assert outcome.examples[0] == "train/cat/000.png" and outcome.severity == "hard"


def test_files_the_scan_set_aside_do_not_count_against_the_decode_rate():
    frame = good_manifest()
    hidden = {**frame.iloc[-1].to_dict(), "reason": "hidden file", "decoded": None, "sha256": None}
    extra = pd.DataFrame([{**hidden, "path": f".git/objects/{index}"} for index in range(20)])
    frame = typed(pd.concat([frame, extra], ignore_index=True))
    assert failed(validate_raw(frame)) == []


def test_unknown_class_of_a_quarantined_file_is_not_a_breach():
    frame = good_manifest()
    frame.loc[frame["path"] == QUARANTINED_PATH, "class_name"] = "wolf"
    assert failed(validate_raw(frame)) == []


def test_leakage_is_hard_and_names_the_leaked_path():
    frame = good_manifest()
    frame.loc[frame["path"] == "test/fox/005.png", "in_other_split"] = True
    report = validate_raw(frame)
    outcome = failed_outcome(report, "in_other_split")
    assert not report.success and outcome.severity == "hard"
    assert outcome.examples == ["test/fox/005.png"]


def test_describe_names_expectation_column_count_and_example():
    outcome = failed_outcome(validate_raw(set_first("format", "PSD")(good_manifest())), "format")
    line = outcome.describe()
    assert IN_SET in line and "column 'format'" in line
    assert "1 of 55 rows" in line  # GX counts every row as an element, nulls included.
    assert "train/cat/000.png" in line and outcome.check in line


def test_a_class_missing_from_a_split_stops_the_run_and_names_the_class():
    frame = good_manifest()
    frame = frame[~((frame["split"] == "val") & (frame["class_name"] == "fox"))].reset_index(drop=True)
    frame.loc[frame["split"] == "val", "classes_missing_from_split"] = "fox"
    report = validate_raw(frame)
    assert failed(report) == [(IN_SET, "classes_missing_from_split")]
    failure = report.hard_failures[0]
    assert failure.unexpected_values == ["fox"] and "values ['fox']" in failure.describe()


def good_processed(rows: int = 9) -> pd.DataFrame:
    """One split's Parquet file as processed_frame reads it back: 3 classes, fixed pixel size."""
    return pd.DataFrame(
        {
            "pixel_bytes": np.full(rows, PIXEL_BYTES, dtype=np.int32),
            "label": np.arange(rows, dtype=np.int32) % len(CLASSES),
            "path": [f"train/{CLASSES[i % 3]}/{i:03d}.png" for i in range(rows)],
            "sha256": [digest(i) for i in range(rows)],
        }
    )


def validate_processed(frame: pd.DataFrame, expected_rows: int = 9) -> ContractReport:
    parameters = processed_parameters(expected_rows, len(CLASSES), PIXEL_BYTES)
    return validate(frame, "processed_parquet", parameters, target="train split")


def test_good_processed_split_passes():
    report = validate_processed(good_processed())
    assert report.success and failed(report) == []


PROCESSED_BREAKS = [
    ("row_count", lambda f: f.iloc[:8], "expect_table_row_count_to_equal", None),
    ("label", set_first("label", 3), BETWEEN, "label"),
    ("pixel_bytes", set_first("pixel_bytes", PIXEL_BYTES - 1), IN_SET, "pixel_bytes"),
    ("extra_column", lambda f: f.assign(pixels=b""), "expect_table_columns_to_match_set", None),
    ("duplicate_path", set_first("path", "train/dog/001.png"), "expect_column_values_to_be_unique", "path"),
    ("null_sha256", set_first("sha256", None), "expect_column_values_to_not_be_null", "sha256"),
]


@pytest.mark.parametrize(
    "mutate, expectation, column", [b[1:] for b in PROCESSED_BREAKS], ids=[b[0] for b in PROCESSED_BREAKS]
)
def test_each_broken_processed_split_fails_exactly_its_expectation(mutate, expectation, column):
    report = validate_processed(mutate(good_processed()))
    assert failed(report) == [(expectation, column)]
    assert not report.success and report.hard_failures[0].severity == "hard"


def test_processed_row_count_reports_the_observed_count():
    outcome = validate_processed(good_processed(7)).hard_failures[0]
    assert outcome.observed == 7 and "observed 7" in outcome.describe()


def test_unknown_suite_names_the_known_contracts():
    with pytest.raises(ValueError, match="known contracts: predictions, processed_parquet, raw_manifest"):
        load_suite("no_such_suite")
    assert contract_version("raw_manifest") == "1" and contract_version("processed_parquet") == "1"


@pytest.mark.parametrize("name", ["raw_manifest", "processed_parquet"])
def test_every_expectation_has_severity_and_check(name):
    document = json.loads((SUITES_DIR / f"{name}.json").read_text())
    for expectation in document["expectations"]:
        assert expectation["meta"]["severity"] in {"hard", "soft"}, expectation["type"]
        assert expectation["meta"]["check"].strip(), expectation["type"]


def test_gx_keeps_every_expectation():
    # GX silently drops expectations of unknown type; every JSON entry must come back, in order.
    reports = {"raw_manifest": validate_raw(good_manifest()), "processed_parquet": validate_processed(good_processed())}
    for name, report in reports.items():
        expected = [(e["type"], e["kwargs"].get("column")) for e in load_suite(name)["expectations"]]
        assert [(o.expectation, o.column) for o in report.outcomes] == expected


def test_concurrent_validations_keep_their_own_results():
    # Every validation gets its own frame, so nothing but GX itself is shared between threads.
    frames = [good_manifest() if i % 2 == 0 else set_first("format", "PSD")(good_manifest()) for i in range(8)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        reports = list(pool.map(validate_raw, frames))
    for index, report in enumerate(reports):
        if index % 2 == 0:
            assert report.success and failed(report) == []
        else:
            assert failed(report) == [(IN_SET, "format")]
            assert report.hard_failures[0].examples == ["train/cat/000.png"]


def test_a_validation_is_kept_in_the_data_docs_site_with_its_page(tmp_path):
    broken = good_manifest()
    broken.loc[0, "in_other_split"] = True
    report = validate(broken, "raw_manifest", raw_manifest_parameters(CLASSES, ContractConfig()), "manifest",
                      data_docs=tmp_path, run_name="ingest-/data/pets")  # fmt: skip
    assert report.docs_url.startswith("file://") and "ingest-data-pets" in report.docs_url
    page = Path(report.docs_url.removeprefix("file://"))
    html = page.read_text()
    assert "in_other_split" in html and "Failed" in html and "__none__" not in html, "the run is named on the page"
    index = tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert index.is_file() and report.to_dict()["docs_url"] == report.docs_url


def test_data_docs_that_cannot_be_written_never_change_the_verdict(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    report = validate(good_manifest(), "raw_manifest", raw_manifest_parameters(CLASSES, ContractConfig()),
                      "manifest", data_docs=blocker / "home")  # fmt: skip
    assert report.success and report.docs_url is None
    assert "could not add the raw_manifest validation to the Data Docs" in caplog.text
