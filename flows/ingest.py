"""The ingest flow: a labelled image folder in, validated model-ready Parquet out.

source -> scan -> decode (cached by content) -> splits -> raw contract -> Parquet -> processed
contract -> dataset record. Every step is a task in tasks/ingest/ that also runs on its own.
"""

from __future__ import annotations

import time

from prefect import flow
from pydantic import BaseModel, Field

from visionflow.access import check_deployment_parameters
from visionflow.home import resolve_home
from visionflow.images.splits import DatasetRecord
from visionflow.processes.dask_shards import DaskConfig, start_cluster_task
from visionflow.tasks.ingest.assign_splits import SplitConfig, assign_splits_task
from visionflow.tasks.ingest.decode_images import DecodeConfig, decode_images_task
from visionflow.tasks.ingest.prepare_source import prepare_source_task, source_folders
from visionflow.tasks.ingest.record_dataset import record_dataset_task
from visionflow.tasks.ingest.scan_files import ScanConfig, scan_files_task
from visionflow.tasks.ingest.validate_parquet import validate_processed_task
from visionflow.tasks.ingest.validate_raw_manifest import ContractConfig, validate_raw_manifest_task
from visionflow.tasks.ingest.write_parquet import ParquetConfig, write_parquet_task


class IngestConfig(BaseModel):
    """Every ingestion setting, grouped by the stage that uses it."""

    scan: ScanConfig = Field(default_factory=ScanConfig)  # Walking and hashing the data root.
    decode: DecodeConfig = Field(default_factory=DecodeConfig)  # Image size, channels, pixel limit.
    split: SplitConfig = Field(default_factory=SplitConfig)  # Carving val and test splits.
    contracts: ContractConfig = Field(default_factory=ContractConfig)  # Data-contract thresholds.
    parquet: ParquetConfig = Field(default_factory=ParquetConfig)  # Parquet layout.
    dask: DaskConfig = Field(default_factory=DaskConfig)  # Decode shards on a Dask cluster; off by default.


class IngestSummary(DatasetRecord):
    """What one ingest flow run did: the dataset's record, where it came from, and how long it took."""

    source: str  # The source's name ("cifar10", "demo" or the data folder's name).
    seconds: float  # Wall-clock seconds of the whole flow run.


@flow(name="ingest", flow_run_name="ingest-{data}")
def ingest_flow(data: str = "demo", config: IngestConfig | None = None, home: str | None = None) -> IngestSummary:
    """Ingest `data` into validated Parquet under VISIONFLOW_HOME/datasets; return the summary.

    Args:
        data: The labelled image folder (a path on the serving machine), "cifar10" or "demo".
        config: Scanning, decoding (image size, channels), splitting, contracts and Parquet layout.
        home: VISIONFLOW_HOME to use; empty means the serving process's.
    """
    started = time.perf_counter()
    check_deployment_parameters(home, source_folders(data))
    config = config or IngestConfig()
    layout = resolve_home(home)
    source = prepare_source_task(data, layout.sources)
    decode_config = config.decode.for_source(source.suggested_channels)
    spec = decode_config.image_spec()
    if config.dask.enabled:  # The cluster starts while the files are listed and hashed.
        start_cluster_task.submit(config.dask)
    scanned = scan_files_task(source.root, config.scan)
    decode_dir = decode_images_task(scanned, source.root, decode_config, layout.decoded, config.dask)
    split = assign_splits_task(scanned, decode_dir, config.split, layout.datasets, source.name)
    reports_dir = split.dataset_dir / "contracts"
    raw_report = validate_raw_manifest_task(
        split.manifest, split.classes, config.contracts, reports_dir / "raw_manifest.json", layout.root
    )
    parquet_paths = write_parquet_task(split, decode_dir, spec, source.name, config.parquet)
    processed_reports = validate_processed_task(
        parquet_paths,
        split.manifest,
        len(split.classes),
        spec.pixel_bytes,
        reports_dir / "processed_parquet.json",
        layout.root,
    )
    record = record_dataset_task(
        split.manifest,
        split.classes,
        split.fingerprint,
        list(spec.shape),
        parquet_paths,
        [raw_report, *processed_reports],
        split.dataset_dir,
    )
    return IngestSummary(**record.model_dump(), source=source.name, seconds=round(time.perf_counter() - started, 2))
