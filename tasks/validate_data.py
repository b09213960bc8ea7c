"""Stages 4 and 6 of ingestion: hold the raw manifest and the written Parquet to their contracts.

The suites live in data_contracts/; this module prepares the frames and the runtime parameters
they need, writes a JSON report, publishes a Prefect markdown artifact, warns on soft breaches
and stops the run on hard ones with a message naming the expectation, the column, how many
rows broke it and a few example paths.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from data_contracts.gx_validation import ContractReport, contract_version, validate
from tasks.errors import ContractBreachError
from tasks.imaging import ACCEPTED_FORMATS
from tasks.run_context import publish_markdown, run_logger
from tasks.scan_files import STATUS_OK

RAW_SUITE = "raw_manifest"
PROCESSED_SUITE = "processed_parquet"


class ContractConfig(BaseModel):
    """Thresholds the data contracts apply; every one is a $PARAMETER of a suite."""

    decode_mostly: float = Field(default=0.9, ge=0.0, le=1.0)  # Least share of files that must decode.
    formats: list[str] = Field(default_factory=lambda: sorted(ACCEPTED_FORMATS))  # Accepted source formats.
    min_side: int = Field(default=8, ge=1)  # Smallest source width or height, in pixels.
    max_side: int = Field(default=20_000, ge=1)  # Largest source width or height, in pixels.
    min_images_per_class: int = Field(default=5, ge=1)  # Fewest images of a class in any split.
    max_class_ratio: float = Field(default=10.0, ge=1.0)  # Largest class over smallest, per split (soft).


def contract_versions() -> dict[str, str]:
    """The version of each suite ingestion holds data to, for the datasets' metadata."""
    return {suite: contract_version(suite) for suite in (RAW_SUITE, PROCESSED_SUITE)}


def raw_manifest_parameters(classes: list[str], config: ContractConfig) -> dict:
    """The raw_manifest suite's parameters for a dataset with these classes."""
    return {
        "decode_mostly": config.decode_mostly,
        "formats": config.formats,
        "min_side": config.min_side,
        "max_side": config.max_side,
        "classes": classes,
        "min_images_per_class": config.min_images_per_class,
        "min_class_balance": 1.0 / config.max_class_ratio,
    }


def accepted_rows_per_split(manifest: pd.DataFrame) -> dict[str, int]:
    """How many rows each split's Parquet file must hold: usable rows with a split and a label."""
    accepted = manifest[(manifest["status"] == STATUS_OK) & manifest["split"].notna() & manifest["label"].notna()]
    return {str(split): int(count) for split, count in accepted["split"].value_counts().items()}


def processed_frame(parquet_path: str | Path) -> pd.DataFrame:
    """A split file as the processed suite sees it: every column but the pixels, plus pixel_bytes.

    Pixels are stored as fixed-size binary, so every image in a file has the byte width its
    schema declares; pixel_bytes carries that width to each row (the suite compares it with
    height x width x channels), and the pixels themselves are never read into memory.
    """
    schema = pq.read_schema(parquet_path)
    columns = [name for name in schema.names if name != "pixels"]
    frame = pq.read_table(parquet_path, columns=columns).to_pandas()
    if "pixels" in schema.names:
        pixel_type = schema.field("pixels").type
        frame["pixel_bytes"] = pixel_type.byte_width if pa.types.is_fixed_size_binary(pixel_type) else -1
    return frame


def processed_parameters(expected_rows: int, class_count: int, pixel_bytes: int) -> dict:
    """The processed_parquet suite's parameters for one split."""
    return {"expected_rows": expected_rows, "max_label": class_count - 1, "pixel_bytes": [pixel_bytes]}


def breach_message(reports: list[ContractReport]) -> str:
    """A message for a person: each hard failure on its own line, and where the full report is."""
    lines = []
    for report in reports:
        for failure in report.hard_failures:
            lines.append(f"  - [{report.suite} / {report.target}] {failure.describe()}")
    return "data contract breached, the run stopped before using the data:\n" + "\n".join(lines)


def report_markdown(reports: list[ContractReport], title: str) -> str:
    """A markdown table of every expectation's outcome, for the Prefect UI."""
    lines = [
        f"# {title}",
        "",
        "| suite | target | expectation | column | severity | result | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for report in reports:
        for outcome in report.outcomes:
            result = "pass" if outcome.success else ("FAIL" if outcome.severity == "hard" else "warn")
            detail = "" if outcome.success else outcome.describe().replace("|", "/")
            lines.append(
                f"| {report.suite} | {report.target} | {outcome.expectation} | {outcome.column or ''} "
                f"| {outcome.severity} | {result} | {detail} |"
            )
    return "\n".join(lines)


def write_report(reports: list[ContractReport], path: Path) -> None:
    """Write the reports as JSON, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps([report.to_dict() for report in reports], indent=2, default=str))
    os.replace(temporary, path)


def _publish(reports: list[ContractReport], report_path: Path, artifact_key: str, title: str) -> None:
    """Write the JSON report and the Prefect artifact; warn on soft breaches; raise on hard ones."""
    log = run_logger(__name__)
    write_report(reports, report_path)
    publish_markdown(artifact_key, report_markdown(reports, title), title)
    for report in reports:
        for warning in report.soft_failures:
            log.warning("data contract warning [%s / %s] %s", report.suite, report.target, warning.describe())
    if any(not report.success for report in reports):
        raise ContractBreachError(f"{breach_message(reports)}\nfull report: {report_path}")
    log.info("%s: all hard expectations passed (report: %s)", title, report_path)


@task(name="validate-raw-manifest", cache_policy=NO_CACHE)
def validate_raw_manifest_task(
    manifest: pd.DataFrame, classes: list[str], config: ContractConfig, report_path: Path
) -> ContractReport:
    """Prefect task: the raw_manifest contract on the scanned, decoded and split manifest."""
    report = validate(manifest, RAW_SUITE, raw_manifest_parameters(classes, config), target="manifest")
    _publish([report], Path(report_path), "contract-raw-manifest", "Raw manifest contract")
    return report


@task(name="validate-processed-parquet", cache_policy=NO_CACHE)
def validate_processed_task(
    parquet_paths: dict[str, str],
    expected_rows: dict[str, int],
    class_count: int,
    pixel_bytes: int,
    report_path: Path,
) -> list[ContractReport]:
    """Prefect task: the processed_parquet contract on every split file, read back from disk."""
    reports = []
    for split in sorted(set(parquet_paths) | set(expected_rows)):
        if split not in parquet_paths:
            raise ContractBreachError(f"split {split} has {expected_rows[split]} accepted images but no Parquet file")
        parameters = processed_parameters(expected_rows.get(split, 0), class_count, pixel_bytes)
        reports.append(validate(processed_frame(parquet_paths[split]), PROCESSED_SUITE, parameters, f"{split} split"))
    _publish(reports, Path(report_path), "contract-processed-parquet", "Processed Parquet contract")
    return reports
