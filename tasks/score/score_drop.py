"""Scoring stage 2: decode and predict a drop's new images in bounded batches, exactly once.

Every listed file ends in exactly one output row: a prediction, or a rejection with a reason.
Contents the ledger already holds for this model are not predicted again: a file already in
the drop's outputs is counted as already scored and left alone; a known content under a new
name or in another drop gets its row from the ledger. Each new content is decoded once, by the
function that prepared the training data, and predicted once, however many files hold it.

Decoding runs in worker processes while the model predicts in this one, or decoding and
predicting run in shards on a Dask cluster (tasks/score/streaming/predict_contents.py); at most a few
chunks of decoded pixels or shard results and one part of output rows are held at a time, so
memory stays flat however many images a drop holds. Rows are written and committed part by part
(see visionflow/ledger/ledger.py), so a killed run loses at most one part's work and a re-run finishes
the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from visionflow.engines.engine_exports import Engine
from visionflow.errors import VisionflowError
from visionflow.images.file_listing import STATUS_OK
from visionflow.images.image_profile import ImageProfile
from visionflow.ledger.drops import DropOutputs
from visionflow.ledger.ledger import PredictionLedger, reservation_owner
from visionflow.models.registry import ModelRecord, find_model
from visionflow.models.scoring_model import ScoringModel, load_scoring_model
from visionflow.processes.dask_shards import DaskConfig
from visionflow.run_context import progress_reporter, run_logger, start_progress, update_progress
from visionflow.tasks.score.streaming.part_buffer import PartBuffer, RejectionExample
from visionflow.tasks.score.streaming.predict_contents import ScoreConfig, predict_new_contents

# How often a run waiting for contents another run is predicting looks again, and how long it
# waits at most before predicting them itself, in seconds.
# The example reason of a file an earlier run rejected after decoding began; the ledger keeps the
# outcome only, and that run's rejection row (in the drop's rejections dataset) keeps the reason.
EARLIER_REJECTION = "rejected by an earlier run (its reason is in the drop's rejections dataset)"
RESERVATION_POLL_SECONDS = 0.5
RESERVATION_WAIT_SECONDS = 600.0


class ScoringCounts(BaseModel):
    """What happened to a drop's files in one scoring run: the report's and the events' counts."""

    files: int  # Files listed in the drop (the readiness marker excepted).
    scored: int  # Files whose content the model predicted in this run.
    already_scored: int  # Files whose content the ledger held for this model before this run.
    rejected: int  # Files that cannot be scored; each has a rejection row.
    contents_predicted: int  # Distinct contents the model predicted (copies share one prediction).
    prediction_rows_written: int  # Rows this run added to the drop's predictions.
    rejection_rows_written: int  # Rows this run added to the drop's rejections.

    @classmethod
    def of(cls, result: ScoringCounts) -> ScoringCounts:
        """The counts of a scoring result."""
        return cls.model_validate(result.model_dump(include=set(cls.model_fields)))


class ScoreResult(ScoringCounts):
    """What scoring one drop did: its counts (ScoringCounts), and where its rows and reports went."""

    drop_name: str  # The drop's folder name.
    model_version: str  # Registry version of the model that scored it, e.g. "v0003".
    engine: Engine  # The engine that predicted: keras, onnx, openvino, onnx-int8 or openvino-int8.
    orphan_parts_removed: int  # Uncommitted parts of an interrupted earlier run, deleted.
    parts_adopted: int = 0  # Whole parts the ledger did not know (it was lost or replaced), read back into it.
    parts_set_aside: list[str] = []  # Unreadable parts the ledger did not know, moved aside (never deleted).
    parts_rebuilt: list[str] = []  # Committed parts found missing or damaged, written again from the ledger.
    recovery_warnings: list[str] = []  # What settling the drop's outputs adopted, set aside or wrote again.
    predictions_path: str  # Folder of the drop's prediction parts (a pyarrow dataset).
    rejections_path: str  # Folder of the drop's rejection parts (a pyarrow dataset).
    seconds: float  # Wall-clock seconds of decoding, predicting and writing.
    images_per_second: float  # scored / seconds.
    class_counts: dict[str, int]  # Predicted class of the rows this run wrote.
    confidence_histogram: list[int]  # Rows this run wrote per confidence bin of width 0.1.
    profile: ImageProfile  # Pixel statistics of the images decoded, class mix of the rows written.
    rejection_examples: list[RejectionExample]  # Up to 20 rejected files with their reasons.


@dataclass
class ScoringTally:
    """What a scoring run has counted so far, as it goes through a drop's files."""

    scored: int = 0  # Files whose content the model predicted in this run.
    already_scored: int = 0  # Files whose content the ledger held for this model before this run.
    rejected: int = 0  # Files that cannot be scored.
    predicted: int = 0  # Distinct contents the model predicted (copies share one prediction).


