"""The scoring ledger: which image contents each model has scored, and what each drop holds.

A SQLite database under VISIONFLOW_HOME/ledger/scoring.sqlite with four tables:

- predictions: one row per (image sha256, model version), with the class probabilities. An
  image seen again, in the same drop or another, is looked up here instead of being scored again.
- drop_files: one row per (drop, file path, sha256, model version) that has an output row, a
  prediction or a rejection, so a drop scored again gets no duplicate rows.
- parts: the Parquet part files each drop's outputs consist of, each "pending" or "committed".
- reservations: the contents a run is predicting right now, so that a run scoring another drop
  with the same images waits for their rows instead of predicting them again.

A part is reserved (recorded as pending) before its file is written, renamed into place second,
and committed third, in one transaction together with its drop_files and predictions rows. A run
killed in between leaves a pending part: the next run of that drop deletes it and scores those
files again, so every file ends up in exactly one committed row. A part file the ledger does not
know at all (the ledger was lost or replaced) was renamed into place whole, so it is adopted: its
rows are read back into the ledger, and nothing written is ever deleted for want of a record.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from visionflow.errors import DamagedStateError, NoSpaceError

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
    state TEXT NOT NULL DEFAULT 'committed',  -- 'pending' from reservation until its rows are committed
    PRIMARY KEY (drop_name, kind, name)
);
CREATE TABLE IF NOT EXISTS reservations (
    sha256 TEXT NOT NULL,
    model_version TEXT NOT NULL,
    owner TEXT NOT NULL,          -- host:pid:token of the run predicting this content
    reserved_at REAL NOT NULL,    -- seconds since the epoch
    PRIMARY KEY (sha256, model_version)
);
"""

# A reservation held by a run on another host counts as abandoned after this long, in seconds;
# on this host, a reservation counts as abandoned as soon as its process is gone.
RESERVATION_STALE_SECONDS = 3600.0

PENDING = "pending"
COMMITTED = "committed"


