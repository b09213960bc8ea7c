"""Moving the champion, and its history: every move of models/champion.json, when, from, to, why, by whom.

models/champion.json (see visionflow/models/champion_pointer.py) names the model scoring uses.
models/champion-history.jsonl holds one JSON object per change, appended in one write and
flushed to disk. Every change of the champion happens under an exclusive lock on
models/.champion.lock, so two promotions at the same moment apply one after the other: the
pointer ends at the later one and the history holds both, in that order.

A rollback returns to the champion before the current one. The history is read as a stack:
a promotion pushes its version, a rollback pops one. A registry older than the history (models
promoted before it was kept) falls back to the versions whose metadata says training promoted
them, in version order.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from visionflow.errors import BadInputError, BusyError, DamagedStateError
from visionflow.models.champion_pointer import read_champion, write_champion
from visionflow.models.registry import METADATA_FILE, read_metadata

HISTORY_FILE = "champion-history.jsonl"
LOCK_FILE = ".champion.lock"

# promote: a model passed the gate (training's, or `visionflow models promote`); force: promoted
# past the gate with a stated reason; rollback: returned to the champion before.
Action = Literal["promote", "force", "rollback"]
COMMAND_VARIABLE = "VISIONFLOW_COMMAND"  # The visionflow command line that started this process.
ANY_CHAMPION = object()  # set_champion's expected_from when the caller did not compare with a champion.


class ChampionChange(BaseModel):
    """One move of the champion pointer."""

    at: str  # When, as ISO 8601 in UTC, to the second.
    action: Action
    from_version: str | None  # The champion before the change; None when there was none.
    to_version: str  # The champion after the change.
    reason: str  # Why, in a sentence: the gate's reason, the --reason given, or the rollback's.
    by: str  # What made the change: a command line, or a Prefect flow run's name and id.


@contextmanager
def champion_lock(models_root: Path) -> Iterator[None]:
    """Hold the registry's champion lock (an exclusive flock) for the block."""
    models_root = Path(models_root)
    models_root.mkdir(parents=True, exist_ok=True)
    with open(models_root / LOCK_FILE, "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def append_change(models_root: Path, change: ChampionChange) -> None:
    """Append one change as a line, in a single write, and flush it to disk; the caller holds the lock.

    A last line cut short by a crash mid-write was never acknowledged: it is cut off first.
    """
    line = (change.model_dump_json() + "\n").encode()
    descriptor = os.open(Path(models_root) / HISTORY_FILE, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(descriptor).st_size
        tail = os.pread(descriptor, min(size, 65_536), max(0, size - 65_536)) if size else b""
        if tail and not tail.endswith(b"\n"):
            os.ftruncate(descriptor, size - len(tail) + tail.rfind(b"\n") + 1)
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_history(models_root: Path) -> list[ChampionChange]:
    """Every recorded change, oldest first; [] when none was recorded.

    A line cut short by a crash mid-write (the last line, without its newline) is skipped; any
    other line that cannot be read is damage, reported with its file and line number.
    """
    path = Path(models_root) / HISTORY_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    changes = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            changes.append(ChampionChange.model_validate(json.loads(line)))
        except (ValueError, ValidationError) as error:
            if number == len(lines):  # The last line, with no newline after it: an interrupted append.
                continue
            raise DamagedStateError(
                f"line {number} of the champion history {path} cannot be read ({type(error).__name__}); "
                "remove that line or restore the file from a backup"
            ) from None
    return changes


def promotion_stack(changes: list[ChampionChange], promoted_by_training: list[str]) -> list[str]:
    """The champions in the order they took over, the current one last, rollbacks undone.

    promoted_by_training (versions, in order) stands in for a registry with no recorded history.
    """
    if not changes:
        return list(promoted_by_training)
    stack: list[str] = [changes[0].from_version] if changes[0].from_version else []
    for change in changes:
        if change.action == "rollback":
            if stack and stack[-1] == change.from_version:
                stack.pop()
            if not stack or stack[-1] != change.to_version:
                stack.append(change.to_version)
        else:
            stack.append(change.to_version)
    return stack


def new_change(action: Action, from_version: str | None, to_version: str, reason: str, by: str) -> ChampionChange:
    """A change stamped with the current time."""
    at = datetime.now(UTC).isoformat(timespec="seconds")
    return ChampionChange(at=at, action=action, from_version=from_version, to_version=to_version, reason=reason, by=by)


def set_champion(
    models_root: Path,
    version: str,
    reason: str = "promoted",
    action: Action = "promote",
    by: str | None = None,
    expected_from: str | None | object = ANY_CHAMPION,
) -> ChampionChange:
    """Point champion.json at version and record the change in the champion history.

    The pointer is written to a temporary file and renamed over the old one, under the champion
    lock. expected_from, when given, is the champion the caller compared against: if another
    run moved the champion meanwhile, nothing changes and BusyError says so.
    """
    with champion_lock(models_root):
        current = _current_version(models_root)
        if expected_from is not ANY_CHAMPION and current != expected_from:
            raise BusyError(
                f"the champion became {current} while {version} was compared with {expected_from}; run it again"
            )
        return _move_champion(models_root, current, version, action, reason, by)


def rollback_champion(models_root: Path, reason: str = "rolled back", by: str | None = None) -> ChampionChange:
    """Point champion.json back at the champion before the current one; record it in the history."""
    models_root = Path(models_root)
    with champion_lock(models_root):
        pointer = read_champion(models_root)  # A damaged pointer is reported, not rolled back from.
        current = pointer.version if pointer else None
        if current is None:
            raise BadInputError(f"no champion in {models_root} to roll back from")
        promoted = [path.name for path in sorted(models_root.glob("v[0-9]*")) if _promoted_by_training(path)]
        stack = promotion_stack(read_history(models_root), promoted)
        if not stack or stack[-1] != current:  # The pointer was edited by hand: it is the top.
            stack.append(current)
        if len(stack) < 2:
            raise BadInputError(
                f"no champion before {current} is recorded in {models_root}; "
                "choose one with `visionflow models promote VERSION`"
            )
        return _move_champion(models_root, current, stack[-2], "rollback", reason, by)


def _current_version(models_root: Path) -> str | None:
    """The champion's version; None when there is none, or its pointer is damaged (it is replaced)."""
    try:
        pointer = read_champion(models_root)
    except DamagedStateError:
        return None
    return pointer.version if pointer else None


def _move_champion(
    models_root: Path, current: str | None, version: str, action: Action, reason: str, by: str | None
) -> ChampionChange:
    """Write the pointer and append the change; the caller holds the champion lock."""
    if not (Path(models_root) / version / METADATA_FILE).is_file():
        raise BadInputError(f"no registered model {version!r} in {models_root}")
    write_champion(models_root, version)
    change = new_change(action, current, version, reason, by or command_line())
    append_change(models_root, change)
    return change


def _promoted_by_training(version_dir: Path) -> bool:
    try:
        gate = read_metadata(version_dir).gate
    except (OSError, DamagedStateError):
        return False
    return gate is not None and gate.promoted


def record_command() -> None:
    """Note this process's visionflow command line; runs it starts (served ones too) inherit it."""
    os.environ[COMMAND_VARIABLE] = " ".join(["visionflow", *sys.argv[1:]])


def command_line() -> str:
    """The visionflow command behind this process, as the history records who moved the champion."""
    return os.environ.get(COMMAND_VARIABLE) or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
