"""Where the scoring ledger is kept: its tables, its URL, how each database is opened, its errors.

One table definition serves SQLite (a file, the default) and PostgreSQL (a server a team's runs
share): SQLAlchemy renders BLOB or BYTEA, REAL or DOUBLE PRECISION as each dialect needs. A
location is a Path or a plain path string (a SQLite file) or a SQLAlchemy URL string
(sqlite:///... or postgresql+psycopg://...). The PostgreSQL driver is imported only when a
PostgreSQL URL is opened. Errors a person can act on (a full disk, a damaged file, a server that
cannot be reached) are told as such, naming the ledger with its password hidden.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
import time
from pathlib import Path

from sqlalchemy import (
    URL,
    Column,
    Connection,
    Double,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    create_engine,
    event,
    inspect,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from visionflow.errors import BadInputError, DamagedStateError, NoSpaceError, UnreachableError

# SQLite waits this long, in seconds, for another process's write to finish before failing.
BUSY_TIMEOUT_SECONDS = 60

# How long, in seconds, opening a PostgreSQL ledger waits for the server before saying it cannot
# reach it (a connect_timeout in the URL wins).
CONNECT_TIMEOUT_SECONDS = 10

SQLITE, POSTGRESQL = "sqlite", "postgresql"

# SQLite tells a full disk as "database or disk is full" only where a write says so; growing its
# shared-memory index (32 KiB at a time) or syncing on a full disk fails as "disk I/O error"
# instead. Such an error, with less than this many bytes free beside the ledger (16 MiB), is
# told as a full disk.
NEARLY_FULL_BYTES = 16 * 1024 * 1024

METADATA = MetaData()

predictions = Table(
    "predictions",
    METADATA,
    Column("sha256", Text, primary_key=True),
    Column("model_version", Text, primary_key=True),
    Column("probabilities", LargeBinary, nullable=False),  # float32 values, one per class, in the model's order.
    Column("scored_at", Text, nullable=False),  # ISO 8601 UTC time the model scored this content.
)

drop_files = Table(
    "drop_files",
    METADATA,
    Column("drop_name", Text, primary_key=True),
    Column("path", Text, primary_key=True),  # Relative to the drop.
    Column("sha256", Text, primary_key=True),  # '' for files that could not be read.
    Column("model_version", Text, primary_key=True),
    Column("outcome", Text, nullable=False),  # 'predicted' or 'rejected'.
    Column("part", Text, nullable=False),  # The part file holding the row.
)

parts = Table(
    "parts",
    METADATA,
    Column("drop_name", Text, primary_key=True),
    Column("kind", Text, primary_key=True),  # 'predictions' or 'rejections'.
    Column("name", Text, primary_key=True),
    Column("rows", Integer, nullable=False),
    # 'pending' from the part's reservation until its rows are committed, then 'committed'.
    Column("state", Text, nullable=False, server_default="committed"),
)

reservations = Table(
    "reservations",
    METADATA,
    Column("sha256", Text, primary_key=True),
    Column("model_version", Text, primary_key=True),
    Column("owner", Text, nullable=False),  # host:pid:token of the run predicting this content.
    # Seconds since the epoch; double precision, so that PostgreSQL keeps sub-second times.
    Column("reserved_at", Double, nullable=False),
)

# What a ledger URL may look like, for messages about one that cannot be used.
URL_FORMS = (
    "set VISIONFLOW_LEDGER_URL to postgresql+psycopg://USER:PASSWORD@HOST/DATABASE for a ledger a team "
    "shares, or sqlite:////absolute/path/scoring.sqlite, or unset it for the home's own SQLite ledger"
)

# A ledger written before parts had states has no state column: all its parts were committed.
ADD_PART_STATE = "ALTER TABLE parts ADD COLUMN state TEXT NOT NULL DEFAULT 'committed'"


def create_schema(connection: Connection) -> None:
    """Create the tables a new ledger lacks, and add what an older ledger's tables lack."""
    METADATA.create_all(connection, checkfirst=True)
    if "state" not in {column["name"] for column in inspect(connection).get_columns("parts")}:
        connection.exec_driver_sql(ADD_PART_STATE)


def ledger_url(location: str | Path) -> URL:
    """The URL of a ledger location: a Path or a string without '://' is a SQLite file."""
    if isinstance(location, Path) or "://" not in location:
        return URL.create("sqlite", database=str(Path(location).expanduser().absolute()))
    try:
        url = make_url(location)
    except ArgumentError as error:
        # The text itself is not repeated: it may hold a password.
        raise BadInputError(f"the scoring ledger URL cannot be read ({error}); {URL_FORMS}") from None
    if url.drivername == POSTGRESQL:
        url = url.set(drivername="postgresql+psycopg")  # psycopg 3, which the postgres extra installs.
    if url.drivername not in ("sqlite", "sqlite+pysqlite") and url.get_backend_name() != POSTGRESQL:
        raise BadInputError(f"the scoring ledger URL {shown(url)} names a database visionflow cannot use; {URL_FORMS}")
    if url.get_backend_name() == SQLITE and url.database in (None, "", ":memory:"):
        # A database in memory would be a different, empty one for every connection.
        raise BadInputError(f"the scoring ledger URL {shown(url)} names no file; {URL_FORMS}")
    return url


