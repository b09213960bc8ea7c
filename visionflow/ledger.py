"""The scoring ledger: which image contents each model has scored, and what each drop holds.

A SQLite database under VISIONFLOW_HOME/ledger/scoring.sqlite with three tables:

- predictions: one row per (image sha256, model version), with the class probabilities. An
  image seen again, in the same drop or another, is looked up here instead of being scored again.
- drop_files: one row per (drop, file path, sha256, model version) that has an output row, a
  prediction or a rejection, so a drop scored again gets no duplicate rows.
- parts: the Parquet part files each drop's outputs consist of.

A part file is renamed into place first and recorded second, in one transaction together with
its drop_files and predictions rows. A run killed in between leaves a part file the ledger does
not know; the next run of that drop deletes it (see orphan_parts) and scores those files again,
so every file ends up in exactly one committed row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# Rows per SQL statement when looking many keys up at once; SQLite allows 32,766 variables.
LOOKUP_CHUNK = 900

# SQLite waits this long, in seconds, for another process's write to finish before failing.
BUSY_TIMEOUT_SECONDS = 60

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    sha256 TEXT NOT NULL,
    model_version TEXT NOT NULL,
    probabilities BLOB NOT NULL,  -- float32 values, one per class, in the model's class order
    scored_at TEXT NOT NULL,      -- ISO 8601 UTC time the model scored this content
    PRIMARY KEY (sha256, model_version)
);
CREATE TABLE IF NOT EXISTS drop_files (
    drop_name TEXT NOT NULL,
    path TEXT NOT NULL,           -- relative to the drop
    sha256 TEXT NOT NULL,         -- '' for files that could not be read
    model_version TEXT NOT NULL,
    outcome TEXT NOT NULL,        -- 'predicted' or 'rejected'
    part TEXT NOT NULL,           -- the part file holding the row
    PRIMARY KEY (drop_name, path, sha256, model_version)
);
CREATE TABLE IF NOT EXISTS parts (
    drop_name TEXT NOT NULL,
    kind TEXT NOT NULL,           -- 'predictions' or 'rejections'
    name TEXT NOT NULL,
    rows INTEGER NOT NULL,
    PRIMARY KEY (drop_name, kind, name)
);
"""


class PredictionLedger:
    """One connection to the ledger; use as a context manager, or call close()."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        # Write-ahead logging lets one process read while another commits a part.
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.executescript(SCHEMA)

    def __enter__(self) -> PredictionLedger:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._connection.close()

    def known_probabilities(self, sha256s: Iterable[str], model_version: str) -> dict[str, tuple[np.ndarray, str]]:
        """(probabilities, scored_at) of every given content this model has already scored."""
        found: dict[str, tuple[np.ndarray, str]] = {}
        unique = sorted(set(sha256s))
        for start in range(0, len(unique), LOOKUP_CHUNK):
            chunk = unique[start : start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            query = (
                "SELECT sha256, probabilities, scored_at FROM predictions "
                f"WHERE model_version = ? AND sha256 IN ({marks})"
            )
            for sha256, blob, scored_at in self._connection.execute(query, [model_version, *chunk]):
                found[sha256] = (np.frombuffer(blob, dtype=np.float32), scored_at)
        return found

    def recorded_files(self, drop_name: str, model_version: str) -> dict[tuple[str, str], str]:
        """The outcome ("predicted" or "rejected") of every (path, sha256) with a row in this drop."""
        query = "SELECT path, sha256, outcome FROM drop_files WHERE drop_name = ? AND model_version = ?"
        return {
            (path, sha256): outcome
            for path, sha256, outcome in self._connection.execute(query, (drop_name, model_version))
        }

    def accepted_count(self, drop_name: str, model_version: str) -> int:
        """How many prediction rows this drop's outputs hold for this model."""
        query = "SELECT COUNT(*) FROM drop_files WHERE drop_name = ? AND model_version = ? AND outcome = 'predicted'"
        return int(self._connection.execute(query, (drop_name, model_version)).fetchone()[0])

    def parts(self, drop_name: str, kind: str) -> set[str]:
        """Names of the committed part files of one kind for this drop."""
        query = "SELECT name FROM parts WHERE drop_name = ? AND kind = ?"
        return {name for (name,) in self._connection.execute(query, (drop_name, kind))}

    def commit_part(
        self,
        drop_name: str,
        kind: str,
        part_name: str,
        files: Sequence[tuple[str, str, str]],
        new_predictions: Sequence[tuple[str, np.ndarray, str]],
        model_version: str,
    ) -> None:
        """Record a part file that is already in place, in one transaction.

        files holds (path, sha256 or '', outcome) per row of the part; new_predictions holds
        (sha256, probabilities, scored_at) for contents the model scored for this part.
        """
        with self._transaction():
            self._connection.execute(
                "INSERT INTO parts (drop_name, kind, name, rows) VALUES (?, ?, ?, ?)",
                (drop_name, kind, part_name, len(files)),
            )
            self._connection.executemany(
                "INSERT INTO drop_files (drop_name, path, sha256, model_version, outcome, part) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(drop_name, path, sha256, model_version, outcome, part_name) for path, sha256, outcome in files],
            )
            self._connection.executemany(
                "INSERT OR IGNORE INTO predictions (sha256, model_version, probabilities, scored_at) "
                "VALUES (?, ?, ?, ?)",
                [
                    (sha256, model_version, np.asarray(probabilities, dtype=np.float32).tobytes(), scored_at)
                    for sha256, probabilities, scored_at in new_predictions
                ],
            )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")


def orphan_parts(folder: Path, committed: set[str]) -> list[Path]:
    """Part files in folder that the ledger does not know: left by a run killed mid-commit."""
    if not folder.is_dir():
        return []
    return [path for path in sorted(folder.iterdir()) if path.name not in committed]
