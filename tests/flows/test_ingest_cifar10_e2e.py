"""End to end on the real CIFAR-10 image folders in ../shared (skipped when they are absent)."""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from PIL import Image

from visionflow.flows.ingest import ingest_flow
from visionflow.images.splits import load_split_arrays

from tests.conftest import SHARED_CIFAR10

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_server")]


def test_cifar10_ingests_to_60000_rows_whose_pixels_match_the_jpegs(home):
    summary = ingest_flow(data=str(SHARED_CIFAR10), home=str(home))
    assert summary.files_found == 60_000 and summary.quarantined == 0
    assert summary.splits == {"train": 45_000, "val": 5_000, "test": 10_000}
    assert all(outcome["success"] and not outcome["failed"] for outcome in summary.contracts.values())
    assert sum(ds.dataset(path).count_rows() for path in summary.parquet.values()) == 60_000

    generator = np.random.default_rng(0)
    for path in summary.parquet.values():
        images, labels, metadata = load_split_arrays(path)
        paths = pq.read_table(path, columns=["path"]).column("path").to_pylist()
        for index in generator.choice(len(paths), size=25, replace=False):
            source = np.asarray(Image.open(SHARED_CIFAR10 / paths[index]).convert("RGB"))
            np.testing.assert_array_equal(images[index], source, err_msg=paths[index])
            assert metadata.classes[labels[index]] == paths[index].split("/")[1]
