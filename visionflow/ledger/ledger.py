"""The scoring ledger: which image contents each model has scored, and what each drop holds.

A database with four tables (visionflow/ledger/store.py): the SQLite file
VISIONFLOW_HOME/ledger/scoring.sqlite by default, or a PostgreSQL database that the runs of a
team share (VISIONFLOW_LEDGER_URL; see HomeLayout.ledger_url):

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

Writes are transactions: BEGIN IMMEDIATE on SQLite, so one process writes at a time; READ
COMMITTED on PostgreSQL, where reserving and releasing contents (and creating the tables) also
take a transaction-wide advisory lock, so two runs reserving at once never both hold one content.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from visionflow.ledger.statements import LOOKUP_CHUNK, DriverStatement, ledger_statements, lookup_values
from visionflow.ledger.store import (
    SQLITE,
    create_schema,
    drop_files,
    ledger_error,
    ledger_url,
    open_engine,
    parts,
    reservations,
)

# A reservation held by a run on another host counts as abandoned after this long, in seconds;
# on this host, a reservation counts as abandoned as soon as its process is gone.
RESERVATION_STALE_SECONDS = 3600.0

# The PostgreSQL advisory lock (any 64-bit number no other application on the database uses) that
# makes reserving contents one run at a time, as SQLite's BEGIN IMMEDIATE does: "vflw-rsv".
RESERVATION_LOCK = 0x76666C772D727376

PENDING = "pending"
COMMITTED = "committed"


class PredictionLedger:
    """One connection to the ledger at a location (a SQLite file's Path, or a database URL); use
    as a context manager, or call close()."""

    def __init__(self, location: str | Path) -> None:
        self.url = ledger_url(location)
        self._sqlite = self.url.get_backend_name() == SQLITE
        self._engine = open_engine(self.url)
        self._statements = ledger_statements(self._engine)
        with self._explained(opening=True):
            self._connection = self._engine.connect()
        try:
            # Under the writers' lock, so that runs opening a new ledger at once create it once.
            with self._transaction(exclusive=True) as connection:
                create_schema(connection)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> PredictionLedger:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if hasattr(self, "_connection"):
            self._connection.close()
        self._engine.dispose()

    def known_probabilities(self, sha256s: Iterable[str], model_version: str) -> dict[str, tuple[np.ndarray, str]]:
        """(probabilities, scored_at) of every given content this model has already scored."""
        found: dict[str, tuple[np.ndarray, str]] = {}
        unique = sorted(set(sha256s))
        for start in range(0, len(unique), LOOKUP_CHUNK):
            values = lookup_values(unique[start : start + LOOKUP_CHUNK], model_version)
            for sha256, blob, scored_at in self._rows(self._statements.find_predictions, values):
                found[sha256] = (np.frombuffer(blob, dtype=np.float32), scored_at)
        return found

    def recorded_files(self, drop_name: str, model_version: str) -> dict[tuple[str, str], str]:
        """The outcome ("predicted" or "rejected") of every (path, sha256) with a row in this drop."""
        rows = self._rows(self._statements.find_files, (drop_name, model_version))
        return {(path, sha256): outcome for path, sha256, outcome in rows}

    def accepted_count(self, drop_name: str, model_version: str) -> int:
        """How many prediction rows this drop's outputs hold for this model."""
        columns = drop_files.c
        query = select(func.count()).where(
            columns.drop_name == drop_name, columns.model_version == model_version, columns.outcome == "predicted"
        )
        return int(self._rows(query)[0][0])

    def parts(self, drop_name: str, kind: str, state: str = COMMITTED) -> set[str]:
        """Names of this drop's part files of one kind in one state (committed, or pending)."""
        columns = parts.c
        query = select(columns.name).where(columns.drop_name == drop_name, columns.kind == kind, columns.state == state)
        return {name for (name,) in self._rows(query)}

    def reserve_part(self, drop_name: str, kind: str, part_name: str) -> None:
        """Record a part as pending before its file is written, so a run killed before the commit
        leaves a part that is provably uncommitted."""
        with self._transaction() as connection:
            self._run(connection, self._statements.add_part, (drop_name, kind, part_name, 0, PENDING))

    def reserve_contents(self, sha256s: Iterable[str], model_version: str, owner: str) -> set[str]:
        """Reserve for owner the contents no live run has reserved; return all that owner now holds.

        A run predicts only the contents it holds, so two runs scoring drops that share images
        never predict one twice: the other run takes those rows from the ledger once they are
        committed. Reservations of runs that are gone are taken over.
        """
        unique = sorted(set(sha256s))
        held: set[str] = set()
        now = time.time()
        with self._transaction(exclusive=True) as connection:
            for start in range(0, len(unique), LOOKUP_CHUNK):
                chunk = unique[start : start + LOOKUP_CHUNK]
                rows = [(sha256, model_version, owner, now) for sha256 in chunk]
                self._run(connection, self._statements.add_reservations, rows)
                found = self._run(connection, self._statements.find_reservations, lookup_values(chunk, model_version))
                abandoned: dict[str, list[str]] = {}
                for sha256, holder, reserved_at in found.all():
                    if holder == owner:
                        held.add(sha256)
                    elif owner_gone(holder, reserved_at, now):
                        abandoned.setdefault(holder, []).append(sha256)
                for holder, contents in abandoned.items():
                    held |= _take_over(connection, contents, model_version, holder, owner, now)
        return held

    def release_contents(self, owner: str) -> None:
        """Drop every reservation of owner (its run has committed or given up on those contents)."""
        # Under the reservations' lock: a run taking over these rows meanwhile would otherwise wait
        # for this one while it waits for that run, a deadlock on PostgreSQL.
        with self._transaction(exclusive=True) as connection:
            connection.execute(delete(reservations).where(reservations.c.owner == owner))

    def forget_part(self, drop_name: str, kind: str, part_name: str) -> None:
        """Remove a pending part's record, once its file is gone."""
        columns = parts.c
        wanted = (columns.drop_name == drop_name, columns.kind == kind, columns.name == part_name)
        with self._transaction() as connection:
            connection.execute(delete(parts).where(*wanted, columns.state == PENDING))

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
        statements = self._statements
        file_rows = [(drop_name, path, sha256, model_version, outcome, part_name) for path, sha256, outcome in files]
        # In content order, so that two runs committing the same content on PostgreSQL (one took it
        # over from a run that looked gone) lock the rows in one order and never deadlock.
        ordered = sorted(new_predictions, key=lambda row: row[0])
        prediction_rows = [(sha256, model_version, _blob(values), scored_at) for sha256, values, scored_at in ordered]
        with self._transaction() as connection:
            self._run(connection, statements.commit_part, (drop_name, kind, part_name, len(files), COMMITTED))
            if file_rows:
                self._run(connection, statements.adopt_files if adopt else statements.add_files, file_rows)
            if prediction_rows:
                self._run(connection, statements.add_predictions, prediction_rows)

    def _rows(self, query, values: tuple | None = None) -> list:
        """All rows of a read (a statement, or a DriverStatement with its values), with errors about
        the database itself explained. On SQLite each read stands alone, as the driver runs it; on
        PostgreSQL its transaction ends with it."""
        with self._explained(), self._connection.begin():
            if isinstance(query, DriverStatement):
                return self._run(self._connection, query, values).all()
            return self._connection.execute(query).all()

    @staticmethod
    def _run(connection: Connection, statement: DriverStatement, values: tuple | list[tuple]):
        """Run a DriverStatement for one row's values (a tuple) or many rows' (a list, executemany)."""
        parameters = statement.rows(values) if isinstance(values, list) else statement.row(values)
        return connection.exec_driver_sql(statement.sql, parameters)

    @contextmanager
    def _transaction(self, exclusive: bool = False) -> Iterator[Connection]:
        """One write transaction, committed at the end and rolled back on any error; the error
        raised is the one that happened, never a failed rollback's (SQLite may already have rolled
        back a full disk). exclusive: one such transaction at a time on PostgreSQL too."""
        with self._explained():
            transaction = self._connection.begin()
            try:
                if self._sqlite:
                    self._connection.exec_driver_sql("BEGIN IMMEDIATE")
                elif exclusive:
                    self._connection.execute(select(func.pg_advisory_xact_lock(RESERVATION_LOCK)))
                yield self._connection
            except BaseException:
                with suppress(SQLAlchemyError):  # The connection is gone; the error that happened says more.
                    transaction.rollback()
                raise
            transaction.commit()

    @contextmanager
    def _explained(self, opening: bool = False) -> Iterator[None]:
        """Turn errors about the database itself into errors that say where it is and what to do."""
        try:
            yield
        except DBAPIError as error:
            explained = ledger_error(self.url, error, opening)
            if explained is error:
                raise
            raise explained from error


def _blob(probabilities: np.ndarray) -> bytes:
    """A prediction's probabilities as the ledger keeps them: float32 values, in the model's class order."""
    return np.asarray(probabilities, dtype=np.float32).tobytes()


def _take_over(
    connection: Connection, contents: list[str], model_version: str, holder: str, owner: str, now: float
) -> set[str]:
    """Move to owner the reservations of a run that is gone; return those owner now holds.

    The UPDATE names the old holder, so a reservation another run took over first, or its holder
    released meanwhile, stays as it is: what the row count does not account for is looked up.
    """
    columns = reservations.c
    matching = (columns.model_version == model_version, columns.sha256.in_(contents))
    moved = connection.execute(
        update(reservations).where(*matching, columns.owner == holder).values(owner=owner, reserved_at=now)
    )
    if moved.rowcount == len(contents):
        return set(contents)
    return {sha256 for (sha256,) in connection.execute(select(columns.sha256).where(*matching, columns.owner == owner))}


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
