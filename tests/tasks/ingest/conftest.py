"""Fixtures of the ingest stage tests: a small dataset taken through the stages before the contracts."""

from __future__ import annotations

import pytest

from visionflow.tasks.ingest.assign_splits import SplitConfig, assign_splits
from visionflow.tasks.ingest.decode_images import DecodeConfig, decode_dataset
from visionflow.tasks.ingest.scan_files import ScanConfig, scan_dataset

CONFIG = DecodeConfig(image_size=8, channels=3, workers=1)


@pytest.fixture
def contract_dataset(make_image_folder, tmp_path):
    """A small split dataset taken through scan, decode and split assignment."""
    root = make_image_folder(layout="split", per_class=20, test_per_class=5)
    decoded = decode_dataset(scan_dataset(root, ScanConfig(workers=1)), root, CONFIG, tmp_path / "decoded")
    assigned, classes = assign_splits(decoded, SplitConfig(val_fraction=0.25))
    return assigned, classes, tmp_path / "decoded"
