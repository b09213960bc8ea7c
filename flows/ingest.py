"""The ingest flow: a labelled image folder in, validated model-ready Parquet out.

source -> scan -> decode (cached by content) -> splits -> raw contract -> Parquet -> processed
contract -> dataset record. Every step is a task in tasks/ that also runs on its own.
"""

from __future__ import annotations

import time

from prefect import flow
from pydantic import BaseModel, Field

from flows.runtime import resolve_home
from tasks.assign_splits import SplitConfig, assign_splits_task
from tasks.decode_images import DecodeConfig, decode_images_task
from tasks.prepare_source import prepare_source_task
from tasks.record_dataset import record_dataset_task
from tasks.scan_files import ScanConfig, scan_files_task
from tasks.validate_data import (
    ContractConfig,
    accepted_rows_per_split,
    contract_versions,
    validate_processed_task,
    validate_raw_manifest_task,
)
from tasks.write_parquet import ParquetConfig, dataset_metadata, write_parquet_task


class IngestConfig(BaseModel):
    """Every ingestion setting, grouped by the stage that uses it."""

    scan: ScanConfig = Field(default_factory=ScanConfig)  # Walking and hashing the data root.
    decode: DecodeConfig = Field(default_factory=DecodeConfig)  # Image size, channels, pixel limit.
    split: SplitConfig = Field(default_factory=SplitConfig)  # Carving val and test splits.
    contracts: ContractConfig = Field(default_factory=ContractConfig)  # Data-contract thresholds.
    parquet: ParquetConfig = Field(default_factory=ParquetConfig)  # Parquet layout.


@flow(name="ingest", flow_run_name="ingest-{data}")
def ingest_flow(data: str = "demo", config: IngestConfig | None = None, home: str | None = None) -> dict:
    """Ingest `data` into validated Parquet under VISIONFLOW_HOME/datasets; return the summary.

    Args:
        data: The labelled image folder (a path on the serving machine), "cifar10" or "demo".
        config: Scanning, decoding (image size, channels), splitting, contracts and Parquet layout.
        home: VISIONFLOW_HOME to use; empty means the serving process's.
    """
    started = time.perf_counter()
    config = config or IngestConfig()
    layout = resolve_home(home)
    source = prepare_source_task(data, layout.sources)
    decode_config = config.decode.for_source(source.suggested_channels)
    scanned = scan_files_task(source.root, config.scan)
    decode_dir = decode_images_task(scanned, source.root, decode_config, layout.decoded)
    split = assign_splits_task(scanned, decode_dir, config.split, layout.datasets, source.name)
    raw_report = validate_raw_manifest_task(
        split.manifest, split.classes, config.contracts, split.dataset_dir / "contracts" / "raw_manifest.json"
    )
    spec = decode_config.image_spec()
    metadata = dataset_metadata(split.classes, split.fingerprint, source.name, contract_versions())
    parquet_paths = write_parquet_task(split.manifest, decode_dir, split.dataset_dir, spec, metadata, config.parquet)
    processed_reports = validate_processed_task(
        parquet_paths,
        accepted_rows_per_split(split.manifest),
        len(split.classes),
        spec.pixel_bytes,
        split.dataset_dir / "contracts" / "processed_parquet.json",
    )
    summary = record_dataset_task(
        split.manifest,
        split.classes,
        split.fingerprint,
        list(spec.shape),
        parquet_paths,
        [raw_report, *processed_reports],
        split.dataset_dir,
    )
    return {**summary, "source": source.name, "seconds": round(time.perf_counter() - started, 2)}
