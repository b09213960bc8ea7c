"""Helpers for the registry tests: registered models with recorded metrics and a real test split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from visionflow.images.imaging import ImageSpec
from visionflow.images.splits import DatasetMetadata, split_file, split_schema
from visionflow.models.registry import GateRecord, read_metadata

from tests.metrics_helpers import evaluation_metrics
from tests.scoring_helpers import CLASSES, SHAPE, register_tiny_model


def write_test_split(dataset_dir: Path, per_class: int = 10) -> Path:
    """A balanced test split of random 12x12 images, where an untrained model scores about chance."""
    spec = ImageSpec(*SHAPE)
    generator = np.random.default_rng(7)
    labels = np.repeat(np.arange(len(CLASSES)), per_class).astype(np.int32)
    images = generator.integers(0, 255, size=(len(labels), *SHAPE), dtype=np.uint8)
    table = pa.table(
        {
            "pixels": pa.array([image.tobytes() for image in images], type=pa.binary(spec.pixel_bytes)),
            "label": pa.array(labels, type=pa.int32()),
            "path": [f"{index}.png" for index in range(len(labels))],
            "sha256": [f"{index:064d}" for index in range(len(labels))],
        },
        schema=split_schema(spec, DatasetMetadata(classes=CLASSES), "test"),
    )
    dataset_dir.mkdir(parents=True, exist_ok=True)
    path = split_file(dataset_dir, "test")
    pq.write_table(table, path)
    return path


def register_with_metrics(models_root: Path, dataset_dir: Path, accuracy: float, champion: bool) -> str:
    """A tiny registered model whose metadata records accuracy (and that recall for every class)."""
    version = register_tiny_model(models_root, champion=champion)
    metadata = read_metadata(Path(models_root) / version).model_copy(
        update={
            "dataset_dir": str(dataset_dir),
            "preset": "tiny",
            "metrics": evaluation_metrics(accuracy, dict.fromkeys(CLASSES, accuracy)).recorded(),
            "gate": GateRecord(promoted=champion, reason="registered by a test"),
            "registered_at": "2026-12-01T10:00:00+00:00",
        }
    )
    (Path(models_root) / version / "metadata.json").write_text(json.dumps(metadata.file_fields()))
    return version


def three_model_registry(models_root: Path, dataset_dir: Path) -> Path:
    """v0001 the champion (accuracy 0.40), v0002 a strong candidate (0.99), v0003 one below the
    floors (0.20), all evaluated on one test split in dataset_dir; returns models_root."""
    write_test_split(dataset_dir)
    for accuracy, champion in ((0.40, True), (0.99, False), (0.20, False)):
        register_with_metrics(models_root, dataset_dir, accuracy, champion)
    return Path(models_root)
