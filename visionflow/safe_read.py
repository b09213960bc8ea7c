"""Reading a listed file once, safely: it cannot stall a run, flood memory or lead outside its folder.

Files are listed first and read later (hashed, then decoded), so by the time they are read they
may have been swapped: for a FIFO (a read would wait forever), for a link to a device such as
/dev/zero (a read would never end), for a link out of the folder, or for a file that keeps
growing. Every read therefore resolves the path again and checks it stays inside its root, opens
without following a final symlink and without blocking, checks the opened descriptor is a
regular file, and reads at most a byte limit.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat

# Largest block read at once, in bytes: bigger files are hashed piece by piece, so memory stays flat.
BLOCK_BYTES = 8 * 1024 * 1024


class UnsafeFile(Exception):
    """A listed file that must not be read now; the message is the rejection reason."""


def open_listed_file(path: str, root: str) -> tuple[int, int]:
    """(descriptor, size in bytes) of the file at path, which must resolve to a regular file inside
    root (an absolute, resolved folder). Raises UnsafeFile, or OSError when it cannot be opened."""
    resolved = os.path.realpath(path)
    if os.path.commonpath([resolved, root]) != root:
        raise UnsafeFile("now a link leading outside the folder it was listed in")
    try:
        descriptor = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnsafeFile("replaced by a symlink after it was listed") from None
        raise
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        os.close(descriptor)
        raise UnsafeFile("not a regular file any more: it was replaced after it was listed")
    return descriptor, status.st_size


def read_blocks(descriptor: int, size: int, limit: int):
    """Yield the file's bytes block by block, closing the descriptor at the end; raise UnsafeFile
    as soon as more than limit bytes come (the file grows while it is read)."""
    # One block of the size fstat gave (plus one byte, to see the end) reads a small file in one
    # call without allocating a large buffer for it.
    block_bytes = min(size + 1, BLOCK_BYTES)
    total = 0
    with open(descriptor, "rb", buffering=0, closefd=True) as handle:
        while block := handle.read(block_bytes):
            total += len(block)
            if total > limit:
                raise UnsafeFile(f"grew past {limit:,} bytes while it was being read")
            yield block


def sha256_of_listed_file(path: str, root: str, limit: int) -> str:
    """The sha256 hex digest of a listed file of at most limit bytes."""
    descriptor, size = open_listed_file(path, root)
    if size > limit:
        os.close(descriptor)
        raise UnsafeFile(f"file of {size:,} bytes is over the {limit:,}-byte limit for one image")
    digest = hashlib.sha256()
    for block in read_blocks(descriptor, size, limit):
        digest.update(block)
    return digest.hexdigest()


def read_listed_file(path: str, root: str, expected_bytes: int) -> bytes:
    """The bytes of a listed file whose size was expected_bytes when it was hashed; a file that
    now holds more is refused without reading the rest."""
    descriptor, size = open_listed_file(path, root)
    return b"".join(read_blocks(descriptor, size, expected_bytes))
