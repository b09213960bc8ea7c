"""A real full disk for tests: a small tmpfs mounted for one test, filled until only a few bytes are free.

Mounting needs root (or CAP_SYS_ADMIN); where the machine refuses, the test is skipped with the
reason, and the tests that fill the ledger up to SQLite's page limit (PRAGMA max_page_count) still
run. Each test logs which of the two made its disk full.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

log = logging.getLogger(__name__)


@contextmanager
def small_disk(folder: Path, size_kib: int) -> Iterator[Path]:
    """Mount a tmpfs of size_kib KiB at folder for the block (unmounted after it), or skip the test."""
    folder.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)]
    try:
        mounted = subprocess.run(command, capture_output=True, text=True, check=False)
        refusal = (mounted.stderr.strip() or f"exit {mounted.returncode}") if mounted.returncode else ""
    except OSError as error:  # No mount command at all.
        refusal = str(error)
    if refusal:
        pytest.skip(f"full disk by a tmpfs not tested, mount refused ({refusal}); the SQLite page-limit tests ran")
    log.info("full disk made by a real file system: a %d KiB tmpfs mounted at %s", size_kib, folder)
    try:
        yield folder
    finally:
        # Lazily: a file another thread of the test still holds open must not leave the mount behind.
        subprocess.run(["umount", "--lazy", str(folder)], capture_output=True, check=False)


def fill(folder: Path, leave_bytes: int) -> Path:
    """Fill the file system holding folder until about leave_bytes are free (tmpfs counts whole 4 KiB
    pages); return the filler file, whose removal frees the space again."""
    filler = folder / "filler"
    with open(filler, "ab") as handle:
        handle.write(bytes(max(shutil.disk_usage(folder).free - leave_bytes, 0)))
    log.info("%s filled: %d bytes free", folder, shutil.disk_usage(folder).free)
    return filler
