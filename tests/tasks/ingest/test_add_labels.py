"""Retraining with reviewed labels: a base dataset plus the labels store's accepted labels, as a dataset of its own."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from visionflow.errors import BadInputError
from visionflow.home import resolve_home
from visionflow.images.imaging import decode_image
from visionflow.images.splits import DatasetRecord, dataset_metadata, read_split_metadata
from visionflow.labels.labels_store import LabelRow, LabelsSnapshot, LabelsStore
from visionflow.tasks.ingest.add_labels import add_labels, labelled_fingerprint, read_labels
from visionflow.tasks.ingest.assign_splits import SplitConfig, assign_splits, write_manifest
from visionflow.tasks.ingest.decode_images import DecodeConfig, decode_dataset
from visionflow.tasks.ingest.record_dataset import dataset_summary
from visionflow.tasks.ingest.scan_files import ScanConfig, scan_dataset
from visionflow.tasks.ingest.write_parquet import ParquetConfig, ingest_contract_versions, write_split_parquet

from tests.conftest import write_image

CONFIG = DecodeConfig(image_size=8, channels=3, workers=1)
BASE_FINGERPRINT = "b" * 64


@pytest.fixture
def base(make_image_folder, tmp_path) -> tuple[DatasetRecord, Path]:
    """A small dataset taken through the ingest stages (train, val carved from it, and test), and its folder."""
    root = make_image_folder(layout="split", per_class=6, test_per_class=2)
    decoded = decode_dataset(scan_dataset(root, ScanConfig(workers=1)), root, CONFIG, tmp_path / "decoded")
    assigned, classes = assign_splits(decoded, SplitConfig(val_fraction=0.2))
    dataset_dir = tmp_path / "datasets" / f"images-{BASE_FINGERPRINT[:12]}"
    write_manifest(assigned, dataset_dir / "manifest.parquet")
    metadata = dataset_metadata(classes, BASE_FINGERPRINT, "images", ingest_contract_versions())
    spec = CONFIG.image_spec()
    paths = write_split_parquet(assigned, tmp_path / "decoded", dataset_dir, spec, metadata, ParquetConfig())
    record = dataset_summary(assigned, classes, BASE_FINGERPRINT, list(spec.shape), paths, [], dataset_dir)
    return record, root


def label(home: Path, image: Path, class_name: str, data: bytes | None = None) -> str:
    """Store one label for an image's bytes in the home's labels store, as an import would; return its sha256."""
    data = image.read_bytes() if data is None else data
    sha256 = hashlib.sha256(data).hexdigest()
    with LabelsStore(resolve_home(str(home))) as store:
        store.keep_content(sha256, data)
        store.add(sha256, LabelRow(sha256=sha256, class_name=class_name, source="csv", origin=f"row for {image.name}"))
    return sha256


def split_rows(path: str) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def test_labelled_images_join_train_only_and_val_and_test_stay_the_base_rows(base, home, tmp_path):
    record, root = base
    new_red = label(home, write_image(tmp_path / "new" / "red.png", (230, 30, 30), size=20, seed=901), "red")
    new_blue = label(home, write_image(tmp_path / "new" / "blue.png", (30, 30, 230), size=20, seed=902), "blue")
    relabelled = label(home, root / "train" / "red" / "000.png", "green")  # The folder said red.
    test_content = label(home, root / "test" / "blue" / "000.png", "blue")
    label(home, write_image(tmp_path / "new" / "purple.png", (200, 30, 200), seed=903), "purple")
    label(home, tmp_path / "broken.png", "red", data=b"not an image at all")
    contents, snapshot = read_labels(str(home))
    assert snapshot.count == 6 and len(contents) == 6

    derived = add_labels(record, contents, snapshot)

    assert derived.dataset_fingerprint == labelled_fingerprint(BASE_FINGERPRINT, snapshot.digest) != BASE_FINGERPRINT
    assert Path(derived.dataset_dir).name == f"images+labels-{derived.dataset_fingerprint[:12]}"
    use = derived.labels
    assert (use.added_to_train, use.relabelled, use.confirmed) == (2, 1, 0)
    assert (use.left_out_in_val_or_test, use.left_out_unknown_class, use.left_out_undecodable) == (1, 1, 1)
    assert use.snapshot == snapshot and use.base_fingerprint == BASE_FINGERPRINT
    for split in ("val", "test"):
        assert split_rows(derived.parquet[split]).equals(split_rows(record.parquet[split])), split
    base_train, train = split_rows(record.parquet["train"]), split_rows(derived.parquet["train"])
    assert len(train) == len(base_train) + 2 and derived.splits == {**record.splits, "train": len(base_train) + 2}
    added = train[train["path"].str.startswith("labels/")]
    assert sorted(added["sha256"]) == sorted([new_red, new_blue]) and test_content not in set(train["sha256"])
    classes = derived.classes
    assert [classes[index] for index in added.set_index("sha256").loc[[new_red, new_blue], "label"]] == ["red", "blue"]
    expected_pixels = decode_image((tmp_path / "new" / "red.png").read_bytes(), CONFIG.image_spec()).pixels
    assert added.set_index("sha256").loc[new_red, "pixels"] == expected_pixels
    assert classes[int(train.set_index("sha256").loc[relabelled, "label"])] == "green"
    assert classes[int(base_train.set_index("sha256").loc[relabelled, "label"])] == "red"
    for split, path in derived.parquet.items():
        metadata = read_split_metadata(path)
        assert metadata.dataset_fingerprint == derived.dataset_fingerprint and metadata.source == "images+labels"
        assert metadata.classes == record.classes and metadata.split == split
    assert derived.contracts["processed_parquet"]["success"]


def test_the_manifest_and_record_say_where_every_label_went(base, home, tmp_path):
    record, root = base
    label(home, root / "test" / "green" / "001.png", "green")
    label(home, write_image(tmp_path / "new" / "purple.png", (200, 30, 200), seed=903), "purple")
    label(home, root / "train" / "blue" / "002.png", "blue")  # The folder agrees.
    derived = add_labels(record, *read_labels(str(home)))
    manifest = pd.read_parquet(derived.manifest)
    labelled = manifest[manifest["labelled"]]
    assert len(labelled) == 2, "the confirmed train image, and the label of an unknown class"
    purple = labelled[labelled["class_name"] == "purple"].iloc[0]
    assert purple["status"] == "quarantined" and "'purple' is not one of the dataset's classes" in purple["reason"]
    assert derived.labels.confirmed == 1 and derived.labels.added_to_train == 0
    stored = json.loads((Path(derived.dataset_dir) / "dataset.json").read_text())
    assert stored["labels"]["snapshot"]["count"] == 3 and stored["dataset_fingerprint"] == derived.dataset_fingerprint


def test_the_same_base_and_labels_make_the_same_dataset_built_once(base, home, tmp_path):
    record, _ = base
    label(home, write_image(tmp_path / "new" / "red.png", (230, 30, 30), seed=901), "red")
    contents, snapshot = read_labels(str(home))
    first = add_labels(record, contents, snapshot)
    train_file = Path(first.parquet["train"])
    written = train_file.stat().st_mtime_ns
    assert add_labels(record, contents, snapshot) == first and train_file.stat().st_mtime_ns == written
    shutil.rmtree(first.dataset_dir)
    rebuilt = add_labels(record, contents, snapshot)
    assert rebuilt.dataset_fingerprint == first.dataset_fingerprint
    assert split_rows(rebuilt.parquet["train"]).equals(split_rows(str(train_file)))

    label(home, write_image(tmp_path / "new" / "blue.png", (30, 30, 230), seed=902), "blue")
    more = add_labels(record, *read_labels(str(home)))
    assert more.dataset_fingerprint != first.dataset_fingerprint and more.dataset_dir != first.dataset_dir


def test_no_accepted_labels_is_an_error_naming_the_store(base, home):
    with pytest.raises(BadInputError, match="no accepted labels in .*labels; import some with `visionflow labels"):
        read_labels(str(home))
    record, _ = base
    with pytest.raises(BadInputError, match="no accepted labels"):
        add_labels(record, [], LabelsSnapshot(count=0, digest="0" * 64, conflicts=0))


def test_conflicting_labels_are_held_out_and_counted(base, home, tmp_path):
    image = write_image(tmp_path / "new" / "red.png", (230, 30, 30), seed=901)
    label(home, image, "red")
    with LabelsStore(resolve_home(str(home))) as store:
        sha256 = store.accepted()[0][0].sha256
        store.add(sha256, LabelRow(sha256=sha256, class_name="blue", source="review", reviewer="ann", origin="p1"))
    with pytest.raises(BadInputError, match=r"\(1 held out for conflicting classes\)"):
        read_labels(str(home))
