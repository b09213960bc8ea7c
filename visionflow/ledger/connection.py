"""One connection to the scoring ledger's database: its transactions, its errors told as such, and
waiting for a PostgreSQL server that restarts or is stopped for a while.

An operation whose connection to a PostgreSQL ledger is lost or refused (UnreachableError) is run
again whole, on a new connection: after FIRST_WAIT_SECONDS, then twice as long each time up to
LONGEST_WAIT_SECONDS, until the reconnect bound ($VISIONFLOW_LEDGER_RECONNECT_SECONDS, 60 s by
default) has passed since its first failure; then the error stands, and the command stops with
exit 9. Each wait is logged as a warning naming the ledger (password hidden) and what failed, and
the try that gets through as information, with how long the ledger was out of reach.

Only a server this process has reached before is waited for: a server restarting or stopped for
maintenance comes back. One never reached is reported at once: a wrong URL, or a server not
started, does not answer by waiting. Once an operation has waited the whole bound in vain, the
ledger's later operations do not wait again.

An operation run again must not write anything twice, though a COMMIT whose connection was lost
may have gone through: each operation is told whether it runs again, and checks for its own
earlier writes then (see PredictionLedger.commit_part). SQLite ledgers never raise
UnreachableError: nothing here waits for them.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, RootTransaction, func, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from visionflow.errors import InvalidSettingError, UnreachableError
from visionflow.ledger.store import SQLITE, error_text, ledger_error, ledger_url, open_engine, shown, unreachable_error

# How long, in seconds, an operation on a PostgreSQL ledger this process has reached before waits
# for the server to answer again before the command stops with exit 9; unset, DEFAULT_RECONNECT_SECONDS.
RECONNECT_VARIABLE = "VISIONFLOW_LEDGER_RECONNECT_SECONDS"
DEFAULT_RECONNECT_SECONDS = 60.0  # A restart takes about a second; a short maintenance stop, under a minute.
FIRST_WAIT_SECONDS = 0.5  # The first wait before trying again, in seconds; doubled after each failed try,
LONGEST_WAIT_SECONDS = 5.0  # up to this many seconds: a server back is noticed within 5 s.

# The PostgreSQL advisory lock (any 64-bit number no other application on the database uses) that
# makes reserving contents one run at a time, as SQLite's BEGIN IMMEDIATE does: "vflw-rsv".
RESERVATION_LOCK = 0x76666C772D727376

# The PostgreSQL ledgers (URLs, password hidden) this process has reached: only those are waited for.
_REACHED: set[str] = set()

Result = TypeVar("Result")


def reconnect_seconds_setting() -> float:
    """The reconnect bound in seconds: $VISIONFLOW_LEDGER_RECONNECT_SECONDS, else DEFAULT_RECONNECT_SECONDS."""
    text = os.environ.get(RECONNECT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_RECONNECT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise InvalidSettingError(
            f"{RECONNECT_VARIABLE}={text!r} is not a number of seconds; set it to how long a scoring run waits "
            "for its PostgreSQL ledger to answer again (0 or more, e.g. 60), or unset it for "
            f"{DEFAULT_RECONNECT_SECONDS:.0f} s"
        )
    return seconds


class LedgerConnection:
    """One connection to the ledger at a location (a SQLite file's Path, or a database URL).

    reconnect_seconds: how long an operation waits for a PostgreSQL server that cannot be reached;
    None reads $VISIONFLOW_LEDGER_RECONNECT_SECONDS."""

    def __init__(self, location: str | Path, reconnect_seconds: float | None = None) -> None:
        self.url = ledger_url(location)
        self.reconnect_seconds = reconnect_seconds_setting() if reconnect_seconds is None else reconnect_seconds
        self._sqlite = self.url.get_backend_name() == SQLITE
        self._engine = open_engine(self.url)
        self._connection: Connection | None = None
        # Set once an operation has waited the whole bound in vain: the run is giving up, and what
        # it still does on its way out (releasing its reservations) does not wait a second bound.
        self._gave_up = False

    def close(self) -> None:
        if getattr(self, "_connection", None) is not None:
            self._connection.close()
        self._engine.dispose()

    def _retried(self, operation: Callable[[bool], Result]) -> Result:
        """operation(again) until it gets through, again=True after a lost connection, for up to the
        reconnect bound when the server is one this process has reached before (see above)."""
        if self._sqlite:
            return operation(False)
        ledger = shown(self.url)
        first_failure, wait, again = None, FIRST_WAIT_SECONDS, False
        while True:
            try:
                result = operation(again)
            except UnreachableError as error:
                self._drop_connection()
                now = time.monotonic()
                first_failure = now if first_failure is None else first_failure
                left = first_failure + self.reconnect_seconds - now
                if ledger not in _REACHED or self._gave_up or self.reconnect_seconds <= 0:
                    raise
                cause = error_text(error.__cause__ or error)
                if left <= 0:
                    self._gave_up = True
                    raise unreachable_error(self.url, cause, now - first_failure) from error.__cause__
                _logger().warning(
                    "the scoring ledger %s cannot be reached (%s); retrying for up to %.0f s", ledger, cause, left
                )
                time.sleep(min(wait, left))
                wait, again = min(2 * wait, LONGEST_WAIT_SECONDS), True
            else:
                _REACHED.add(ledger)
                if first_failure is not None:
                    out = time.monotonic() - first_failure
                    _logger().info("the scoring ledger %s answers again after %.1f s; the run goes on", ledger, out)
                return result

    def _connected(self) -> Connection:
        """The ledger's connection; a new one when a failed write left the last one unusable."""
        if self._connection is None:
            with self._explained(opening=True):
                self._connection = self._engine.connect()
        return self._connection

    def _drop_connection(self) -> None:
        """Let go of a connection the server is no longer on, so that the next use opens a new one."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with suppress(SQLAlchemyError):  # It is gone already.
                connection.invalidate()
                connection.close()

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


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The run's logger inside a Prefect run (its lines show in Prefect's UI too), else this
    module's: a ledger used where Prefect was never loaded does not load it (which would set up
    Prefect's logging in the middle of a program)."""
    if "prefect" not in sys.modules:
        return logging.getLogger(__name__)
    from visionflow.run_context import run_logger

    return run_logger(__name__)
