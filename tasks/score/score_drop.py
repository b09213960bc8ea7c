"""Scoring stage 2: decode and predict a drop's new images in bounded batches, exactly once.

Every listed file ends in exactly one output row: a prediction, or a rejection with a reason.
Contents the ledger already holds for this model are not predicted again: a file already in
the drop's outputs is counted as already scored and left alone; a known content under a new
name or in another drop gets its row from the ledger. Each new content is decoded once, by the
function that prepared the training data, and predicted once, however many files hold it.

Decoding runs in worker processes while the model predicts in this one; at most a few chunks
of decoded pixels and one part of output rows are held at a time, so memory stays flat however
many images a drop holds. Rows are written and committed part by part (see visionflow/ledger.py),
so a killed run loses at most one part's work and a re-run finishes the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from visionflow.drops import DropOutputs, now_utc
from visionflow.file_listing import STATUS_OK
from visionflow.image_profile import ImageProfile
from visionflow.imaging import MAX_PIXELS, ImageSpec
from visionflow.ledger import PredictionLedger, reservation_owner
from visionflow.parallel import chunked, default_workers, map_chunks
from visionflow.prediction import predict_probabilities
from visionflow.registry import ModelRecord, load_checked_model
from visionflow.run_context import progress_reporter, run_logger, start_progress, update_progress
from visionflow.tasks.score.part_buffer import PartBuffer
from visionflow.workers import decode_for_scoring

if TYPE_CHECKING:
    import keras

# How often a run waiting for contents another run is predicting looks again, and how long it
# waits at most before predicting them itself, in seconds.
RESERVATION_POLL_SECONDS = 0.5
RESERVATION_WAIT_SECONDS = 600.0


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


class ScoreResult(BaseModel):
    """What scoring one drop did."""

    drop_name: str
    model_version: str
    files: int  # Files listed in the drop (the readiness marker excepted).
    scored: int  # Files whose content the model predicted in this run.
    already_scored: int  # Files whose content the ledger held for this model before this run.
    rejected: int  # Files that cannot be scored; each has a rejection row.
    contents_predicted: int  # Distinct contents the model predicted (copies share one prediction).
    prediction_rows_written: int  # Rows this run added to the drop's predictions.
    rejection_rows_written: int  # Rows this run added to the drop's rejections.
    orphan_parts_removed: int  # Uncommitted parts of an interrupted earlier run, deleted.
    parts_adopted: int = 0  # Whole parts the ledger did not know (it was lost or replaced), read back into it.
    parts_set_aside: list[str] = []  # Unreadable parts the ledger did not know, moved aside (never deleted).
    predictions_path: str  # Folder of the drop's prediction parts (a pyarrow dataset).
    rejections_path: str  # Folder of the drop's rejection parts (a pyarrow dataset).
    seconds: float  # Wall-clock seconds of decoding, predicting and writing.
    images_per_second: float  # scored / seconds.
    class_counts: dict[str, int]  # Predicted class of the rows this run wrote.
    confidence_histogram: list[int]  # Rows this run wrote per confidence bin of width 0.1.
    profile: ImageProfile  # Pixel statistics of the images decoded, class mix of the rows written.
    rejection_examples: list[dict]  # Up to 20 rejected files with their reasons.


def score_drop(
    files: pd.DataFrame,
    drop: Path,
    record: ModelRecord,
    model: keras.Model,
    ledger: PredictionLedger,
    outputs: DropOutputs,
    config: ScoreConfig,
    on_progress: Callable[[int, int, float], None] | None = None,
) -> ScoreResult:
    """Score the listed files of a drop (list_drop_files' frame) with a loaded model.

    on_progress receives (contents predicted, contents to predict, seconds elapsed).
    """
    started = time.perf_counter()
    counts = {"scored": 0, "already_scored": 0, "rejected": 0, "predicted": 0}
    with outputs.exclusive():
        recovery = outputs.recover(ledger)
        recorded = ledger.recorded_files(outputs.name, record.version)
        buffer = PartBuffer(outputs, ledger, record, config.part_rows)
        sizes: dict[str, int | None] = {}
        paths_by_content: dict[str, list[str]] = {}
        for path, size, sha256, status, reason in files[["path", "bytes", "sha256", "status", "reason"]].itertuples(
            index=False
        ):
            sha256 = sha256 if isinstance(sha256, str) else None
            sizes[path] = None if pd.isna(size) else int(size)
            earlier = recorded.get((path, sha256 or ""))
            if earlier is not None:
                counts["already_scored" if earlier == "predicted" else "rejected"] += 1
            elif status != STATUS_OK:
                counts["rejected"] += 1
                buffer.add_rejection(path, sha256, sizes[path], reason)
            else:
                paths_by_content.setdefault(sha256, []).append(path)
        counts["already_scored"] += _take_known(paths_by_content, ledger, buffer)
        owner = reservation_owner()
        try:
            # Only contents this run holds are predicted; those another run is predicting right now
            # come from the ledger once that run commits them, so no image is predicted twice.
            held = ledger.reserve_contents(paths_by_content, record.version, owner)
            others = {sha256: paths_by_content.pop(sha256) for sha256 in list(paths_by_content) if sha256 not in held}

            def predict(contents: dict[str, list[str]]) -> None:
                scored, rejected, predicted = _predict_new_contents(
                    contents, drop, model, buffer, sizes, config, on_progress
                )
                counts["scored"] += scored
                counts["rejected"] += rejected
                counts["predicted"] += predicted

            predict(paths_by_content)
            if others:
                buffer.flush_predictions()  # Ours first: the other run may be waiting for them too.
                counts["already_scored"] += _wait_for_other_runs(others, ledger, buffer, owner, predict)
            buffer.flush_predictions()
            buffer.flush_rejections()
        finally:
            ledger.release_contents(owner)
    seconds = time.perf_counter() - started
    profile = buffer.profile.profile()
    return ScoreResult(
        drop_name=outputs.name,
        model_version=record.version,
        files=len(files),
        scored=counts["scored"],
        already_scored=counts["already_scored"],
        rejected=counts["rejected"],
        contents_predicted=counts["predicted"],
        prediction_rows_written=buffer.prediction_rows,
        rejection_rows_written=buffer.rejection_rows,
        orphan_parts_removed=len(recovery.removed),
        parts_adopted=len(recovery.adopted),
        parts_set_aside=[str(path) for path in recovery.set_aside],
        predictions_path=str(outputs.predictions),
        rejections_path=str(outputs.rejections),
        seconds=round(seconds, 3),
        images_per_second=round(counts["scored"] / seconds, 1) if seconds > 0 else 0.0,
        class_counts=buffer.profile.class_counts(),
        confidence_histogram=buffer.confidences.tolist(),
        profile=profile,
        rejection_examples=buffer.rejection_examples,
    )


def _take_known(contents: dict[str, list[str]], ledger: PredictionLedger, buffer: PartBuffer) -> int:
    """Move the contents the ledger already holds predictions for out of contents and into rows
    taken from the ledger; return how many files that covered."""
    files = 0
    for sha256, (probabilities, scored_at) in ledger.known_probabilities(contents, buffer.record.version).items():
        paths = contents.pop(sha256)
        files += len(paths)
        buffer.add_predictions(paths, sha256, probabilities, scored_at, new=False)
    return files


def _wait_for_other_runs(
    contents: dict[str, list[str]],
    ledger: PredictionLedger,
    buffer: PartBuffer,
    owner: str,
    predict: Callable[[dict[str, list[str]]], None],
) -> int:
    """Take the contents other runs hold from the ledger as those runs commit them; predict here
    any a run gave up (its decoder rejected them, or it ended) and, after RESERVATION_WAIT_SECONDS,
    any still missing. Returns how many files came from the ledger."""
    from_ledger = 0
    deadline = time.monotonic() + RESERVATION_WAIT_SECONDS
    while contents:
        from_ledger += _take_known(contents, ledger, buffer)
        if not contents:
            break
        taken = ledger.reserve_contents(contents, buffer.record.version, owner)
        if time.monotonic() > deadline:
            taken = set(contents)
        from_ledger += _take_known(contents, ledger, buffer)  # Committed while we reserved.
        mine = {sha256: contents.pop(sha256) for sha256 in taken if sha256 in contents}
        if mine:
            predict(mine)
            buffer.flush_predictions()
        else:
            time.sleep(RESERVATION_POLL_SECONDS)
    return from_ledger


def _predict_new_contents(
    paths_by_content: dict[str, list[str]],
    drop: Path,
    model: keras.Model,
    buffer: PartBuffer,
    sizes: dict[str, int | None],
    config: ScoreConfig,
    on_progress: Callable[[int, int, float], None] | None,
) -> tuple[int, int, int]:
    """Decode one file per new content in worker processes and predict in batches.

    Returns (files scored, files rejected by the decoder, contents predicted).
    """
    record = buffer.record
    height, width, channels = record.input_shape
    spec = ImageSpec(height=height, width=width, channels=channels, max_pixels=config.max_pixels)
    root = str(Path(drop).resolve())
    work = [(f"{root}/{paths[0]}", sha256, sizes[paths[0]]) for sha256, paths in paths_by_content.items()]
    batch = np.empty((config.batch_size, *record.input_shape), dtype=np.uint8)
    batch_contents: list[str] = []
    done = {"scored": 0, "rejected": 0, "predicted": 0}
    started = time.perf_counter()

    def predict_batch() -> None:
        if not batch_contents:
            return
        images = batch[: len(batch_contents)]
        probabilities = predict_probabilities(model, images, config.batch_size, config.flip_tta)
        buffer.profile.add_images(images)
        scored_at = now_utc()
        for sha256, row in zip(batch_contents, probabilities, strict=True):
            paths = paths_by_content[sha256]
            buffer.add_predictions(paths, sha256, row, scored_at, new=True)
            done["scored"] += len(paths)
        done["predicted"] += len(batch_contents)
        batch_contents.clear()
        if on_progress:
            on_progress(done["predicted"], len(work), time.perf_counter() - started)

    chunks = chunked(work, config.files_per_chunk)
    in_flight = config.workers * config.chunks_in_flight_per_worker
    for _, outcomes in map_chunks(decode_for_scoring, chunks, config.workers, (spec, root), max_in_flight=in_flight):
        for sha256, pixels, reason in outcomes:
            if pixels is None:
                for path in paths_by_content[sha256]:
                    buffer.add_rejection(path, sha256, sizes[path], reason)
                    done["rejected"] += 1
                continue
            batch[len(batch_contents)] = np.frombuffer(pixels, dtype=np.uint8).reshape(record.input_shape)
            batch_contents.append(sha256)
            if len(batch_contents) == config.batch_size:
                predict_batch()
    predict_batch()
    return done["scored"], done["rejected"], done["predicted"]


@task(name="score-images", cache_policy=NO_CACHE)
def score_drop_task(
    files: pd.DataFrame, drop: Path, record: ModelRecord, ledger_path: Path, outputs_root: Path, config: ScoreConfig
) -> ScoreResult:
    """Prefect task: load the model, score the drop's files, log progress and a summary."""
    log = run_logger(__name__)
    model = load_checked_model(record)
    artifact_id = start_progress("scoring-progress", f"Scoring drop {Path(drop).name} with {record.version}")
    with PredictionLedger(ledger_path) as ledger:
        result = score_drop(
            files,
            Path(drop),
            record,
            model,
            ledger,
            DropOutputs(Path(outputs_root)),
            config,
            progress_reporter(log, artifact_id, "predicted"),
        )
    update_progress(artifact_id, 100.0)
    log.info(
        "drop %s: %d scored, %d already scored, %d rejected, in %.1f s (%.0f images/s)%s",
        result.drop_name,
        result.scored,
        result.already_scored,
        result.rejected,
        result.seconds,
        result.images_per_second,
        f"; removed {result.orphan_parts_removed} parts of an interrupted run" if result.orphan_parts_removed else "",
    )
    if result.parts_adopted:
        count = result.parts_adopted
        log.warning("drop %s: the ledger did not know %d parts; read their rows back into it", result.drop_name, count)
    for path in result.parts_set_aside:
        log.warning("drop %s: an unreadable part the ledger did not know was moved to %s", result.drop_name, path)
    return result
