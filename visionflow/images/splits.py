"""The split file format: one Parquet file per split of a dataset, and the dataset's record.

Ingestion writes them (tasks/ingest/write_parquet.py, tasks/ingest/record_dataset.py); training,
evaluation, the gate and the registry read them through this module.

A split file has the columns `pixels` (fixed-size binary, row-major H x W x C uint8), `label`
(int32 index into the class list), `path` (relative to the data root) and `sha256`. Its Arrow
schema metadata, under the key `visionflow`, holds the class names, image shape, dataset
fingerprint, contract versions, source and split (SplitMetadata), written and read here only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from visionflow.images.imaging import ImageSpec

SPLITS = ("train", "val", "test")

# Key of the JSON document stored in each split file's Arrow schema metadata.
METADATA_KEY = b"visionflow"

# The dataset record beside the split files; it is written last, so its presence marks a finished ingest.
DATASET_RECORD_NAME = "dataset.json"


class DatasetRecord(BaseModel):
    """What one ingest built: dataset.json beside the split files, and the ingest flow's result."""

    dataset_fingerprint: str  # sha256 of the content, the pixel settings and the split rule.
    dataset_dir: str  # The folder holding the split files, the manifest and the contract reports.
    classes: list[str]  # Class names; a label is an index into this list.
    image_shape: list[int]  # [height, width, channels] of every image, in pixels.
    splits: dict[str, int]  # Images per split file.
    files_found: int  # Files under the data root, quarantined ones included.
    quarantined: int  # Files not used, each with its reason in the manifest.
    quarantine_examples: list[dict[str, str]]  # Up to 20 quarantined files: path and reason.
    manifest: str  # manifest.parquet: every file found, with its status and reason.
    parquet: dict[str, str]  # Path of each split's Parquet file, by split name.
    contracts: dict[str, dict]  # Per suite: success, failed expectations, warnings, Data Docs page URLs.


def split_file(dataset_dir: str | Path, split: str) -> Path:
    """Where a dataset keeps one split: <dataset_dir>/<split>.parquet."""
    return Path(dataset_dir) / f"{split}.parquet"


class DatasetMetadata(BaseModel):
    """What every split file of a dataset records about the dataset."""

    classes: list[str]  # Class names; a label is an index into this list.
    # sha256 of the content, the pixel settings and the split rule; None when the file records none.
    dataset_fingerprint: str | None = None
    contract_versions: dict[str, str] = {}  # Version of each ingest data contract, by suite.
    source: str | None = None  # The source's name ("cifar10", "demo" or the data folder's name); None: unrecorded.


class SplitMetadata(DatasetMetadata):
    """A split file's schema metadata: the dataset's, and the file's own image shape and split."""

    image_shape: list[int]  # [height, width, channels] of every image, in pixels.
    split: str  # "train", "val" or "test".


def dataset_metadata(
    classes: list[str], fingerprint: str, source: str, contract_versions: dict[str, str]
) -> DatasetMetadata:
    """What every split file of a dataset records about it (split_schema adds shape and split)."""
    return DatasetMetadata(
        classes=classes, dataset_fingerprint=fingerprint, contract_versions=contract_versions, source=source
    )


def split_schema(spec: ImageSpec, dataset: DatasetMetadata, split: str) -> pa.Schema:
    """The Arrow schema of one split file of images decoded to spec, with visionflow's metadata attached."""
    fields = dataset.model_dump(include=set(DatasetMetadata.model_fields))
    metadata = SplitMetadata(**fields, image_shape=list(spec.shape), split=split)
    document = json.dumps(metadata.model_dump(mode="json", exclude_none=True), sort_keys=True)
    return pa.schema(
        [
            pa.field("pixels", pa.binary(spec.pixel_bytes), nullable=False),  # Row-major HxWxC uint8.
            pa.field("label", pa.int32(), nullable=False),  # Index into the metadata's classes.
            pa.field("path", pa.string(), nullable=False),  # Relative to the data root.
            pa.field("sha256", pa.string(), nullable=False),  # Digest of the source file's bytes.
        ],
        metadata={METADATA_KEY: document.encode()},
    )


def read_split_metadata(path: str | Path) -> SplitMetadata:
    """The visionflow metadata stored in a split file's schema."""
    schema = pq.read_schema(path)
    return SplitMetadata.model_validate_json(schema.metadata[METADATA_KEY])


def read_split_paths(path: str | Path) -> list[str]:
    """The source path of every row of a split file, in row order."""
    return pq.read_table(path, columns=["path"])["path"].to_pylist()


def load_split_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray, SplitMetadata]:
    """Read a split into (images uint8 N x H x W x C, labels int32 N, metadata) without per-row copies."""
    table = pq.read_table(path, columns=["pixels", "label"])
    metadata = read_split_metadata(path)
    height, width, channels = metadata.image_shape
    pixels = table.column("pixels").combine_chunks()
    buffer = pixels.buffers()[1]
    offset = pixels.offset * height * width * channels
    images = np.frombuffer(buffer, dtype=np.uint8, count=len(pixels) * height * width * channels, offset=offset)
    labels = table.column("label").to_numpy()
    return images.reshape(len(pixels), height, width, channels), labels, metadata