def shown(url: URL) -> str:
    """The URL as it may be shown in a message or a log: without its password."""
    return url.render_as_string(hide_password=True)


def open_engine(url: URL) -> Engine:
    """An engine for the ledger's database; SQLite set up for many processes writing in turn."""
    if url.get_backend_name() == SQLITE:
        try:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            raise ledger_error(url, error) from error
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": BUSY_TIMEOUT_SECONDS})
        event.listen(engine, "connect", _prepare_sqlite)
        return engine
    arguments = {} if "connect_timeout" in url.query else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    try:
        return create_engine(url, poolclass=NullPool, connect_args=arguments)
    except ImportError as error:
        raise BadInputError(
            f"the scoring ledger {shown(url)} needs the PostgreSQL driver ({error}); install it with "
            '`pip install "visionflow[postgres]"` and run the same command again'
        ) from None


def _prepare_sqlite(dbapi_connection, _record) -> None:
    """Each new SQLite connection: the driver's own transaction handling off (SQLAlchemy's recipe
    for pysqlite), so that the ledger begins its writes itself with BEGIN IMMEDIATE; write-ahead
    logging, so that one process reads while another commits a part."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        _use_write_ahead_log(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _use_write_ahead_log(cursor) -> None:
    """Switch the file to write-ahead logging, which it keeps. When runs open a new file at the
    same moment, SQLite may refuse the switch as "database is locked" at once, without waiting for
    the busy timeout; so it is tried again, every 50 ms, for up to BUSY_TIMEOUT_SECONDS."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def ledger_error(url: URL, error: Exception, opening: bool = False) -> Exception:
    """A full disk, a damaged file or a server out of reach as an error a person can act on; any
    other error as it was. opening: the error happened while connecting."""
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    text = error_text(error)
    where = url.database if url.get_backend_name() == SQLITE else shown(url)
    # SQLite says "database or disk is full" (or an I/O error, see NEARLY_FULL_BYTES); the file
    # system, ENOSPC; PostgreSQL's disk_full is SQLSTATE 53100.
    if (
        (url.get_backend_name() == SQLITE and ("full" in text or _io_error_on_a_full_disk(cause, url.database)))
        or getattr(cause, "errno", None) == errno.ENOSPC
        or getattr(cause, "sqlstate", None) == "53100"
    ):
        return NoSpaceError(
            f"the disk holding the scoring ledger {where} is full ({text}); free some space and run the same "
            "command again: parts committed before are kept, and the rest is scored then"
        )
    if url.get_backend_name() == SQLITE and any(
        sign in text for sign in ("not a database", "malformed", "disk image", "encrypted")
    ):
        return DamagedStateError(
            f"the scoring ledger {where} is damaged ({text}); move it aside (mv {where} {where}.damaged) and run "
            "the same command again: the ledger is rebuilt from each drop's Parquet parts as drops are scored"
        )
    if url.get_backend_name() == POSTGRESQL and _lost_connection(error, opening):
        return unreachable_error(url, text)
    return error


def error_text(error: BaseException) -> str:
    """What the database or its driver said, on one line."""
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    return " ".join(str(cause).split())


def unreachable_error(url: URL, text: str, waited_seconds: float = 0.0) -> UnreachableError:
    """A PostgreSQL ledger out of reach (text: what failed), after waiting waited_seconds for it."""
    waited = f" for {waited_seconds:.0f} s" if waited_seconds else ""
    return UnreachableError(
        f"cannot reach the scoring ledger {shown(url)}{waited} ({text}); check that its PostgreSQL server is running "
        "and reachable from this machine, and that VISIONFLOW_LEDGER_URL names the right host, port, user, "
        "password and database, then run the same command again: parts committed before are kept"
    )


def _io_error_on_a_full_disk(cause: BaseException, database: str) -> bool:
    """True for SQLite's "disk I/O error" on a file system with less than NEARLY_FULL_BYTES free."""
    if not (getattr(cause, "sqlite_errorname", None) or "").startswith("SQLITE_IOERR"):
        return False
    folder = Path(database).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def _lost_connection(error: Exception, opening: bool) -> bool:
    """True when connecting failed, or an open connection to the server was lost."""
    if not isinstance(error, DBAPIError):
        return False
    return error.connection_invalidated or (opening and isinstance(error, OperationalError))
