"""Stage: move the champion by hand, from `visionflow models promote|rollback` or the UI.

promote applies the gate training applies: the candidate's recorded test metrics against the
floors, and the current champion measured again on the candidate's own test split, so the
comparison is like for like. `force` promotes past the gate, with the reason a person gives.
rollback returns to the champion before the current one. Every move is appended to the
champion history (visionflow/models/champion.py) and announced as a Prefect event.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from visionflow.errors import BadInputError, GateRefusedError, InvalidSettingError
from visionflow.events import MODEL_PROMOTED, MODEL_REJECTED, MODEL_RESOURCE_PREFIX, emit
from visionflow.images.splits import split_file
from visionflow.models.champion import ChampionChange, command_line, read_history, rollback_champion, set_champion
from visionflow.models.champion_pointer import read_champion
from visionflow.models.mlflow_tracking import move_champion_alias
from visionflow.models.registry import CHAMPION, find_model, read_metadata
from visionflow.run_context import publish_table, run_label, run_logger
from visionflow.tasks.train.evaluate_model import EvaluationConfig
from visionflow.tasks.train.gate_model import GateConfig, decide, measure_champion


class ChampionMove(BaseModel):
    """What a promote or rollback did to the champion."""

    action: str  # "promote", "force", "rollback", or "none" when the version already was champion.
    from_version: str | None  # The champion before.
    to_version: str  # The champion after.
    reason: str  # The gate's reason, the reason given, or why nothing changed.
    by: str  # Who moved it: the flow run, and the command that started it.
    at: str | None  # When, ISO 8601 UTC; None when nothing changed.


def actor() -> str:
    """Who is moving the champion: this flow run and the visionflow command that started it."""
    return " via ".join(part for part in (run_label(), command_line()) if part)


def candidate_test_split(models_root: Path, version: str) -> str:
    """The test split the candidate was evaluated on, from its registry metadata."""
    dataset_dir = read_metadata(Path(models_root) / version).dataset_dir
    test_path = split_file(dataset_dir or "", "test")
    if not dataset_dir or not test_path.is_file():
        raise BadInputError(
            f"the test split {version} was evaluated on ({test_path}) is gone, so the gate cannot compare it "
            f"with the champion: ingest that data again, or promote with --force --reason TEXT"
        )
    return str(test_path)


def promote(
    models_root: Path, version: str, gate: GateConfig, evaluation: EvaluationConfig, force_reason: str | None, log
) -> ChampionChange | None:
    """Make version the champion if the gate passes it (or force_reason is given); None when it already is.

    Raises GateRefusedError with the gate's reason when it does not pass.
    """
    if version == CHAMPION:
        raise InvalidSettingError(
            "name the registered version to promote, such as v0002: 'champion' already is the champion"
        )
    find_model(models_root, version)  # Refuses names that are not registered versions.
    pointer = read_champion(models_root)
    if pointer and pointer.version == version:
        return None
    if force_reason:
        current = pointer.version if pointer else None
        return set_champion(models_root, version, force_reason, "force", actor(), expected_from=current)
    metrics = read_metadata(Path(models_root) / version).metrics
    if metrics is None or not metrics.complete():
        raise BadInputError(f"{version} has no recorded test metrics to gate: promote it with --force --reason TEXT")
    test_path = candidate_test_split(models_root, version)
    champion_version, accuracy = measure_champion(test_path, models_root, evaluation, log)
    decision = decide(metrics, champion_version, accuracy, gate)
    if not decision.promoted:
        payload = {"reason": decision.reason, "accuracy": metrics.accuracy, "champion": champion_version,
                   "champion_accuracy": accuracy}  # fmt: skip
        emit(MODEL_REJECTED, MODEL_RESOURCE_PREFIX, version, payload)
        raise GateRefusedError(f"{version} was not promoted: {decision.reason}; --force --reason TEXT overrides it")
    return set_champion(models_root, version, decision.reason, "promote", actor(), expected_from=champion_version)


def publish_move(move: ChampionMove, models_root: Path) -> None:
    """The move as an event, the MLflow alias moved with it, and the champion history as a table."""
    if move.action != "none":
        emit(MODEL_PROMOTED, MODEL_RESOURCE_PREFIX, move.to_version, move.model_dump())
        move_champion_alias(move.to_version)
    publish_champion_history(models_root)


def publish_champion_history(models_root: Path) -> None:
    """The champion history, newest first (the last 50 changes), as a table artifact."""
    rows = [change.model_dump() for change in reversed(read_history(models_root))][:50]
    publish_table("champion-history", rows, "Champion changes, newest first")


@task(name="promote-model", cache_policy=NO_CACHE)
def promote_model_task(
    models_root: Path, version: str, gate: GateConfig, evaluation: EvaluationConfig, force_reason: str | None
) -> ChampionMove:
    """Prefect task: promote a registered version through the gate, or past it with a reason."""
    log = run_logger(__name__)
    change = promote(Path(models_root), version, gate, evaluation, force_reason, log)
    if change is None:
        move = ChampionMove(action="none", from_version=version, to_version=version,
                            reason=f"{version} already is the champion", by=actor(), at=None)  # fmt: skip
    else:
        move = ChampionMove(**change.model_dump())
    log.info("champion: %s -> %s (%s): %s", move.from_version, move.to_version, move.action, move.reason)
    publish_move(move, Path(models_root))
    return move


@task(name="rollback-champion", cache_policy=NO_CACHE)
def rollback_champion_task(models_root: Path, reason: str | None) -> ChampionMove:
    """Prefect task: return to the champion before the current one."""
    change = rollback_champion(Path(models_root), reason or "rolled back", actor())
    move = ChampionMove(**change.model_dump())
    run_logger(__name__).info("champion rolled back: %s -> %s", move.from_version, move.to_version)
    publish_move(move, Path(models_root))
    return move