class PredictionLedger:
    """One connection to the ledger; use as a context manager, or call close()."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        with self._explained():
            # Write-ahead logging lets one process read while another commits a part.
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=NORMAL")
            self._connection.executescript(SCHEMA)
            columns = {row[1] for row in self._connection.execute("PRAGMA table_info(parts)")}
            if "state" not in columns:  # A ledger written before parts had states: all were committed.
                self._connection.execute(f"ALTER TABLE parts ADD COLUMN state TEXT NOT NULL DEFAULT '{COMMITTED}'")

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
            for sha256, blob, scored_at in self._rows(query, [model_version, *chunk]):
                found[sha256] = (np.frombuffer(blob, dtype=np.float32), scored_at)
        return found

    def recorded_files(self, drop_name: str, model_version: str) -> dict[tuple[str, str], str]:
        """The outcome ("predicted" or "rejected") of every (path, sha256) with a row in this drop."""
        query = "SELECT path, sha256, outcome FROM drop_files WHERE drop_name = ? AND model_version = ?"
        return {(path, sha256): outcome for path, sha256, outcome in self._rows(query, (drop_name, model_version))}

    def accepted_count(self, drop_name: str, model_version: str) -> int:
        """How many prediction rows this drop's outputs hold for this model."""
        query = "SELECT COUNT(*) FROM drop_files WHERE drop_name = ? AND model_version = ? AND outcome = 'predicted'"
        return int(self._rows(query, (drop_name, model_version))[0][0])

    def parts(self, drop_name: str, kind: str, state: str = COMMITTED) -> set[str]:
        """Names of this drop's part files of one kind in one state (committed, or pending)."""
        query = "SELECT name FROM parts WHERE drop_name = ? AND kind = ? AND state = ?"
        return {name for (name,) in self._rows(query, (drop_name, kind, state))}

    def reserve_part(self, drop_name: str, kind: str, part_name: str) -> None:
        """Record a part as pending before its file is written, so a run killed before the commit
        leaves a part that is provably uncommitted."""
        with self._transaction():
            self._connection.execute(
                "INSERT INTO parts (drop_name, kind, name, rows, state) VALUES (?, ?, ?, 0, ?)",
                (drop_name, kind, part_name, PENDING),
            )

    def reserve_contents(self, sha256s: Iterable[str], model_version: str, owner: str) -> set[str]:
        """Reserve for owner the contents no live run has reserved; return all that owner now holds.

        A run predicts only the contents it holds, so two runs scoring drops that share images
        never predict one twice: the other run takes those rows from the ledger once they are
        committed. Reservations of runs that are gone are taken over.
        """
        unique = sorted(set(sha256s))
        held: set[str] = set()
        now = time.time()
        with self._transaction():
            for start in range(0, len(unique), LOOKUP_CHUNK):
                chunk = unique[start : start + LOOKUP_CHUNK]
                self._connection.executemany(
                    "INSERT OR IGNORE INTO reservations (sha256, model_version, owner, reserved_at) "
                    "VALUES (?, ?, ?, ?)",
                    [(sha256, model_version, owner, now) for sha256 in chunk],
                )
                marks = ",".join("?" * len(chunk))
                query = (
                    "SELECT sha256, owner, reserved_at FROM reservations "
                    f"WHERE model_version = ? AND sha256 IN ({marks})"
                )
                for sha256, holder, reserved_at in self._connection.execute(query, [model_version, *chunk]):
                    if holder != owner and not owner_gone(holder, reserved_at, now):
                        continue
                    if holder != owner:
                        self._connection.execute(
                            "UPDATE reservations SET owner = ?, reserved_at = ? WHERE sha256 = ? AND model_version = ?",
                            (owner, now, sha256, model_version),
                        )
                    held.add(sha256)
        return held

    def release_contents(self, owner: str) -> None:
        """Drop every reservation of owner (its run has committed or given up on those contents)."""
        with self._transaction():
            self._connection.execute("DELETE FROM reservations WHERE owner = ?", (owner,))

    def forget_part(self, drop_name: str, kind: str, part_name: str) -> None:
        """Remove a pending part's record, once its file is gone."""
        with self._transaction():
            self._connection.execute(
                "DELETE FROM parts WHERE drop_name = ? AND kind = ? AND name = ? AND state = ?",
                (drop_name, kind, part_name, PENDING),
            )

    def commit_part(
        self,
        drop_name: str,
        kind: str,
        part_name: str,
        files: Sequence[tuple[str, str, str]],
        new_predictions: Sequence[tuple[str, np.ndarray, str]],
        model_version: str,
        adopt: bool = False,
    ) -> None:
        """Record a part file that is already in place, in one transaction.

        files holds (path, sha256 or '', outcome) per row of the part; new_predictions holds
        (sha256, probabilities, scored_at) for contents the model scored for this part. adopt=True
        takes in a part the ledger never knew (read back from its file): rows the ledger already
        holds are kept as they are instead of being refused as duplicates.
        """
        insert = "INSERT OR IGNORE" if adopt else "INSERT"
        with self._transaction():
            self._connection.execute(
                "INSERT INTO parts (drop_name, kind, name, rows, state) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (drop_name, kind, name) DO UPDATE SET rows = excluded.rows, state = excluded.state",
                (drop_name, kind, part_name, len(files), COMMITTED),
            )
            self._connection.executemany(
                f"{insert} INTO drop_files (drop_name, path, sha256, model_version, outcome, part) "
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

    def _rows(self, query: str, parameters: Sequence) -> list[tuple]:
        """All rows of a read, with errors about the file itself explained."""
        with self._explained():
            return self._connection.execute(query, parameters).fetchall()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error; the error raised is the one that
        happened, never a failed rollback's (SQLite may already have rolled back a full disk)."""
        with self._explained():
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self._connection.in_transaction:
                    self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    @contextmanager
    def _explained(self) -> Iterator[None]:
        """Turn SQLite's errors about the file itself into errors that say where it is and what to do."""
        try:
            yield
        except sqlite3.DatabaseError as error:
            raise ledger_error(self.path, error) from error


def ledger_error(path: Path, error: sqlite3.DatabaseError) -> Exception:
    """A full disk or a damaged file as an error a person can act on; any other error as it was."""
    text = str(error)
    if "full" in text:
        return NoSpaceError(
            f"the disk holding the scoring ledger {path} is full ({text}); free some space and run the same "
            "command again: parts committed before are kept, and the rest is scored then"
        )
    if any(sign in text for sign in ("not a database", "malformed", "disk image", "encrypted")):
        return DamagedStateError(
            f"the scoring ledger {path} is damaged ({text}); move it aside (mv {path} {path}.damaged) and run "
            "the same command again: the ledger is rebuilt from each drop's Parquet parts as drops are scored"
        )
    return error


def reservation_owner() -> str:
    """A name for this run's reservations: host, process id and a token of its own."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def owner_gone(owner: str, reserved_at: float, now: float) -> bool:
    """True when the run that holds a reservation has ended: its process is gone (this host), or
    the reservation is older than RESERVATION_STALE_SECONDS (another host)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return now - reserved_at > RESERVATION_STALE_SECONDS


def part_files(folder: Path) -> list[Path]:
    """The part files in a drop's output folder, temporary files of unfinished writes included."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.is_file())
