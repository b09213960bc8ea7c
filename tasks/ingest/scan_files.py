"""Stage 1 of ingestion: find every file under a data root and fingerprint its content.

The result is the start of the raw manifest, one row per file found. Files that must not be
read (hidden files, symlinks that leave the root, things that are not regular files, files
outside any class folder) are listed as quarantined with a reason rather than dropped, so a
person can always see what happened to each file.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from visionflow.errors import BadInputError
from visionflow.images.file_listing import MAX_FILE_BYTES, STATUS_OK, file_problem, hash_files, walk_files
from visionflow.parallel import default_workers
from visionflow.run_context import run_logger

# Folder names (compared case-insensitively) that mark a source which is already split, and the
# split each stands for; in such a source every other top-level folder is outside the data.
SPLIT_FOLDER_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}

# Manifest status values: "ok" rows go on to decoding, "quarantined" rows are never read again.
STATUS_QUARANTINED = "quarantined"

MANIFEST_SCAN_COLUMNS = ["path", "class_name", "source_split", "bytes", "sha256", "status", "reason"]


class ScanConfig(BaseModel):
    """How stage 1 walks and hashes a data root."""

    workers: int = Field(default_factory=default_workers, ge=1)  # Processes that hash files.
    files_per_chunk: int = Field(default=4096, ge=1)  # Files one worker hashes per task.
    max_file_bytes: int = Field(default=MAX_FILE_BYTES, ge=1)  # Larger files are quarantined, unread.


def detect_layout(root: Path) -> str:
    """Return "split" when a top-level folder is named train, val, validation or test (any case),
    for root/<split>/<class>/...; else "flat", for root/<class>/..."""
    top_folders = {entry.name.lower() for entry in root.iterdir() if entry.is_dir() and not entry.is_symlink()}
    return "split" if top_folders & set(SPLIT_FOLDER_NAMES) else "flat"


def discover_files(root: Path, max_file_bytes: int = ScanConfig().max_file_bytes) -> pd.DataFrame:
    """List every file under root with its class, source split and a first status.

    Nothing is read here. Symlinks are resolved only to check that they stay inside root;
    folder symlinks and hidden folders are listed as one row each and never entered.
    """
    root = Path(root).resolve()
    layout = detect_layout(root)
    rows: list[dict] = []
    _walk(str(root), layout, max_file_bytes, rows)
    manifest = pd.DataFrame(rows, columns=MANIFEST_SCAN_COLUMNS)
    manifest["bytes"] = manifest["bytes"].astype("Int64")
    return manifest


def _walk(root: str, layout: str, max_file_bytes: int, rows: list[dict]) -> None:
    """One row per file found, with its class and split read from the folders above it."""
    for found in walk_files(root):
        parts = found.path.split("/")
        source_split = SPLIT_FOLDER_NAMES.get(parts[0].lower()) if layout == "split" and len(parts) > 1 else None
        if found.problem is not None:
            rows.append(_quarantined_row(found.path, found.problem, source_split))
        else:
            rows.append(_describe_file(found.entry, found.path, parts, source_split, layout, root, max_file_bytes))


def _describe_file(
    entry: os.DirEntry, relative_path: str, parts: list[str], source_split: str | None, layout: str, root: str,
    max_file_bytes: int,
) -> dict:  # fmt: skip
    """One manifest row for one file, quarantined if it must not be read."""
    class_parts = parts[1:] if layout == "split" else parts
    if layout == "split" and source_split is None:
        return _quarantined_row(relative_path, "outside the train/val/test folders")
    if len(class_parts) < 2:
        return _quarantined_row(relative_path, "not inside a class folder", source_split)
    class_name = class_parts[0]
    size, problem = file_problem(entry, root, max_file_bytes, "the data root")
    if problem is not None:
        return _quarantined_row(relative_path, problem, source_split, class_name)
    return {
        "path": relative_path,
        "class_name": class_name,
        "source_split": source_split,
        "bytes": size,
        "sha256": None,
        "status": STATUS_OK,
        "reason": None,
    }


def _quarantined_row(
    relative_path: str, reason: str, source_split: str | None = None, class_name: str | None = None
) -> dict:
    return {
        "path": relative_path,
        "class_name": class_name,
        "source_split": source_split,
        "bytes": None,
        "sha256": None,
        "status": STATUS_QUARANTINED,
        "reason": reason,
    }


def scan_dataset(root: Path, config: ScanConfig) -> pd.DataFrame:
    """Discover and hash every file under root. Raises BadInputError for an unusable root."""
    root = Path(root)
    if not root.exists():
        raise BadInputError(f"data folder {root} does not exist: check the path given to --data")
    if not root.is_dir():
        raise BadInputError(f"{root} is a file, not a folder: --data takes a folder of class folders")
    try:
        discovered = discover_files(root, config.max_file_bytes)
    except OSError as error:
        raise BadInputError(f"cannot read data folder {root}: {error.strerror or error}") from None
    manifest = hash_files(
        discovered, root, config.workers, config.files_per_chunk, config.max_file_bytes, STATUS_QUARANTINED
    )
    if not (manifest["status"] == STATUS_OK).any():
        raise BadInputError(
            f"no usable files under {root}: expected images in {root}/<class>/ "
            f"or {root}/train/<class>/ and {root}/test/<class>/"
        )
    return manifest


def content_fingerprint(manifest: pd.DataFrame) -> str:
    """A sha256 over every file's relative path and content digest, in path order.

    Renaming, moving, adding, removing or editing any file changes it; touching a file
    without changing its bytes does not.
    """
    digest = hashlib.sha256()
    ordered = manifest.sort_values("path")
    for path, sha256, status in zip(ordered["path"], ordered["sha256"], ordered["status"], strict=True):
        digest.update(f"{path}\0{sha256 if isinstance(sha256, str) else status}\n".encode())
    return digest.hexdigest()


@task(name="scan-files", cache_policy=NO_CACHE)
def scan_files_task(root: Path, config: ScanConfig) -> pd.DataFrame:
    """Prefect task: scan_dataset with a log line a person can read."""
    log = run_logger(__name__)
    started = time.perf_counter()
    manifest = scan_dataset(root, config)
    quarantined = int((manifest["status"] != STATUS_OK).sum())
    log.info(
        "found %d files under %s in %.1f s: %d to decode, %d quarantined",
        len(manifest),
        root,
        time.perf_counter() - started,
        len(manifest) - quarantined,
        quarantined,
    )
    return manifest
