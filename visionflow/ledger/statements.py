"""The scoring ledger's statements that carry many rows, in each database driver's own SQL.

A part commits up to 8,192 rows, and a run reserves and looks up as many contents. Those rows go
to the driver as plain tuples, in the column order of their table, through statements compiled
once per dialect from the ledger's tables: SQLAlchemy's handling of each row's parameters would
more than double the time a part's commit takes on SQLite. SQLite's driver takes the tuples as they
are (its ? parameters); psycopg's %(name)s parameters get each tuple as a dict.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, Table, bindparam, select

from visionflow.ledger.store import SQLITE, drop_files, parts, predictions, reservations

# Keys per lookup statement; SQLite allows 32,766 parameters, PostgreSQL 65,535.
LOOKUP_CHUNK = 900

_KEY_NAMES = tuple(f"s{index}" for index in range(LOOKUP_CHUNK))  # The lookups' key parameters.


@dataclass(frozen=True)
class DriverStatement:
    """One statement in the driver's SQL, and the names of its parameters in the order rows give them."""

    sql: str
    names: tuple[str, ...]
    positional: bool  # The driver takes a row's values as a tuple (SQLite), else as a dict.

    def row(self, values: tuple) -> tuple | dict:
        """The driver's parameters for one row."""
        return values if self.positional else dict(zip(self.names, values, strict=True))

    def rows(self, values: list[tuple]) -> list[tuple] | list[dict]:
        """The driver's parameters for many rows, for one executemany."""
        return values if self.positional else [dict(zip(self.names, row, strict=True)) for row in values]


@dataclass(frozen=True)
class LedgerStatements:
    """The ledger's many-row statements, and those that need the dialect's INSERT ... ON CONFLICT."""

    add_part: DriverStatement  # A part's row (drop_name, kind, name, rows, state); a known part is an error.
    commit_part: DriverStatement  # A part's row, or its rows and state updated when it was reserved.
    add_reservations: DriverStatement  # (sha256, model_version, owner, reserved_at) unless reserved already.
    find_reservations: DriverStatement  # (sha256, owner, reserved_at) of lookup_values' contents.
    find_predictions: DriverStatement  # (sha256, probabilities, scored_at) of lookup_values' contents.
    find_files: DriverStatement  # (path, sha256, outcome) of every row of (drop_name, model_version).
    add_files: DriverStatement  # drop_files rows (drop_name, path, sha256, model_version, outcome, part).
    adopt_files: DriverStatement  # The same, keeping rows the ledger already holds.
    add_predictions: DriverStatement  # (sha256, model_version, probabilities, scored_at), keeping committed ones.


# Compiled statements by dialect: compiling the lookups' hundreds of parameters takes about 30 ms,
# once per process instead of once per ledger opened.
_COMPILED: dict[str, LedgerStatements] = {}


def ledger_statements(engine: Engine) -> LedgerStatements:
    """The statements in the SQL of engine's dialect."""
    if engine.dialect.name not in _COMPILED:
        _COMPILED[engine.dialect.name] = _compile(engine)
    return _COMPILED[engine.dialect.name]


def lookup_values(chunk: list[str], model_version: str) -> tuple[str, ...]:
    """A find_ statement's values for up to LOOKUP_CHUNK contents: the last one fills the rest."""
    return (model_version, *chunk, *chunk[-1:] * (LOOKUP_CHUNK - len(chunk)))


def _compile(engine: Engine) -> LedgerStatements:
    if engine.dialect.name == SQLITE:
        from sqlalchemy.dialects.sqlite import insert
    else:  # PostgreSQL's dialect is imported only where a PostgreSQL ledger is opened.
        from sqlalchemy.dialects.postgresql import insert

    def driver(statement, names: tuple[str, ...]) -> DriverStatement:
        compiled = statement.compile(dialect=engine.dialect)
        if compiled.positional and tuple(compiled.positiontup) != names:
            raise RuntimeError(f"parameters {compiled.positiontup} of {compiled} are not in the order {names}")
        return DriverStatement(str(compiled), names, compiled.positional)

    def insert_all(table: Table, conflict: str | None = None) -> DriverStatement:
        statement = insert(table)
        if conflict == "keep":
            statement = statement.on_conflict_do_nothing()
        elif conflict == "update":
            update = {name: statement.excluded[name] for name in ("rows", "state")}
            statement = statement.on_conflict_do_update(index_elements=["drop_name", "kind", "name"], set_=update)
        return driver(statement, tuple(column.name for column in table.columns))

    def lookup(table: Table, *columns: str) -> DriverStatement:
        wanted = table.c.sha256.in_([bindparam(name) for name in _KEY_NAMES])
        statement = select(*(table.c[name] for name in columns)).where(
            table.c.model_version == bindparam("model_version"), wanted
        )
        return driver(statement, ("model_version", *_KEY_NAMES))

    return LedgerStatements(
        add_part=insert_all(parts),
        commit_part=insert_all(parts, "update"),
        add_reservations=insert_all(reservations, "keep"),
        find_reservations=lookup(reservations, "sha256", "owner", "reserved_at"),
        find_predictions=lookup(predictions, "sha256", "probabilities", "scored_at"),
        find_files=driver(
            select(drop_files.c.path, drop_files.c.sha256, drop_files.c.outcome).where(
                drop_files.c.drop_name == bindparam("drop_name"),
                drop_files.c.model_version == bindparam("model_version"),
            ),
            ("drop_name", "model_version"),
        ),
        add_files=insert_all(drop_files),
        adopt_files=insert_all(drop_files, "keep"),
        add_predictions=insert_all(predictions, "keep"),
    )
