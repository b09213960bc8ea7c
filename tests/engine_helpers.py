"""Helpers for the inference-engine tests: a tiny registered model, exported to ONNX beside its model.keras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from visionflow.images.imaging import ImageSpec
from visionflow.images.splits import DatasetMetadata, split_file, split_schema
from visionflow.models.model_export import ExportConfig
from visionflow.models.registry import read_metadata, write_metadata
from visionflow.models.registry_exports import export_registered

from tests.registry_helpers import write_test_split
from tests.scoring_helpers import CLASSES, SHAPE, register_tiny_model

# Small enough to export, check and time in about a second; the parity check needs only some images.
QUICK_EXPORT = ExportConfig(timing_images=16, batch_size=8)


def register_exported_model(
    models_root: Path,
    dataset_dir: Path,
    config: ExportConfig = QUICK_EXPORT,
    champion: bool = True,
    export: bool = True,
) -> str:
    """Register an untrained tiny model trained "on" dataset_dir (its test split written there unless
    one is), export it with export_registered unless export is False; return its version."""
    version = register_tiny_model(models_root, champion=champion)
    if not split_file(dataset_dir, "test").is_file():
        write_test_split(Path(dataset_dir))
    folder = Path(models_root) / version
    write_metadata(folder, read_metadata(folder).model_copy(update={"dataset_dir": str(dataset_dir)}))
    if export:
        export_registered(Path(models_root), version, config)
    return version


def random_images(count: int, shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    """uint8 images of random pixels, count x height x width x channels."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, *shape), dtype=np.uint8)


def write_train_split(dataset_dir: Path, count: int = 30, seed: int = 1) -> tuple[Path, np.ndarray]:
    """A training split of count random 12x12 images in dataset_dir; (its path, its images in row order)."""
    spec = ImageSpec(*SHAPE)
    images = random_images(count, SHAPE, seed)
    labels = (np.arange(count) % len(CLASSES)).astype(np.int32)
    table = pa.table(
        {
            "pixels": pa.array([image.tobytes() for image in images], type=pa.binary(spec.pixel_bytes)),
            "label": pa.array(labels, type=pa.int32()),
            "path": [f"train/{index}.png" for index in range(count)],
            "sha256": [f"{index:064x}" for index in range(count)],
        },
        schema=split_schema(spec, DatasetMetadata(classes=CLASSES), "train"),
    )
    Path(dataset_dir).mkdir(parents=True, exist_ok=True)
    path = split_file(dataset_dir, "train")
    pq.write_table(table, path)
    return path, images