def score_drop(
    files: pd.DataFrame,
    drop: Path,
    record: ModelRecord,
    model: ScoringModel | None,
    ledger: PredictionLedger,
    outputs: DropOutputs,
    config: ScoreConfig,
    on_progress: Callable[[int, int, float], None] | None = None,
    dask: DaskConfig | None = None,
) -> ScoreResult:
    """Score the listed files of a drop (list_drop_files' frame) with a loaded model, or with the
    record's model loaded by each Dask worker when dask is enabled (model may then be None); either
    way on the engine record.engine names.

    on_progress receives (contents predicted, contents to predict, seconds elapsed).
    """
    dask = dask or DaskConfig()
    started = time.perf_counter()
    tally = ScoringTally()
    with outputs.exclusive():
        recovery = outputs.recover(ledger, _class_names_of(record))
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
            if earlier == "predicted":
                tally.already_scored += 1
            elif earlier is not None:  # Its rejection row was written by an earlier run.
                tally.rejected += 1
                buffer.note_rejection(path, reason if status != STATUS_OK else EARLIER_REJECTION)
            elif status != STATUS_OK:
                tally.rejected += 1
                buffer.add_rejection(path, sha256, sizes[path], reason)
            else:
                paths_by_content.setdefault(sha256, []).append(path)
        tally.already_scored += _take_known(paths_by_content, ledger, buffer)
        owner = reservation_owner()
        try:
            # Only contents this run holds are predicted; those another run is predicting right now
            # come from the ledger once that run commits them, so no image is predicted twice.
            held = ledger.reserve_contents(paths_by_content, record.version, owner)
            others = {sha256: paths_by_content.pop(sha256) for sha256 in list(paths_by_content) if sha256 not in held}

            def predict(contents: dict[str, list[str]]) -> None:
                scored, rejected, predicted = predict_new_contents(
                    contents, drop, model, buffer, sizes, config, dask, on_progress
                )
                tally.scored += scored
                tally.rejected += rejected
                tally.predicted += predicted

            predict(paths_by_content)
            if others:
                buffer.flush_predictions()  # Ours first: the other run may be waiting for them too.
                tally.already_scored += _wait_for_other_runs(others, ledger, buffer, owner, predict)
            buffer.flush_predictions()
            buffer.flush_rejections()
        except BaseException:
            # The error that stopped the run is the one to tell: releasing may fail the same way (a
            # full disk), and reservations of a process that has ended are taken over anyway.
            with suppress(Exception):
                ledger.release_contents(owner)
            raise
        ledger.release_contents(owner)
    seconds = time.perf_counter() - started
    profile = buffer.profile.profile()
    return ScoreResult(
        drop_name=outputs.name,
        model_version=record.version,
        engine=record.engine,
        files=len(files),
        scored=tally.scored,
        already_scored=tally.already_scored,
        rejected=tally.rejected,
        contents_predicted=tally.predicted,
        prediction_rows_written=buffer.prediction_rows,
        rejection_rows_written=buffer.rejection_rows,
        orphan_parts_removed=len(recovery.removed),
        parts_adopted=len(recovery.adopted),
        parts_set_aside=[str(path) for path in recovery.set_aside],
        parts_rebuilt=[str(repair.part) for repair in recovery.repaired if not repair.problem],
        recovery_warnings=recovery.warnings(outputs.name),
        predictions_path=str(outputs.predictions),
        rejections_path=str(outputs.rejections),
        seconds=round(seconds, 3),
        images_per_second=round(tally.scored / seconds, 1) if seconds > 0 else 0.0,
        class_counts=buffer.profile.class_counts(),
        confidence_histogram=buffer.confidences.tolist(),
        profile=profile,
        rejection_examples=buffer.rejection_examples,
    )


def _class_names_of(record: ModelRecord) -> Callable[[str], list[str] | None]:
    """The class names of a model version, for parts written again from the ledger: the scoring
    model's own, or those of the registered version beside it (None when it is not there)."""

    def class_names(version: str) -> list[str] | None:
        if version == record.version:
            return list(record.class_names)
        try:
            return find_model(record.folder.parent, version).class_names
        except VisionflowError:
            return None

    return class_names


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


@task(name="score-images", cache_policy=NO_CACHE)
def score_drop_task(
    files: pd.DataFrame,
    drop: Path,
    record: ModelRecord,
    ledger_location: str | Path,
    outputs_root: Path,
    config: ScoreConfig,
    dask: DaskConfig | None = None,
) -> ScoreResult:
    """Prefect task: load the model (here, or on each Dask worker), score the drop's files, log
    progress and a summary."""
    log = run_logger(__name__)
    dask = dask or DaskConfig()
    model = None if dask.enabled else load_scoring_model(record)
    artifact_id = start_progress("scoring-progress", f"Scoring drop {Path(drop).name} with {record.version}")
    with PredictionLedger(ledger_location) as ledger:
        result = score_drop(
            files,
            Path(drop),
            record,
            model,
            ledger,
            DropOutputs(Path(outputs_root)),
            config,
            progress_reporter(log, artifact_id, "predicted"),
            dask,
        )
    update_progress(artifact_id, 100.0)
    log.info(
        "drop %s: %d scored, %d already scored, %d rejected, in %.1f s (%.0f images/s on %s)%s",
        result.drop_name,
        result.scored,
        result.already_scored,
        result.rejected,
        result.seconds,
        result.images_per_second,
        result.engine,
        f"; removed {result.orphan_parts_removed} parts of an interrupted run" if result.orphan_parts_removed else "",
    )
    for warning in result.recovery_warnings:
        log.warning("%s", warning)
    return result
