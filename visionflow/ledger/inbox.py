"""The drop inbox: when a drop is ready, and how exactly one run claims it.

Drops arrive as folders in VISIONFLOW_HOME/drops/inbox/<drop>/. A drop is ready when it holds
a _READY file at its top, or when nothing in it has changed for settle_seconds (people copy
files in over minutes; a half-copied drop must not be scored). A run claims a ready drop by
renaming it into drops/processing/: a rename within one file system is atomic, so of two runs
(two serve processes, or a schedule and a trigger firing together) exactly one gets each drop.
After scoring, the drop moves to drops/done/, or to drops/failed/ with a _FAILED.txt saying why.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

READY_MARKER = "_READY"  # A file of this name at the top of a drop says the drop is complete.
FAILURE_NOTE = "_FAILED.txt"  # Written at the top of a drop that failed; a failed drop put back is scored again.
CONTROL_FILES = frozenset({READY_MARKER, FAILURE_NOTE})  # Signals about the drop, not inputs.

# Emitted at most once per look at the inbox when new drops are ready and no score-drops run is
# already waiting to start; the score-drops deployment runs on it, so a burst of a thousand
# drops starts one run (which scores them all), not a thousand.
INBOX_READY_EVENT = "visionflow.inbox.ready"
INBOX_RESOURCE_ID = "visionflow.inbox"


class InboxConfig(BaseModel):
    """When an inbox drop counts as ready, and how long a claim lasts."""

    settle_seconds: float = Field(default=30.0, ge=0)  # Quiet time after the last change, in seconds.
    # A drop left in processing/ longer than this, in seconds, belonged to a run that died; it is
    # claimed again (the ledger keeps already-scored images from being scored twice).
    stale_claim_seconds: float = Field(default=86_400.0, gt=0)


@dataclass(frozen=True)
class DropFolders:
    """The inbox and the folders a drop moves through."""

    root: Path  # VISIONFLOW_HOME/drops

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def processing(self) -> Path:
        return self.root / "processing"

    @property
    def done(self) -> Path:
        return self.root / "done"

    @property
    def failed(self) -> Path:
        return self.root / "failed"

    def create(self) -> None:
        for folder in (self.inbox, self.processing, self.done, self.failed):
            folder.mkdir(parents=True, exist_ok=True)


def last_change(folder: Path) -> float:
    """The newest modification time (seconds since the epoch) of the folder or anything in it.

    Raises FileNotFoundError when the folder itself has gone (claimed by another run).
    """
    newest = folder.stat().st_mtime
    for directory, subfolders, files in os.walk(folder):
        for name in (*subfolders, *files):
            try:
                newest = max(newest, os.lstat(os.path.join(directory, name)).st_mtime)
            except OSError:  # Removed while we looked: that is a change too.
                return time.time()
    return newest


def is_ready(folder: Path, config: InboxConfig, now: float | None = None) -> bool:
    """True when the drop has its _READY marker or has not changed for settle_seconds."""
    if (folder / READY_MARKER).exists():
        return True
    now = time.time() if now is None else now
    return now - last_change(folder) >= config.settle_seconds


def ready_drops(folders: DropFolders, config: InboxConfig, now: float | None = None) -> list[Path]:
    """Inbox drops that are ready, oldest first; hidden folders (being copied in) are skipped."""
    if not folders.inbox.is_dir():
        return []
    ready = []
    for path in sorted(folders.inbox.iterdir()):
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:
            if is_ready(path, config, now):
                ready.append((path.stat().st_mtime, path))
        except FileNotFoundError:  # Claimed by another run while we looked.
            continue
    return [path for _, path in sorted(ready)]


def stale_claims(folders: DropFolders, config: InboxConfig, now: float | None = None) -> list[Path]:
    """Drops in processing/ whose claim is older than stale_claim_seconds."""
    if not folders.processing.is_dir():
        return []
    now = time.time() if now is None else now
    stale = []
    for path in sorted(folders.processing.iterdir()):
        try:
            if path.is_dir() and now - path.stat().st_mtime >= config.stale_claim_seconds:
                stale.append(path)
        except FileNotFoundError:  # Finished by its run while we looked.
            continue
    return stale


def claim(drop: Path, folders: DropFolders) -> Path | None:
    """Move a drop into processing/; return its new path, or None when it cannot be claimed now:
    another run claimed it first, or a drop of the same name is still being scored."""
    folders.processing.mkdir(parents=True, exist_ok=True)
    target = folders.processing / drop.name
    if target.exists():
        return None
    try:
        os.rename(drop, target)
    except FileNotFoundError:
        return None
    except OSError as error:
        if target.exists():  # A same-named drop was claimed between our check and the rename.
            return None
        raise OSError(f"cannot move drop {drop} into {folders.processing}: {error.strerror or error}") from error
    os.utime(target)  # The claim's time, for stale_claims.
    return target


def release(drop: Path, folders: DropFolders) -> Path:
    """Put a claimed drop back into the inbox, for a later run."""
    target = folders.inbox / drop.name
    os.rename(drop, target)
    return target


def finish(drop: Path, folders: DropFolders, failure: str | None = None) -> Path:
    """Move a claimed drop to done/ (or failed/, with the reason in _FAILED.txt); return its path.

    A name already taken there (the same drop name delivered twice) gets a time suffix.
    """
    destination = folders.failed if failure is not None else folders.done
    destination.mkdir(parents=True, exist_ok=True)
    target = destination / drop.name
    if target.exists():
        target = destination / f"{drop.name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    os.rename(drop, target)
    if failure is not None:
        # A read-only drop still moves; the run's log has the reason.
        with contextlib.suppress(OSError):
            (target / FAILURE_NOTE).write_text(failure.rstrip() + "\n")
    return target


def return_stale_claims(folders: DropFolders, config: InboxConfig, now: float | None = None) -> list[Path]:
    """Move drops whose claim went stale back to the inbox (one rename each, so one run does it)."""
    returned = []
    for drop in stale_claims(folders, config, now):
        target = folders.inbox / drop.name
        try:
            os.rename(drop, target)
        except OSError:  # Another run returned it first, or a new drop of that name arrived.
            continue
        returned.append(target)
    return returned
