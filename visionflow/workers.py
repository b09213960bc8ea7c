"""Per-chunk functions that run inside worker processes: hashing, and decoding for ingestion and scoring.

Kept apart from the stage modules so that a spawned worker imports only Pillow, NumPy and
pyarrow, not pandas, Prefect or TensorFlow (which would add seconds to every worker's start).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import pyarrow as pa

from visionflow.atomic import atomic_path
from visionflow.imaging import ImageRejected, ImageSpec, decode_image

# Files larger than this are hashed in pieces so that memory stays flat; 8 MiB, in bytes.
HASH_BLOCK_BYTES = 8 * 1024 * 1024


def hash_files_chunk(paths: Sequence[str]) -> list[tuple[str | None, str | None]]:
    """Return (sha256 hex digest, error) for each path; exactly one of the two is None."""
    results: list[tuple[str | None, str | None]] = []
    for path in paths:
        try:
            results.append((sha256_of_file(path), None))
        except OSError as error:
            results.append((None, f"unreadable: {error.strerror or error}"))
    return results


def sha256_of_file(path: str) -> str:
    """The sha256 hex digest of a file's bytes, read in blocks."""
    with open(path, "rb", buffering=0) as handle:
        if os.fstat(handle.fileno()).st_size <= HASH_BLOCK_BYTES:
            # Most image files fit in one read, several times faster than hashing in blocks.
            return hashlib.sha256(handle.readall()).hexdigest()
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_unchanged(path: str, expected_sha256: str, activity: str) -> tuple[bytes | None, str | None]:
    """(the file's bytes, None), or (None, the reason) when it cannot be read or no longer has the
    content its sha256 was taken of (it changed while being ingested or scored, as activity says)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        return None, f"unreadable: {error.strerror or error}"
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        return None, f"file changed while it was being {activity}"
    return data, None


def decode_files_chunk(
    rows: Sequence[tuple[int, str, str]], spec: ImageSpec, shard_path: str
) -> list[tuple[int, str | None, int | None, int | None, str | None, str | None]]:
    """Decode (row id, absolute path, expected sha256) rows; write pixels of good ones to a shard.

    The shard is an Arrow IPC file with columns row_id and pixels. The return value has one
    (row id, format, width, height, mode, rejection reason) tuple per input row, where the reason
    is None for images that decoded. A file whose bytes no longer match the sha256 recorded by
    the scan is rejected: it changed while the dataset was being ingested.
    """
    outcomes = []
    good_ids: list[int] = []
    good_pixels: list[bytes] = []
    for row_id, path, expected_sha256 in rows:
        data, problem = read_unchanged(path, expected_sha256, "ingested")
        if problem is not None:
            outcomes.append((row_id, None, None, None, None, problem))
            continue
        try:
            decoded = decode_image(data, spec)
        except ImageRejected as rejection:
            outcomes.append((row_id, None, None, None, None, str(rejection)))
            continue
        good_ids.append(row_id)
        good_pixels.append(decoded.pixels)
        outcomes.append((row_id, decoded.format, decoded.width, decoded.height, decoded.mode, None))
    _write_pixel_shard(shard_path, good_ids, good_pixels, spec.pixel_bytes)
    return outcomes


def _write_pixel_shard(shard_path: str, row_ids: list[int], pixels: list[bytes], pixel_bytes: int) -> None:
    """Write an Arrow IPC shard atomically: a temporary name first, then a rename."""
    table = pa.table(
        {
            "row_id": pa.array(row_ids, type=pa.int64()),
            "pixels": pa.array(pixels, type=pa.binary(pixel_bytes)),
        }
    )
    with (
        atomic_path(shard_path) as temporary,
        pa.OSFile(str(temporary), "wb") as sink,
        pa.ipc.new_file(sink, table.schema) as writer,
    ):
        writer.write_table(table)


def decode_chunk_to_shard(chunk_and_shard: tuple[Sequence[tuple[int, str, str]], str], spec: ImageSpec) -> list:
    """decode_files_chunk for a (rows, shard path) pair, the form map_chunks hands out."""
    rows, shard_path = chunk_and_shard
    return decode_files_chunk(rows, spec, shard_path)


def decode_for_scoring(rows: Sequence[tuple[str, str]], spec: ImageSpec) -> list[tuple[str, bytes | None, str | None]]:
    """Decode (absolute path, expected sha256) rows of a drop; (sha256, pixels, rejection) each.

    Exactly one of pixels and rejection is None. A file whose bytes no longer match the sha256
    taken when the drop was listed is rejected: it changed while the drop was being scored.
    """
    outcomes: list[tuple[str, bytes | None, str | None]] = []
    for path, expected_sha256 in rows:
        data, problem = read_unchanged(path, expected_sha256, "scored")
        if problem is not None:
            outcomes.append((expected_sha256, None, problem))
            continue
        try:
            outcomes.append((expected_sha256, decode_image(data, spec).pixels, None))
        except ImageRejected as rejection:
            outcomes.append((expected_sha256, None, str(rejection)))
    return outcomes
