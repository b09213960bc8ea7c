"""Stage 5: one Parquet file per split, streamed from the pixel shards, written atomically."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from PIL import Image

from visionflow.images.splits import DatasetMetadata, SplitMetadata, load_split_arrays, read_split_metadata
from visionflow.tasks.ingest.assign_splits import SplitConfig, SplitManifest, assign_splits
from visionflow.tasks.ingest.decode_images import DecodeConfig, decode_dataset
from visionflow.tasks.ingest.scan_files import ScanConfig, scan_dataset
from visionflow.tasks.ingest.write_parquet import ParquetConfig, write_parquet_task, write_split_parquet

CONFIG = DecodeConfig(image_size=10, channels=3, workers=1, files_per_chunk=5)


@pytest.fixture
def prepared(make_image_folder, tmp_path):
    """A split image folder scanned, decoded and assigned, ready to write."""
    root = make_image_folder(layout="split", per_class=6, test_per_class=2, size=10)
    manifest = scan_dataset(root, ScanConfig(workers=1))
    decoded = decode_dataset(manifest, root, CONFIG, tmp_path / "decoded")
    assigned, classes = assign_splits(decoded, SplitConfig(val_fraction=0.2))
    return root, assigned, classes, tmp_path / "decoded"


def test_splits_are_written_with_schema_metadata_and_the_source_pixels(prepared, tmp_path):
    root, assigned, classes, decode_dir = prepared
    spec = CONFIG.image_spec()
    metadata = DatasetMetadata(classes=classes, dataset_fingerprint="f" * 64, source="images")
    paths = write_split_parquet(assigned, decode_dir, tmp_path / "out", spec, metadata, ParquetConfig())
    assert sorted(paths) == ["test", "train", "val"]
    assert {split: ds.dataset(path).count_rows() for split, path in paths.items()} == {"train": 15, "val": 3, "test": 6}
    schema = pq.read_schema(paths["train"])
    assert schema.field("pixels").type == pa.binary(10 * 10 * 3)
    assert read_split_metadata(paths["val"]) == SplitMetadata(
        classes=classes, dataset_fingerprint="f" * 64, source="images", image_shape=[10, 10, 3], split="val"
    )
    stored = json.loads(schema.metadata[b"visionflow"])
    assert list(stored) == ["classes", "contract_versions", "dataset_fingerprint", "image_shape", "source", "split"]
    images, labels, metadata = load_split_arrays(paths["test"])
    assert images.shape == (6, 10, 10, 3) and images.dtype == np.uint8
    table_paths = pq.read_table(paths["test"], columns=["path"]).column("path").to_pylist()
    for image, label, path in zip(images, labels, table_paths, strict=True):
        np.testing.assert_array_equal(image, np.asarray(Image.open(root / path).convert("RGB")))
        assert classes[label] == path.split("/")[1]


def test_quarantined_rows_and_rows_without_a_label_are_not_written(prepared, tmp_path):
    _, assigned, classes, decode_dir = prepared
    assigned = assigned.copy()
    assigned.loc[0, "label"] = None
    assigned.loc[1, "status"] = "quarantined"
    dataset = DatasetMetadata(classes=classes)
    paths = write_split_parquet(assigned, decode_dir, tmp_path / "out", CONFIG.image_spec(), dataset, ParquetConfig())
    written = sum(ds.dataset(path).count_rows() for path in paths.values())
    assert written == len(assigned) - 2


def test_a_failed_write_leaves_the_previous_file_whole_and_no_temporary_files(prepared, tmp_path):
    _, assigned, classes, decode_dir = prepared
    output, dataset = tmp_path / "out", DatasetMetadata(classes=classes)
    paths = write_split_parquet(assigned, decode_dir, output, CONFIG.image_spec(), dataset, ParquetConfig())
    before = pq.read_table(paths["train"])
    wrong_spec = DecodeConfig(image_size=11, channels=3).image_spec()
    with pytest.raises(pa.ArrowException):
        write_split_parquet(assigned, decode_dir, output, wrong_spec, dataset, ParquetConfig())
    assert pq.read_table(paths["train"]).equals(before)
    assert sorted(path.name for path in output.iterdir()) == ["test.parquet", "train.parquet", "val.parquet"]


def test_task_writes_beside_the_manifest_and_records_the_dataset(prepared, tmp_path):
    _, assigned, classes, decode_dir = prepared
    split = SplitManifest(assigned, classes, "f" * 64, tmp_path / "dataset")
    paths = write_parquet_task.fn(split, str(decode_dir), CONFIG.image_spec(), "images", ParquetConfig())
    assert paths == {name: str(tmp_path / "dataset" / f"{name}.parquet") for name in ("train", "val", "test")}
    metadata = read_split_metadata(paths["train"])
    assert metadata.classes == classes and metadata.dataset_fingerprint == "f" * 64
    assert metadata.source == "images" and set(metadata.contract_versions) == {
        "raw_manifest",
        "processed_parquet",
    }
