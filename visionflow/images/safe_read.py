"""Reading a listed file once, safely: it cannot stall a run, flood memory or lead outside its folder.

Files are listed first and read later (hashed, then decoded), so by the time they are read they
may have been swapped: for a FIFO (a read would wait forever), for a link to a device such as
/dev/zero (a read would never end), for a link out of the folder, or for a file that keeps
growing. Every read therefore opens without following a final symlink (one that listing let
through is followed only to a file inside the root) and without blocking, checks that the opened
descriptor lies inside the root and is a regular file, and reads at most a byte limit.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator

# Largest block read at once, in bytes: bigger files are hashed piece by piece, so memory stays flat.
BLOCK_BYTES = 8 * 1024 * 1024

# Read only; never follow a final symlink; never wait on a FIFO or device; not inherited by children.
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class UnsafeFile(Exception):
    """A listed file that must not be read now; the message is the rejection reason."""


def open_listed_file(path: str, root: str) -> tuple[int, int]:
    """(descriptor, size in bytes) of the file at path, which must still be a regular file inside
    root (an absolute, resolved folder). Raises UnsafeFile, or OSError when it cannot be opened."""
    try:
        descriptor = os.open(path, OPEN_FLAGS)
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
        # The path ends in a symlink: listing let it through only when it led to a file inside
        # root, so follow it once more, there and nowhere else.
        resolved = os.path.realpath(path)
        if not is_inside(resolved, root):
            raise UnsafeFile("now a link leading outside the folder it was listed in") from None
        try:
            descriptor = os.open(resolved, OPEN_FLAGS)
        except OSError as again:
            if again.errno == errno.ELOOP:
                raise UnsafeFile("replaced by a symlink after it was listed") from None
            raise
    try:
        # Where the open really landed, folders swapped for links on the way included.
        if not is_inside(opened_path(descriptor, path), root):
            raise UnsafeFile("now a link leading outside the folder it was listed in")
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise UnsafeFile("not a regular file any more: it was replaced after it was listed")
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor, status.st_size


def opened_path(descriptor: int, path: str) -> str:
    """The resolved path of an open descriptor: one readlink on Linux, else resolved from path."""
    try:
        return os.readlink(f"/proc/self/fd/{descriptor}")
    except OSError:
        return os.path.realpath(path)


def is_inside(path: str, root: str) -> bool:
    """True when the resolved path is root or lies below it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def read_blocks(descriptor: int, size: int, limit: int) -> Iterator[bytes]:
    """Yield the file's bytes block by block, closing the descriptor at the end; raise UnsafeFile
    as soon as more than limit bytes come (the file grows while it is read)."""
    # Blocks of the size fstat gave plus one byte: a small file is read in one call, without a
    # large buffer, and a read shorter than asked for is the end of a regular file.
    block_bytes = min(size + 1, BLOCK_BYTES)
    total = 0
    try:
        while block := os.read(descriptor, block_bytes):
            total += len(block)
            if total > limit:
                raise UnsafeFile(f"grew past {limit:,} bytes while it was being read")
            yield block
            if len(block) < block_bytes:
                return
    finally:
        os.close(descriptor)


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
    blocks = list(read_blocks(descriptor, size, expected_bytes))
    return blocks[0] if len(blocks) == 1 else b"".join(blocks)
