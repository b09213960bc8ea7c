"""Helpers for the review and labels tests: a drop of real images whose outputs a model has scored.

The outputs are written with the scoring outputs' own writer (visionflow/ledger/drops.py) and a
report naming the drop folder, as `visionflow score` leaves them, with probabilities the test
chooses: a review's choice then follows from numbers the test can reason about.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from visionflow.home import HomeLayout
from visionflow.ledger.drops import DropOutputs, predictions_table
from visionflow.models.registry import find_model

from tests.scoring_helpers import CLASSES, register_tiny_model


def write_drop_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """count small distinct PNG images in folder; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        pixels = generator.integers(0, 255, size=(12, 12, 3), dtype=np.uint8)
        path = folder / f"image-{index:03d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def scored_drop(layout: HomeLayout, drop: Path, probabilities: np.ndarray, seed: int = 0) -> tuple[str, list[Path]]:
    """A drop of len(probabilities) images scored by a registered champion with those
    probabilities (one row per image, one column per class in CLASSES); returns (version, paths)."""
    import hashlib

    version = find_model(layout.models).version if (layout.models / "champion.json").exists() else None
    version = version or register_tiny_model(layout.models)
    paths = write_drop_images(drop, len(probabilities), seed)
    sha256s = [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]
    relative = [path.name for path in paths]
    scored_at = ["2026-12-07T10:00:00+00:00"] * len(paths)
    table = predictions_table(relative, sha256s, probabilities, scored_at, CLASSES, version)
    outputs = DropOutputs(layout.predictions / drop.name)
    outputs.predictions.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, outputs.predictions / "part-00000.parquet")
    outputs.reports.mkdir(parents=True, exist_ok=True)
    report = {"drop": str(drop.resolve()), "drop_name": drop.name, "model_version": version}
    (outputs.reports / "scoring-20261207T100000000000.json").write_text(json.dumps(report))
    return version, paths
