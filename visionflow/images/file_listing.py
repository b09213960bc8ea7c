"""Walk a folder tree, say for every file whether it may be read, and hash the readable ones.

Ingestion (a dataset's class folders) and scoring (an image drop) both list and hash files this
way, so both treat hidden files, symlinks, unreadable folders and oversized files alike. Nothing
found is dropped: a file or folder that must not be read comes back with the reason why.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from visionflow.images.workers import hash_files_chunk
from visionflow.parallel import chunked, map_chunks

# The status of a listed file that may be read; every other status names why it is not used.
STATUS_OK = "ok"

# Files larger than this are refused unread, in ingestion and scoring alike: 256 MiB, in bytes.
MAX_FILE_BYTES = 256 * 1024 * 1024

# The longest path, in bytes, the system opens by name (Linux: 4,096 with the final NUL). Files
# deeper than this cannot be read by path, so each is listed with this as its reason.
PATH_MAX_BYTES = os.pathconf("/", "PC_PATH_MAX") if hasattr(os, "pathconf") else 4096
TOO_LONG_REASON = f"path longer than this system's limit of {PATH_MAX_BYTES:,} bytes; move it to a shallower folder"


@dataclass(frozen=True)
class FoundFile:
    """One entry of a walk: a file to consider, or a file or folder refused with a reason."""

    path: str  # Relative to the walked root, "/"-separated; folders end in "/".
    entry: os.DirEntry | None  # The directory entry, for checking the file; None when refused.
    problem: str | None  # Why it must not be read, or None.


def walk_files(root: str) -> Iterator[FoundFile]:
    """Every file under root, depth first in name order, without following folder symlinks.

    Hidden folders, symlinked folders and unreadable folders come back as one refused entry
    each and are not entered; hidden files and names that are not valid UTF-8 come back
    refused; every other file comes back with its entry, for file_problem to check.
    """
    yield from _walk(root, "")


def _walk(folder: str, relative_folder: str) -> Iterator[FoundFile]:
    try:
        with os.scandir(folder) as iterator:
            entries = sorted(iterator, key=lambda entry: entry.name)
    except OSError as error:
        yield FoundFile(relative_folder.rstrip("/") or ".", None, f"unreadable folder: {error.strerror or error}")
        return
    for entry in entries:
        relative_path = f"{relative_folder}{entry.name}"
        if not _is_utf8(relative_path):
            yield FoundFile(_printable(relative_path), None, "file name is not valid UTF-8; rename it")
        elif entry.is_dir(follow_symlinks=False):
            if entry.name.startswith("."):
                yield FoundFile(relative_path + "/", None, "hidden folder, not entered")
            elif len(os.fsencode(entry.path)) >= PATH_MAX_BYTES - 1:
                yield from _refuse_too_deep(folder, entry.name, relative_path + "/")
            else:
                yield from _walk(entry.path, relative_path + "/")
        elif entry.is_symlink() and os.path.isdir(entry.path):
            yield FoundFile(relative_path, None, "symlinked folder, not followed")
        elif entry.name.startswith("."):
            yield FoundFile(relative_path, None, "hidden file")
        else:
            yield FoundFile(relative_path, entry, None)


def _refuse_too_deep(parent: str, name: str, relative_folder: str) -> Iterator[FoundFile]:
    """One refused entry per file under parent/name, a folder whose path is too long to open by name.

    The folder is reached through directory descriptors (open relative to its parent), which
    have no length limit, so every file in it still gets a row of its own with the reason.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        parent_descriptor = os.open(parent, flags)
        try:
            descriptor = os.open(name, flags, dir_fd=parent_descriptor)
        finally:
            os.close(parent_descriptor)
    except OSError as error:
        yield FoundFile(relative_folder.rstrip("/"), None, f"unreadable folder: {error.strerror or error}")
        return
    yield from _refuse_descriptor_tree(descriptor, relative_folder, TOO_LONG_REASON)


def _refuse_descriptor_tree(descriptor: int, relative_folder: str, reason: str) -> Iterator[FoundFile]:
    """Refused entries for every file under an open folder descriptor, which this closes."""
    try:
        with os.scandir(descriptor) as iterator:
            entries = sorted(iterator, key=lambda entry: entry.name)
        for entry in entries:
            relative_path = f"{relative_folder}{entry.name}"
            if not entry.is_dir(follow_symlinks=False) or entry.name.startswith("."):
                yield FoundFile(_printable(relative_path), None, reason)
                continue
            try:
                child = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=descriptor)
            except OSError as error:
                yield FoundFile(_printable(relative_path), None, f"unreadable folder: {error.strerror or error}")
                continue
            yield from _refuse_descriptor_tree(child, relative_path + "/", reason)
    except OSError as error:
        yield FoundFile(_printable(relative_folder.rstrip("/")), None, f"unreadable folder: {error.strerror or error}")
    finally:
        os.close(descriptor)


def _printable(relative_path: str) -> str:
    """The path as listed: names that are not valid UTF-8 are shown escaped, as _walk shows them."""
    return relative_path if _is_utf8(relative_path) else ascii(relative_path)[1:-1]


def _is_utf8(text: str) -> bool:
    """False for names that held bytes undecodable as UTF-8 (Python keeps them as surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def file_problem(
    entry: os.DirEntry, root: str, max_file_bytes: int, root_name: str = "the folder"
) -> tuple[int | None, str | None]:
    """(size in bytes, None) for a regular file that may be read, else (None, the reason).

    A symlink is followed only to check that it stays inside root (an absolute, resolved path);
    root_name is how the reason names root to a person ("the data root", "the drop").
    """
    if entry.is_symlink():
        try:
            target = os.path.realpath(entry.path)
        except OSError as error:  # A link that cannot be followed is one rejected entry, not a failed listing.
            return None, f"unreadable symlink: {error.strerror or error}"
        if os.path.commonpath([target, root]) != root:
            return None, f"symlink leading outside {root_name}"
    try:
        status = entry.stat()
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:
            return None, TOO_LONG_REASON
        return None, f"unreadable: {error.strerror or error}"
    if not stat.S_ISREG(status.st_mode):
        return None, "not a regular file"
    if status.st_size > max_file_bytes:
        return None, f"file of {status.st_size:,} bytes is over the {max_file_bytes:,}-byte limit for one image"
    return status.st_size, None


def hash_files(
    files: pd.DataFrame, root: Path, workers: int, files_per_chunk: int, max_file_bytes: int, failed_status: str
) -> pd.DataFrame:
    """Fill in the sha256 of every row whose status is still "ok", hashing on worker processes.

    files has a `path` column relative to root. A file that cannot be read safely (see
    visionflow/images/safe_read.py), or is over max_file_bytes by now, gets failed_status and the reason.
    Returns a copy; the input frame is left as it was.
    """
    files = files.copy()
    readable = files.index[files["status"] == STATUS_OK]
    root_text = str(Path(root).resolve())
    paths = [f"{root_text}/{path}" for path in files.loc[readable, "path"]]
    chunks = chunked(paths, files_per_chunk)
    digests: list = [None] * len(chunks)
    for index, result in map_chunks(hash_files_chunk, chunks, workers, (root_text, max_file_bytes)):
        digests[index] = result
    flat = [item for chunk in digests for item in chunk]
    files.loc[readable, "sha256"] = [digest for digest, _ in flat]
    errors = pd.Series([error for _, error in flat], index=readable)
    failed = errors[errors.notna()].index
    files.loc[failed, "status"] = failed_status
    files.loc[failed, "reason"] = errors[failed]
    return files
