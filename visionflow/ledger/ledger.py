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

import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, RootTransaction, delete, func, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from visionflow.ledger.reservation_owners import end_owner, owner_gone, take_over
from visionflow.ledger.reservation_owners import reservation_owner as reservation_owner
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
        self._connection: Connection | None = None
        self._connected()
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
        if getattr(self, "_connection", None) is not None:
            self._connection.close()
        self._engine.dispose()

    def _connected(self) -> Connection:
        """The ledger's connection; a new one when a failed write left the last one unusable."""
        if self._connection is None:
            with self._explained(opening=True):
                self._connection = self._engine.connect()
        return self._connection

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
        return set(self.part_sizes(drop_name, kind, state))

    def part_sizes(self, drop_name: str, kind: str, state: str = COMMITTED) -> dict[str, int]:
        """The rows each of this drop's part files of one kind in one state holds, by part name."""
        columns = parts.c
        wanted = (columns.drop_name == drop_name, columns.kind == kind, columns.state == state)
        return {name: int(rows) for name, rows in self._rows(select(columns.name, columns.rows).where(*wanted))}

    def part_rows(self, drop_name: str, part_names: Collection[str]) -> dict[str, list[tuple[str, str, str, str]]]:
        """(path, sha256 or '', model_version, outcome) of every row the ledger files under each of
        the named parts of a drop: what a lost or damaged part file is written again from."""
        columns = drop_files.c
        found: dict[str, list[tuple[str, str, str, str]]] = {name: [] for name in part_names}
        names = sorted(found)
        for start in range(0, len(names), LOOKUP_CHUNK):
            query = select(columns.part, columns.path, columns.sha256, columns.model_version, columns.outcome).where(
                columns.drop_name == drop_name, columns.part.in_(names[start : start + LOOKUP_CHUNK])
            )
            for part, *row in self._rows(query):
                found[part].append(tuple(row))
        return found

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
                    held |= take_over(connection, contents, model_version, holder, owner, now)
        return held

    def release_contents(self, owner: str) -> None:
        """Drop every reservation of owner (its run has committed or given up on those contents)."""
        # Under the reservations' lock: a run taking over these rows meanwhile would otherwise wait
        # for this one while it waits for that run, a deadlock on PostgreSQL.
        try:
            with self._transaction(exclusive=True) as connection:
                connection.execute(delete(reservations).where(reservations.c.owner == owner))
        finally:
            end_owner(owner)  # Rows a failed DELETE leaves are taken over, even by a run in this process.

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
        with self._transaction(write=False) as connection:
            if isinstance(query, DriverStatement):
                return self._run(connection, query, values).all()
            return connection.execute(query).all()

    @staticmethod
    def _run(connection: Connection, statement: DriverStatement, values: tuple | list[tuple]):
        """Run a DriverStatement for one row's values (a tuple) or many rows' (a list, executemany)."""
        parameters = statement.rows(values) if isinstance(values, list) else statement.row(values)
        return connection.exec_driver_sql(statement.sql, parameters)

    @contextmanager
    def _transaction(self, exclusive: bool = False, write: bool = True) -> Iterator[Connection]:
        """One transaction, committed at the end and rolled back on any error, its COMMIT's
        included (a full disk often fails only there); the error raised is the one that happened,
        never a failed rollback's. exclusive: one such transaction at a time on PostgreSQL too;
        write=False: a read, which on SQLite takes no writers' lock."""
        with self._explained():
            connection = self._connected()
            transaction = connection.begin()
            try:
                if self._sqlite and write:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                elif exclusive:
                    connection.execute(select(func.pg_advisory_xact_lock(RESERVATION_LOCK)))
                yield connection
                transaction.commit()
            except BaseException:
                self._roll_back(transaction)
                raise

    def _roll_back(self, transaction: RootTransaction) -> None:
        """End a failed transaction so that the ledger's next read or write works; when the
        connection cannot be brought back to no transaction, it is dropped and the next use opens
        a new one. After a failed COMMIT SQLAlchemy sends no ROLLBACK, and SQLite may or may not
        have rolled back itself (it does for some full disks), so the driver is asked directly."""
        try:
            transaction.rollback()
            driver = self._connection.connection.driver_connection
            if self._sqlite and driver.in_transaction:
                driver.rollback()
        except (SQLAlchemyError, sqlite3.Error):
            connection, self._connection = self._connection, None
            with suppress(SQLAlchemyError, sqlite3.Error):  # The error that happened says more.
                connection.invalidate()
                connection.close()

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


def part_files(folder: Path) -> list[Path]:
    """The part files in a drop's output folder, temporary files of unfinished writes included."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.is_file())
