"""Stage 5 of ingestion: write one model-ready Parquet file per split.

Pixels are streamed from the decode stage's shards, one shard at a time, into a writer per
split, so memory stays flat however large the dataset. Each file is written under a temporary
name and renamed into place: a killed run leaves either the old file or the new one, never a
half file that looks whole.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from tasks.assign_splits import SPLITS
from tasks.decode_images import iterate_pixel_shards
from tasks.imaging import ImageSpec
from tasks.run_context import run_logger
from tasks.scan_files import STATUS_OK

# Key of the JSON document stored in each Parquet file's Arrow schema metadata.
METADATA_KEY = b"visionflow"


class ParquetConfig(BaseModel):
    """How stage 5 writes Parquet."""

    compression: str = "lz4"  # Parquet codec: pixels of photos barely compress, so the fastest one wins.
    row_group_rows: int = Field(default=16_384, ge=1)  # Rows per row group: the unit of streaming reads.


def dataset_metadata(classes: list[str], fingerprint: str, source: str, contract_versions: dict[str, str]) -> dict:
    """What every split file of a dataset records about it (write_split_parquet adds shape and split)."""
    return {
        "classes": classes,
        "dataset_fingerprint": fingerprint,
        "contract_versions": contract_versions,
        "source": source,
    }


def parquet_schema(spec: ImageSpec, metadata: dict) -> pa.Schema:
    """The Arrow schema of a split file, with visionflow's metadata attached."""
    return pa.schema(
        [
            pa.field("pixels", pa.binary(spec.pixel_bytes), nullable=False),  # Row-major HxWxC uint8.
            pa.field("label", pa.int32(), nullable=False),  # Index into metadata["classes"].
            pa.field("path", pa.string(), nullable=False),  # Relative to the data root.
            pa.field("sha256", pa.string(), nullable=False),  # Digest of the source file's bytes.
        ],
        metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()},
    )


def write_split_parquet(
    manifest: pd.DataFrame,
    decode_dir: Path,
    output_dir: Path,
    spec: ImageSpec,
    metadata: dict,
    config: ParquetConfig,
) -> dict[str, str]:
    """Write output_dir/<split>.parquet for every split that has rows; return {split: path}.

    manifest must be indexed by the decode stage's row ids. Only accepted rows (status "ok"
    with a split and a label) are written. metadata (classes, image shape, fingerprint,
    contract version) is stored in every file's schema, with the image shape and split added.
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
    writers: dict[str, pq.ParquetWriter] = {}
    temporary_paths = {split: output_dir / f".{split}.parquet.tmp-{os.getpid()}" for split in splits}
    try:
        for split in splits:
            schema = parquet_schema(spec, {**metadata, "image_shape": list(spec.shape), "split": split})
            writers[split] = pq.ParquetWriter(temporary_paths[split], schema, compression=config.compression)
        for row_ids, pixels in iterate_pixel_shards(decode_dir):
            _write_shard(row_ids, pixels, lookup, writers, config.row_group_rows)
        for writer in writers.values():
            writer.close()
        final_paths = {}
        for split in splits:
            final_path = output_dir / f"{split}.parquet"
            os.replace(temporary_paths[split], final_path)
            final_paths[split] = str(final_path)
        return final_paths
    finally:
        for temporary_path in temporary_paths.values():
            temporary_path.unlink(missing_ok=True)


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


def read_split_metadata(path: str | Path) -> dict:
    """The visionflow metadata stored in a split file's schema."""
    schema = pq.read_schema(path)
    return json.loads(schema.metadata[METADATA_KEY])


def load_split_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read a split into (images uint8 N x H x W x C, labels int32 N, metadata) without per-row copies."""
    table = pq.read_table(path, columns=["pixels", "label"])
    metadata = read_split_metadata(path)
    height, width, channels = metadata["image_shape"]
    pixels = table.column("pixels").combine_chunks()
    buffer = pixels.buffers()[1]
    offset = pixels.offset * height * width * channels
    images = np.frombuffer(buffer, dtype=np.uint8, count=len(pixels) * height * width * channels, offset=offset)
    labels = table.column("label").to_numpy()
    return images.reshape(len(pixels), height, width, channels), labels, metadata


@task(name="write-parquet", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def write_parquet_task(
    manifest: pd.DataFrame,
    decode_dir: str,
    output_dir: Path,
    spec: ImageSpec,
    metadata: dict,
    config: ParquetConfig,
) -> dict[str, str]:
    """Prefect task: write the split files; a retry covers a transient file-system error."""
    log = run_logger(__name__)
    started = time.perf_counter()
    paths = write_split_parquet(manifest, Path(decode_dir), Path(output_dir), spec, metadata, config)
    log.info(
        "wrote %s in %.1f s",
        ", ".join(f"{split} -> {path}" for split, path in paths.items()),
        time.perf_counter() - started,
    )
    return paths
