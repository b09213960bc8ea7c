"""Decoding and predicting a drop's new contents, here or in shards on a Dask cluster.

Here: worker processes decode while this process predicts, one batch at a time, so at most a few
chunks of decoded pixels are held at once. On a cluster: each shard decodes and predicts on a Dask
worker and returns probabilities and pixel counts. Either way the rows are added to the scoring
run's PartBuffer in this process, which alone writes Parquet parts and commits the ledger.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field

from visionflow.dask_shards import DaskConfig, map_shards
from visionflow.drops import now_utc
from visionflow.imaging import MAX_PIXELS, ImageSpec
from visionflow.parallel import chunked, default_workers, map_chunks
from visionflow.prediction import ShardPredictions, decode_and_predict_shard, predict_images
from visionflow.tasks.score.part_buffer import PartBuffer
from visionflow.workers import decode_for_scoring

if TYPE_CHECKING:
    import keras


class ScoreConfig(BaseModel):
    """How a drop is decoded and predicted."""

    batch_size: int = Field(default=256, ge=1)  # Images per predict call.
    workers: int = Field(default_factory=default_workers, ge=1)  # Processes that decode images.
    files_per_chunk: int = Field(default=256, ge=1)  # Images one worker decodes per task.
    # Decoded chunks waiting for the model at most, per worker; bounds memory to about
    # workers x this x files_per_chunk x the model's image bytes.
    chunks_in_flight_per_worker: int = Field(default=2, ge=1)
    part_rows: int = Field(default=8192, ge=1)  # Output rows per Parquet part (and per ledger commit).
    max_pixels: int = Field(default=MAX_PIXELS, ge=1)  # Largest source width*height decoded; bombs are rejected.
    # Average each image's prediction with its mirror's. None: as the model was trained (flips on).
    flip_tta: bool | None = None


def predict_new_contents(
    paths_by_content: dict[str, list[str]],
    drop: Path,
    model: keras.Model | None,
    buffer: PartBuffer,
    sizes: dict[str, int | None],
    config: ScoreConfig,
    dask: DaskConfig,
    on_progress: Callable[[int, int, float], None] | None,
) -> tuple[int, int, int]:
    """Decode one file per new content and predict it: here (decoding in worker processes, predicting
    in this one, in batches) or in shards on a Dask cluster. Rows are written here either way.

    Returns (files scored, files rejected by the decoder, contents predicted).
    """
    record = buffer.record
    height, width, channels = record.input_shape
    spec = ImageSpec(height=height, width=width, channels=channels, max_pixels=config.max_pixels)
    root = str(Path(drop).resolve())
    work = [(f"{root}/{paths[0]}", sha256, sizes[paths[0]]) for sha256, paths in paths_by_content.items()]
    if dask.enabled:
        arguments = (spec, root, record, config.batch_size, config.flip_tta)
        chunks = chunked(work, dask.files_per_shard_of(spec.pixel_bytes))
        shards = (shard for _, shard in map_shards("score", decode_and_predict_shard, chunks, arguments, dask))
    else:
        shards = _predict_here(work, spec, root, model, record.input_shape, config)
    done = {"scored": 0, "rejected": 0, "predicted": 0}
    started = time.perf_counter()
    for shard in shards:
        for sha256, reason in shard.rejected:
            for path in paths_by_content[sha256]:
                buffer.add_rejection(path, sha256, sizes[path], reason)
                done["rejected"] += 1
        buffer.profile.add_histogram(shard.pixel_histogram, len(shard.sha256s))
        scored_at = now_utc()
        for sha256, row in zip(shard.sha256s, shard.probabilities, strict=True):
            paths = paths_by_content[sha256]
            buffer.add_predictions(paths, sha256, row, scored_at, new=True)
            done["scored"] += len(paths)
        done["predicted"] += len(shard.sha256s)
        if on_progress and shard.sha256s:
            on_progress(done["predicted"], len(work), time.perf_counter() - started)
    return done["scored"], done["rejected"], done["predicted"]


def _predict_here(
    work: list[tuple[str, str, int | None]],
    spec: ImageSpec,
    root: str,
    model: keras.Model,
    input_shape: tuple[int, int, int],
    config: ScoreConfig,
) -> Iterator[ShardPredictions]:
    """Decode in this machine's worker processes while this one predicts, one batch at a time."""
    batch = np.empty((config.batch_size, *input_shape), dtype=np.uint8)
    batch_contents: list[str] = []
    rejected: list[tuple[str, str]] = []
    chunks = chunked(work, config.files_per_chunk)
    in_flight = config.workers * config.chunks_in_flight_per_worker
    for _, outcomes in map_chunks(decode_for_scoring, chunks, config.workers, (spec, root), max_in_flight=in_flight):
        for sha256, pixels, reason in outcomes:
            if pixels is None:
                rejected.append((sha256, reason))
                continue
            batch[len(batch_contents)] = np.frombuffer(pixels, dtype=np.uint8).reshape(input_shape)
            batch_contents.append(sha256)
            if len(batch_contents) == config.batch_size:
                yield predict_images(model, batch, batch_contents, rejected, config.batch_size, config.flip_tta)
                batch_contents.clear()
                rejected.clear()
    images = batch[: len(batch_contents)]
    yield predict_images(model, images, batch_contents, rejected, config.batch_size, config.flip_tta)
