"""Decoding and predicting a drop's new contents, here or in shards on a Dask cluster.

Here: worker processes decode while a thread of this process predicts, one batch at a time, so
at most a few chunks of decoded pixels are held at once. On a cluster: each shard decodes and
predicts on a Dask worker and returns probabilities and pixel counts. Either way the rows are
added to the scoring run's PartBuffer in this process, which alone writes Parquet parts and
commits the ledger.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from visionflow.engines.engine_exports import AUTO, EngineChoice
from visionflow.images.image_profile import pixel_histogram
from visionflow.images.imaging import MAX_PIXELS, ImageSpec
from visionflow.images.workers import decode_for_scoring
from visionflow.ledger.drops import now_utc
from visionflow.models.prediction import ShardPredictions, predict_probabilities
from visionflow.models.scoring_model import ScoringModel, decode_and_predict_shard
from visionflow.parallel import chunked, default_workers, map_chunks
from visionflow.processes.dask_shards import DaskConfig, map_shards
from visionflow.tasks.score.streaming.part_buffer import PartBuffer

# Batches submitted to the predictor thread and not yet handed on: one predicting while the next
# waits its turn, so the model never waits for this thread's bookkeeping between batches.
BATCHES_IN_FLIGHT = 2


class ScoreConfig(BaseModel):
    """How a drop is decoded and predicted."""

    batch_size: int = Field(default=256, ge=1)  # Images per predict call.
    workers: int = Field(default_factory=default_workers, ge=1)  # Processes that decode images.
    files_per_chunk: int = Field(default=256, ge=1)  # Images one worker decodes per task.
    # Decoded chunks waiting for the model at most, per worker; bounds memory to about
    # workers x this x files_per_chunk x the model's image bytes, beside the batches of batch_size
    # images being predicted, queued or filled (BATCHES_IN_FLIGHT + 1).
    chunks_in_flight_per_worker: int = Field(default=2, ge=1)
    part_rows: int = Field(default=8192, ge=1)  # Output rows per Parquet part (and per ledger commit).
    max_pixels: int = Field(default=MAX_PIXELS, ge=1)  # Largest source width*height decoded; bombs are rejected.
    # Average each image's prediction with its mirror's. None: as the model was trained (flips on).
    flip_tta: bool | None = None
    # The engine that predicts: "auto" (the fastest export that passed its parity check, else
    # Keras), "keras", "onnx", "openvino", or an int8 variant "onnx-int8" / "openvino-int8".
    engine: EngineChoice = AUTO


def predict_new_contents(
    paths_by_content: dict[str, list[str]],
    drop: Path,
    model: ScoringModel | None,
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
    # Closed as soon as this loop ends, by an error too: the predictor thread, the batches it holds
    # and the decoding in flight must not wait for the traceback to be collected.
    with closing(shards):
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
    model: ScoringModel,
    input_shape: tuple[int, int, int],
    config: ScoreConfig,
) -> Iterator[ShardPredictions]:
    """Decode in this machine's worker processes while a predictor thread predicts, one batch at a time.

    The model predicts each batch on its own thread (every engine releases the GIL while it computes)
    so that this thread meanwhile counts the batch's pixels for drift, hands the previous batch's
    rows to the caller (Parquet, ledger) and fills the next batch. Batches come out in order; at
    most BATCHES_IN_FLIGHT are held beside the one being filled.
    """
    chunks = chunked(work, config.files_per_chunk)
    in_flight = config.workers * config.chunks_in_flight_per_worker
    outcomes = map_chunks(decode_for_scoring, chunks, config.workers, (spec, root), max_in_flight=in_flight)
    batches = _decoded_batches(outcomes, input_shape, config.batch_size)
    predictor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="visionflow-predict")
    pending: deque[tuple[Future, list[str], list[tuple[str, str]], np.ndarray]] = deque()
    try:
        for images, sha256s, rejected in batches:
            future = predictor.submit(predict_probabilities, model, images, config.batch_size, config.flip_tta)
            pending.append((future, sha256s, rejected, pixel_histogram(images, input_shape[-1])))
            if len(pending) >= BATCHES_IN_FLIGHT:
                yield _finished(pending.popleft())
        while pending:
            yield _finished(pending.popleft())
    finally:
        predictor.shutdown(wait=True, cancel_futures=True)
        batches.close()
        outcomes.close()


def _decoded_batches(
    outcomes: Iterator[tuple[int, list[tuple[str, bytes | None, str | None]]]],
    input_shape: tuple[int, int, int],
    batch_size: int,
) -> Iterator[tuple[np.ndarray, list[str], list[tuple[str, str]]]]:
    """(images, their sha256s, contents rejected since the last batch) per batch_size decoded images;
    the last batch may be shorter or empty (it still carries the last rejections)."""
    images = np.empty((batch_size, *input_shape), dtype=np.uint8)
    sha256s: list[str] = []
    rejected: list[tuple[str, str]] = []
    for _, chunk in outcomes:
        for sha256, pixels, reason in chunk:
            if pixels is None:
                rejected.append((sha256, reason))
                continue
            images[len(sha256s)] = np.frombuffer(pixels, dtype=np.uint8).reshape(input_shape)
            sha256s.append(sha256)
            if len(sha256s) == batch_size:
                yield images, sha256s, rejected
                images = np.empty((batch_size, *input_shape), dtype=np.uint8)  # The last one is predicting.
                sha256s, rejected = [], []
    yield images[: len(sha256s)], sha256s, rejected


def _finished(item: tuple[Future, list[str], list[tuple[str, str]], np.ndarray]) -> ShardPredictions:
    """The ShardPredictions of a submitted batch, once its prediction is done (its error raised here)."""
    future, sha256s, rejected, histogram = item
    return ShardPredictions(sha256s, future.result(), rejected, histogram)
