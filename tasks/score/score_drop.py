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

from visionflow.drops import PREDICTIONS, REJECTIONS, DropOutputs, now_utc, predictions_table, rejections_table
from visionflow.file_listing import STATUS_OK
from visionflow.image_profile import ImageProfile, ProfileAccumulator
from visionflow.imaging import MAX_PIXELS, ImageSpec
from visionflow.ledger import PredictionLedger
from visionflow.parallel import chunked, default_workers, map_chunks
from visionflow.prediction import predict_probabilities
from visionflow.registry import ModelRecord, load_checked_model
from visionflow.run_context import progress_reporter, run_logger, start_progress, update_progress
from visionflow.workers import decode_for_scoring

if TYPE_CHECKING:
    import keras

# Edges of the confidence histogram the report shows: ten bins of width 0.1.
CONFIDENCE_BINS = np.linspace(0.0, 1.0, 11)

# Rejected files a result lists by name; the rejections Parquet lists them all.
MAX_REJECTION_EXAMPLES = 20


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


class _OutputBuffer:
    """Rows waiting to be written; a part is written and committed every part_rows rows."""

    def __init__(self, outputs: DropOutputs, ledger: PredictionLedger, record: ModelRecord, part_rows: int):
        self.outputs, self.ledger, self.record, self.part_rows = outputs, ledger, record, part_rows
        self.paths: list[str] = []
        self.sha256s: list[str] = []
        self.probabilities: list[np.ndarray] = []
        self.scored_at: list[str] = []
        self.new_predictions: list[tuple[str, np.ndarray, str]] = []
        self.rejections: list[tuple[str, str | None, int | None, str]] = []
        self.rejection_examples: list[dict] = []
        self.prediction_rows = self.rejection_rows = 0
        self.profile = ProfileAccumulator(channels=record.input_shape[-1])
        self.confidences = np.zeros(len(CONFIDENCE_BINS) - 1, dtype=np.int64)

    def add_predictions(self, paths: list[str], sha256: str, probabilities: np.ndarray, scored_at: str, new: bool):
        """Rows for every file holding one content; new marks a content the model just predicted."""
        for path in paths:
            self.paths.append(path)
            self.sha256s.append(sha256)
            self.probabilities.append(probabilities)
            self.scored_at.append(scored_at)
        if new:
            self.new_predictions.append((sha256, probabilities, scored_at))
        if len(self.paths) >= self.part_rows:
            self.flush_predictions()

    def add_rejection(self, path: str, sha256: str | None, size: int | None, reason: str) -> None:
        if len(self.rejection_examples) < MAX_REJECTION_EXAMPLES:
            self.rejection_examples.append({"path": path, "reason": reason})
        self.rejections.append((path, sha256, size, reason))
        if len(self.rejections) >= self.part_rows:
            self.flush_rejections()

    def flush_predictions(self) -> None:
        """Write and commit the waiting prediction rows as one part."""
        if not self.paths:
            return
        version, classes = self.record.version, self.record.class_names
        probabilities = np.stack(self.probabilities)
        table = predictions_table(self.paths, self.sha256s, probabilities, self.scored_at, classes, version)
        files = [(path, sha256, "predicted") for path, sha256 in zip(self.paths, self.sha256s, strict=True)]
        self.outputs.save_part(PREDICTIONS, table, self.ledger, files, self.new_predictions, version)
        self.profile.add_classes(table.column("label").to_pylist())
        self.confidences += np.histogram(probabilities.max(axis=1), bins=CONFIDENCE_BINS)[0]
        self.prediction_rows += len(self.paths)
        self.paths, self.sha256s, self.probabilities, self.scored_at, self.new_predictions = [], [], [], [], []

    def flush_rejections(self) -> None:
        """Write and commit the waiting rejection rows as one part."""
        if not self.rejections:
            return
        table = rejections_table(self.rejections, self.record.version)
        files = [(path, sha256 or "", "rejected") for path, sha256, _, _ in self.rejections]
        self.outputs.save_part(REJECTIONS, table, self.ledger, files, [], self.record.version)
        self.rejection_rows += len(self.rejections)
        self.rejections = []


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
    counts = {"scored": 0, "already_scored": 0, "rejected": 0}
    with outputs.exclusive():
        recovery = outputs.recover(ledger)
        recorded = ledger.recorded_files(outputs.name, record.version)
        buffer = _OutputBuffer(outputs, ledger, record, config.part_rows)
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
        for sha256, (probabilities, scored_at) in ledger.known_probabilities(paths_by_content, record.version).items():
            paths = paths_by_content.pop(sha256)
            counts["already_scored"] += len(paths)
            buffer.add_predictions(paths, sha256, probabilities, scored_at, new=False)
        scored, rejected, predicted = _predict_new_contents(
            paths_by_content, drop, model, buffer, sizes, config, on_progress
        )
        counts["scored"] += scored
        counts["rejected"] += rejected
        buffer.flush_predictions()
        buffer.flush_rejections()
    seconds = time.perf_counter() - started
    profile = buffer.profile.profile()
    return ScoreResult(
        drop_name=outputs.name,
        model_version=record.version,
        files=len(files),
        **counts,
        contents_predicted=predicted,
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


def _predict_new_contents(
    paths_by_content: dict[str, list[str]],
    drop: Path,
    model: keras.Model,
    buffer: _OutputBuffer,
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
