"""Stage 6 of ingestion: hold the written split files, read back from disk, to the processed_parquet contract.

The suite lives in data_contracts/processed_parquet.json. Each split file is checked for its
exact columns, a row count equal to the manifest's accepted rows of that split, labels in range,
H*W*C bytes per image, sha256 present and unique paths; a hard breach stops the run.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from visionflow.data_contracts.contract_reports import publish_contract_reports
from visionflow.data_contracts.contract_suites import ContractReport
from visionflow.data_contracts.gx_validation import validate
from visionflow.errors import ContractBreachError
from visionflow.run_context import flow_run_name
from visionflow.tasks.ingest.scan_files import STATUS_OK

PROCESSED_SUITE = "processed_parquet"


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


def validate_split_files(
    parquet_paths: dict[str, str],
    expected_rows: dict[str, int],
    class_count: int,
    pixel_bytes: int,
    data_docs: Path | None = None,
) -> list[ContractReport]:
    """The contract's verdict on every split file; a split with accepted rows but no file is a breach."""
    reports = []
    splits = sorted(set(parquet_paths) | set(expected_rows))
    for split in splits:
        if split not in parquet_paths:
            raise ContractBreachError(f"split {split} has {expected_rows[split]} accepted images but no Parquet file")
        parameters = processed_parameters(expected_rows.get(split, 0), class_count, pixel_bytes)
        frame, target = processed_frame(parquet_paths[split]), f"{split} split"
        last = split == splits[-1]  # The dataset's last validation brings the Data Docs index up to date.
        docs = {"data_docs": data_docs, "run_name": flow_run_name(), "refresh_index": last}
        reports.append(validate(frame, PROCESSED_SUITE, parameters, target, **docs))
    return reports


@task(name="validate-processed-parquet", cache_policy=NO_CACHE)
def validate_processed_task(
    parquet_paths: dict[str, str],
    manifest: pd.DataFrame,
    class_count: int,
    pixel_bytes: int,
    report_path: Path,
    data_docs: Path | None = None,
) -> list[ContractReport]:
    """Prefect task: the processed_parquet contract on every split file the manifest's accepted rows went to."""
    expected_rows = accepted_rows_per_split(manifest)
    reports = validate_split_files(parquet_paths, expected_rows, class_count, pixel_bytes, data_docs)
    publish_contract_reports(reports, Path(report_path), "contract-processed-parquet", "Processed Parquet contract")
    return reports
