"""Atomic file writes: a file visionflow writes is whole or absent, never half-written.

Every writer puts the bytes under a temporary name in the target's own folder (so the final
rename stays on one file system) and renames it into place. A run killed in between leaves at
most a hidden temporary file, which the next write of the same target replaces.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; once the block has written it, rename it into place.

    durable=True flushes the file to disk before the rename, so a record of it made afterwards
    (a ledger row) never points at bytes a power cut could lose. On an error the temporary file
    is removed and the target is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield temporary
        if durable:
            with open(temporary, "rb") as written:
                os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write text (UTF-8) to path atomically; return the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomically(path: str | Path, document: Any, indent: int = 2) -> Path:
    """Write a JSON document to path atomically; values JSON cannot hold are written as text."""
    return write_text_atomically(path, json.dumps(document, indent=indent, default=str) + "\n")
