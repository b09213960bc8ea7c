"""Scoring stage 1: list every file of an image drop and fingerprint the readable ones.

A drop is any folder of files, nested as deep as people nest them. Every file found becomes a
row: "ok" rows (readable regular files, with their sha256) go on to decoding; every other row
is a rejection with its reason (hidden, symlink leading outside the drop, unreadable, too large,
a name that is not UTF-8). Folders are walked whatever their names, "photo.jpg/" included.
The drop's readiness marker (_READY at its top) and failure note (_FAILED.txt) are signals about
the drop, not inputs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from visionflow.errors import BadInputError
from visionflow.images.file_listing import MAX_FILE_BYTES, STATUS_OK, file_problem, hash_files, walk_files
from visionflow.ledger.inbox import CONTROL_FILES
from visionflow.parallel import default_workers
from visionflow.run_context import run_logger

STATUS_REJECTED = "rejected"
DROP_COLUMNS = ["path", "bytes", "sha256", "status", "reason"]


class DropScanConfig(BaseModel):
    """How a drop is listed and hashed."""

    workers: int = Field(default_factory=default_workers, ge=1)  # Processes that hash files.
    files_per_chunk: int = Field(default=2048, ge=1)  # Files one worker hashes per task.
    max_file_bytes: int = Field(default=MAX_FILE_BYTES, ge=1)  # Larger files are rejected unread, in bytes.


def discover_drop_files(drop: Path, max_file_bytes: int) -> pd.DataFrame:
    """One row per file under drop (no content read): path, bytes, status and reason."""
    root = str(drop.resolve())
    rows = []
    for found in walk_files(root):
        if found.path in CONTROL_FILES:
            continue
        if found.problem is not None:
            rows.append((found.path, None, None, STATUS_REJECTED, found.problem))
            continue
        size, problem = file_problem(found.entry, root, max_file_bytes, "the drop")
        status = STATUS_OK if problem is None else STATUS_REJECTED
        rows.append((found.path, size, None, status, problem))
    frame = pd.DataFrame(rows, columns=DROP_COLUMNS)
    frame["bytes"] = frame["bytes"].astype("Int64")
    return frame


def list_drop_files(drop: Path, config: DropScanConfig) -> pd.DataFrame:
    """Every file of the drop with its sha256 (readable files) or rejection reason.

    Raises BadInputError when the drop is missing, not a folder, unreadable or holds no files.
    """
    drop = Path(drop)
    if not drop.exists():
        raise BadInputError(f"drop folder {drop} does not exist: check the path given to `visionflow score`")
    if not drop.is_dir():
        raise BadInputError(f"{drop} is a file, not a folder: a drop is a folder of images (nested folders welcome)")
    try:
        files = discover_drop_files(drop, config.max_file_bytes)
    except OSError as error:
        raise BadInputError(f"cannot read drop folder {drop}: {error.strerror or error}") from None
    if files.empty:
        raise BadInputError(f"drop folder {drop} is empty: put the images to score in it")
    return hash_files(files, drop, config.workers, config.files_per_chunk, config.max_file_bytes, STATUS_REJECTED)


@task(name="list-drop-files", cache_policy=NO_CACHE)
def list_drop_files_task(drop: Path, config: DropScanConfig) -> pd.DataFrame:
    """Prefect task: list_drop_files with a log line a person can read."""
    log = run_logger(__name__)
    started = time.perf_counter()
    files = list_drop_files(Path(drop), config)
    rejected = int((files["status"] != STATUS_OK).sum())
    log.info(
        "found %d files in drop %s in %.1f s: %d to score, %d rejected before decoding",
        len(files),
        drop,
        time.perf_counter() - started,
        len(files) - rejected,
        rejected,
    )
    return files
