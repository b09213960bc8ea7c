"""Per-chunk functions that run inside worker processes: hashing, and decoding for ingestion and scoring.

Every file is read through visionflow/images/safe_read.py, so a file swapped after listing cannot stall or
flood a worker.

Kept apart from the stage modules so that a spawned worker imports only Pillow, NumPy and
pyarrow, not pandas, Prefect or TensorFlow (which would add seconds to every worker's start).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pyarrow as pa

from visionflow.atomic import atomic_path
from visionflow.images.imaging import ImageRejected, ImageSpec, decode_image
from visionflow.images.safe_read import UnsafeFile, read_listed_file, sha256_of_listed_file


def hash_files_chunk(paths: Sequence[str], root: str, max_bytes: int) -> list[tuple[str | None, str | None]]:
    """Return (sha256 hex digest, error) for each path under root; exactly one of the two is None."""
    results: list[tuple[str | None, str | None]] = []
    for path in paths:
        try:
            results.append((sha256_of_listed_file(path, root, max_bytes), None))
        except UnsafeFile as refusal:
            results.append((None, str(refusal)))
        except OSError as error:
            results.append((None, f"unreadable: {error.strerror or error}"))
    return results


def read_unchanged(
    path: str, root: str, expected_sha256: str, expected_bytes: int, activity: str
) -> tuple[bytes | None, str | None]:
    """(the file's bytes, None), or (None, the reason) when it cannot be read safely or no longer has
    the content its sha256 was taken of (it changed while being ingested or scored, as activity says)."""
    try:
        data = read_listed_file(path, root, expected_bytes)
    except UnsafeFile as refusal:
        return None, f"{refusal} (while it was being {activity})"
    except OSError as error:
        return None, f"unreadable: {error.strerror or error}"
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        return None, f"file changed while it was being {activity}"
    return data, None


def decode_files_chunk(
    rows: Sequence[tuple[int, str, str, int]], spec: ImageSpec, shard_path: str, root: str
) -> tuple[list[tuple[int, str | None, int | None, int | None, str | None, str | None]], str]:
    """Decode (row id, absolute path under root, expected sha256, bytes) rows; write the pixels of
    good ones to a shard.

    The shard is an Arrow IPC file with columns row_id and pixels. The return value is the list
    of one (row id, format, width, height, mode, rejection reason) tuple per input row, where the
    reason is None for images that decoded, and the sha256 of the shard file's bytes.
    """
    outcomes, good_ids, good_pixels = decode_rows(rows, spec, root)
    return outcomes, write_pixel_shard(shard_path, good_ids, good_pixels, spec.pixel_bytes)


def decode_rows(
    rows: Sequence[tuple[int, str, str, int]], spec: ImageSpec, root: str
) -> tuple[list[tuple[int, str | None, int | None, int | None, str | None, str | None]], list[int], list[bytes]]:
    """Decode (row id, absolute path under root, expected sha256, bytes) rows: (one outcome per row as
    decode_files_chunk returns them, the row ids that decoded, their pixels).

    A file whose bytes no longer match the sha256 recorded by the scan is rejected: it changed
    while the dataset was being ingested. This is also one ingest shard on a Dask worker, which
    returns the pixels for the flow process to write.
    """
    outcomes = []
    good_ids: list[int] = []
    good_pixels: list[bytes] = []
    for row_id, path, expected_sha256, expected_bytes in rows:
        data, problem = read_unchanged(path, root, expected_sha256, expected_bytes, "ingested")
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
    return outcomes, good_ids, good_pixels


def write_pixel_shard(shard_path: str, row_ids: list[int], pixels: list[bytes], pixel_bytes: int) -> str:
    """Write an Arrow IPC shard atomically (a temporary name first, then a rename); return the
    sha256 of its bytes, against which a later reuse of the shard is checked."""
    table = pa.table(
        {
            "row_id": pa.array(row_ids, type=pa.int64()),
            "pixels": pa.array(pixels, type=pa.binary(pixel_bytes)),
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    data = sink.getvalue()
    with atomic_path(shard_path) as temporary:
        temporary.write_bytes(memoryview(data))
    return hashlib.sha256(memoryview(data)).hexdigest()


def decode_chunk_to_shard(
    chunk_and_shard: tuple[Sequence[tuple[int, str, str, int]], str], spec: ImageSpec, root: str
) -> tuple[list, str]:
    """decode_files_chunk for a (rows, shard path) pair, the form map_chunks hands out: (outcomes,
    the shard's sha256)."""
    rows, shard_path = chunk_and_shard
    return decode_files_chunk(rows, spec, shard_path, root)


def decode_for_scoring(
    rows: Sequence[tuple[str, str, int]], spec: ImageSpec, root: str
) -> list[tuple[str, bytes | None, str | None]]:
    """Decode (absolute path under root, expected sha256, bytes) rows of a drop; (sha256, pixels,
    rejection) each.

    Exactly one of pixels and rejection is None. A file whose bytes no longer match the sha256
    taken when the drop was listed is rejected: it changed while the drop was being scored.
    """
    outcomes: list[tuple[str, bytes | None, str | None]] = []
    for path, expected_sha256, expected_bytes in rows:
        data, problem = read_unchanged(path, root, expected_sha256, expected_bytes, "scored")
        if problem is not None:
            outcomes.append((expected_sha256, None, problem))
            continue
        try:
            outcomes.append((expected_sha256, decode_image(data, spec).pixels, None))
        except ImageRejected as rejection:
            outcomes.append((expected_sha256, None, str(rejection)))
    return outcomes
