"""Stage 5 of ingestion: write one model-ready Parquet file per split.

Pixels are streamed from the decode stage's shards, one shard at a time, into a writer per
split, so memory stays flat however large the dataset. Each file is written under a temporary
name and renamed into place: a killed run leaves either the old file or the new one, never a
half file that looks whole.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from visionflow.atomic import atomic_path
from visionflow.data_contracts.contract_suites import contract_version
from visionflow.images.imaging import ImageSpec
from visionflow.images.splits import SPLITS, DatasetMetadata, dataset_metadata, split_file, split_schema
from visionflow.run_context import run_logger
from visionflow.tasks.ingest.assign_splits import SplitManifest
from visionflow.tasks.ingest.decode_images import iterate_pixel_shards
from visionflow.tasks.ingest.scan_files import STATUS_OK
from visionflow.tasks.ingest.validate_parquet import PROCESSED_SUITE
from visionflow.tasks.ingest.validate_raw_manifest import RAW_SUITE


class ParquetConfig(BaseModel):
    """How stage 5 writes Parquet."""

    compression: str = "lz4"  # Parquet codec: pixels of photos barely compress, so the fastest one wins.
    row_group_rows: int = Field(default=16_384, ge=1)  # Rows per row group: the unit of streaming reads.


def write_split_parquet(
    manifest: pd.DataFrame,
    decode_dir: Path,
    output_dir: Path,
    spec: ImageSpec,
    metadata: DatasetMetadata,
    config: ParquetConfig,
) -> dict[str, str]:
    """Write output_dir/<split>.parquet for every split that has rows; return {split: path}.

    manifest must be indexed by the decode stage's row ids. Only accepted rows (status "ok"
    with a split and a label) are written. metadata (classes, fingerprint, source, contract
    versions) is stored in every file's schema, with the image shape and the split added.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    accepted = manifest[(manifest["status"] == STATUS_OK) & manifest["split"].notna() & manifest["label"].notna()]
    splits = [split for split in SPLITS if (accepted["split"] == split).any()]
    split_codes = pd.Series(accepted["split"].map({split: code for code, split in enumerate(SPLITS)}), dtype="int64")
    lookup = pd.DataFrame(
        {
            "split_code": split_codes,
            "label": accepted["label"].astype("int32"),
            "path": accepted["path"].astype("object"),
            "sha256": accepted["sha256"].astype("object"),
        }
    )
    final_paths = {split: split_file(output_dir, split) for split in splits}
    with ExitStack() as renames:
        temporaries = {split: renames.enter_context(atomic_path(path)) for split, path in final_paths.items()}
        with ExitStack() as open_writers:
            writers = {
                split: open_writers.enter_context(
                    pq.ParquetWriter(temporaries[split], _schema(spec, metadata, split), compression=config.compression)
                )
                for split in splits
            }
            for row_ids, pixels in iterate_pixel_shards(decode_dir):
                _write_shard(row_ids, pixels, lookup, writers, config.row_group_rows)
        # Every writer has closed; only now are the files renamed into place, so an error before
        # this point leaves all the old split files as they were.
    return {split: str(path) for split, path in final_paths.items()}


def _schema(spec: ImageSpec, metadata: DatasetMetadata, split: str) -> pa.Schema:
    """The schema of one split file: the dataset's metadata with the image shape and split added."""
    return split_schema(spec, metadata, split)


def _write_shard(row_ids: pa.Array, pixels: pa.Array, lookup: pd.DataFrame, writers: dict, row_group_rows: int) -> None:
    """Append one decode shard's accepted rows to the writers of their splits."""
    ids = row_ids.to_numpy()
    known = np.isin(ids, lookup.index.to_numpy())
    if not known.any():
        return
    rows = lookup.loc[ids[known]]
    kept_pixels = pixels.filter(pa.array(known))
    for code, split in enumerate(SPLITS):
        if split not in writers:
            continue
        in_split = (rows["split_code"] == code).to_numpy()
        if not in_split.any():
            continue
        schema = writers[split].schema
        table = pa.table(
            {
                "pixels": kept_pixels.filter(pa.array(in_split)),
                "label": pa.array(rows["label"].to_numpy()[in_split], type=pa.int32()),
                "path": pa.array(rows["path"].to_numpy()[in_split], type=pa.string()),
                "sha256": pa.array(rows["sha256"].to_numpy()[in_split], type=pa.string()),
            },
            schema=schema,
        )
        writers[split].write_table(table, row_group_size=row_group_rows)


def ingest_contract_versions() -> dict[str, str]:
    """The version of each suite ingestion holds a dataset to, recorded in its split files."""
    return {suite: contract_version(suite) for suite in (RAW_SUITE, PROCESSED_SUITE)}


@task(name="write-parquet", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def write_parquet_task(
    split: SplitManifest, decode_dir: str, spec: ImageSpec, source_name: str, config: ParquetConfig
) -> dict[str, str]:
    """Prefect task: write the split files beside the manifest; a retry covers a transient file-system error."""
    log = run_logger(__name__)
    started = time.perf_counter()
    metadata = dataset_metadata(split.classes, split.fingerprint, source_name, ingest_contract_versions())
    paths = write_split_parquet(split.manifest, Path(decode_dir), split.dataset_dir, spec, metadata, config)
    log.info(
        "wrote %s in %.1f s",
        ", ".join(f"{name} -> {path}" for name, path in paths.items()),
        time.perf_counter() - started,
    )
    return paths
