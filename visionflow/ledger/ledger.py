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
An operation whose PostgreSQL server restarts or stops is run again whole once it answers, for up
to a bound (visionflow/ledger/connection.py); one run again checks first for its own earlier
writes, whose COMMIT may have gone through though its connection was lost.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, delete, func, select

from visionflow.ledger.connection import LedgerConnection
from visionflow.ledger.reservation_owners import end_owner, owner_gone, take_over
from visionflow.ledger.reservation_owners import reservation_owner as reservation_owner
from visionflow.ledger.statements import LOOKUP_CHUNK, DriverStatement, ledger_statements, lookup_values
from visionflow.ledger.store import create_schema, drop_files, parts, reservations

PENDING = "pending"
COMMITTED = "committed"


class PredictionLedger(LedgerConnection):
    """One connection to the ledger at a location (a SQLite file's Path, or a database URL); use
    as a context manager, or call close(). reconnect_seconds: how long an operation waits for a
    PostgreSQL server that cannot be reached; None reads $VISIONFLOW_LEDGER_RECONNECT_SECONDS."""

    def __init__(self, location: str | Path, reconnect_seconds: float | None = None) -> None:
        super().__init__(location, reconnect_seconds)
        self._statements = ledger_statements(self._engine)
        try:
            self._retried(self._create_schema)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> PredictionLedger:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _create_schema(self, _again: bool) -> None:
        """The tables, under the writers' lock, so that runs opening a new ledger at once create them once."""
        with self._transaction(exclusive=True) as connection:
            create_schema(connection)

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

        def reserve(again: bool) -> None:
            with self._transaction() as connection:
                if again and self._part_rows(connection, drop_name, kind, part_name) is not None:
                    return  # The lost connection's COMMIT went through.
                self._run(connection, self._statements.add_part, (drop_name, kind, part_name, 0, PENDING))

        self._retried(reserve)

    def reserve_contents(self, sha256s: Iterable[str], model_version: str, owner: str) -> set[str]:
        """Reserve for owner the contents no live run has reserved; return all that owner now holds.

        A run predicts only the contents it holds, so two runs scoring drops that share images
        never predict one twice: the other run takes those rows from the ledger once they are
        committed. Reservations of runs that are gone are taken over.
        """
        unique = sorted(set(sha256s))
        # Run again, the same rows find this owner's reservations as its lost COMMIT left them.
        return self._retried(lambda _again: self._reserve(unique, model_version, owner))

    def _reserve(self, unique: list[str], model_version: str, owner: str) -> set[str]:
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
            statement = delete(reservations).where(reservations.c.owner == owner)
            self._retried(lambda _again: self._delete(statement, exclusive=True))
        finally:
            end_owner(owner)  # Rows a failed DELETE leaves are taken over, even by a run in this process.

    def forget_part(self, drop_name: str, kind: str, part_name: str) -> None:
        """Remove a pending part's record, once its file is gone."""
        columns = parts.c
        wanted = (columns.drop_name == drop_name, columns.kind == kind, columns.name == part_name)
        self._retried(lambda _again: self._delete(delete(parts).where(*wanted, columns.state == PENDING)))

    def _delete(self, statement, exclusive: bool = False) -> None:
        """Delete rows in a transaction of its own (exclusive: under the reservations' lock); done twice, the same."""
        with self._transaction(exclusive=exclusive) as connection:
            connection.execute(statement)

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

        def commit(again: bool) -> None:
            with self._transaction() as connection:
                # Committed with these rows: the lost connection's COMMIT went through, as a whole.
                if again and self._part_rows(connection, drop_name, kind, part_name, COMMITTED) == len(files):
                    return
                self._run(connection, statements.commit_part, (drop_name, kind, part_name, len(files), COMMITTED))
                if file_rows:
                    self._run(connection, statements.adopt_files if adopt else statements.add_files, file_rows)
                if prediction_rows:
                    self._run(connection, statements.add_predictions, prediction_rows)

        self._retried(commit)

    @staticmethod
    def _part_rows(
        connection: Connection, drop_name: str, kind: str, name: str, state: str | None = None
    ) -> int | None:
        """The rows the ledger records for a part (in state, when given), or None when it records no such part."""
        columns = parts.c
        wanted = [columns.drop_name == drop_name, columns.kind == kind, columns.name == name]
        wanted += [columns.state == state] if state else []
        return connection.execute(select(columns.rows).where(*wanted)).scalar()

    def _rows(self, query, values: tuple | None = None) -> list:
        """All rows of a read (a statement, or a DriverStatement with its values), with errors about
        the database itself explained. On SQLite each read stands alone, as the driver runs it; on
        PostgreSQL its transaction ends with it."""

        def read(_again: bool) -> list:
            with self._transaction(write=False) as connection:
                if isinstance(query, DriverStatement):
                    return self._run(connection, query, values).all()
                return connection.execute(query).all()

        return self._retried(read)

    @staticmethod
    def _run(connection: Connection, statement: DriverStatement, values: tuple | list[tuple]):
        """Run a DriverStatement for one row's values (a tuple) or many rows' (a list, executemany)."""
        parameters = statement.rows(values) if isinstance(values, list) else statement.row(values)
        return connection.exec_driver_sql(statement.sql, parameters)


def _blob(probabilities: np.ndarray) -> bytes:
    """A prediction's probabilities as the ledger keeps them: float32 values, in the model's class order."""
    return np.asarray(probabilities, dtype=np.float32).tobytes()


def part_files(folder: Path) -> list[Path]:
    """The part files in a drop's output folder, temporary files of unfinished writes included."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.is_file())
