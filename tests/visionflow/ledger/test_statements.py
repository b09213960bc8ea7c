"""The ledger's many-row statements, run through the database driver on a real ledger: what each one keeps,
refuses and finds.

The tests run on a SQLite file and on PostgreSQL (a fresh database each), as the ledger does."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from visionflow.ledger.statements import (
    LOOKUP_CHUNK,
    DriverStatement,
    LedgerStatements,
    ledger_statements,
    lookup_values,
)
from visionflow.ledger.store import create_schema, ledger_url, open_engine

VERSION = "v0001"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def connection(request, tmp_path):
    """A connection to a new, empty ledger: a SQLite file, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        location = tmp_path / "ledger.sqlite"
    else:
        server = request.getfixturevalue("postgres_server")
        location = server.url(server.create_database("statements"))
    engine = open_engine(ledger_url(location))
    with engine.connect() as opened:
        create_schema(opened)
        opened.commit()
        yield opened
    engine.dispose()


def run(connection, statement: DriverStatement, values: tuple | list[tuple]) -> list:
    """Run a statement for one row's values or many rows', as the ledger does; the rows it returns."""
    parameters = statement.rows(values) if isinstance(values, list) else statement.row(values)
    result = connection.exec_driver_sql(statement.sql, parameters)
    rows = [tuple(row) for row in result.all()] if result.returns_rows else []
    connection.commit()
    return rows


def statements(connection) -> LedgerStatements:
    return ledger_statements(connection.engine)


def test_parts_are_added_once_and_committed_over_their_reservation(connection):
    run(connection, statements(connection).add_part, ("drop", "predictions", "part-1", 0, "pending"))
    with pytest.raises(IntegrityError):
        run(connection, statements(connection).add_part, ("drop", "predictions", "part-1", 0, "pending"))
    connection.rollback()
    commit = statements(connection).commit_part
    run(connection, commit, ("drop", "predictions", "part-1", 3, "committed"))
    run(connection, commit, ("drop", "rejections", "part-2", 1, "committed"))  # Never reserved: added.
    stored = connection.exec_driver_sql("SELECT kind, name, rows, state FROM parts ORDER BY name").all()
    assert [tuple(row) for row in stored] == [
        ("predictions", "part-1", 3, "committed"),
        ("rejections", "part-2", 1, "committed"),
    ]


def test_reservations_keep_their_first_owner_and_are_found_by_content_and_model(connection):
    add, find = statements(connection).add_reservations, statements(connection).find_reservations
    run(connection, add, [("a" * 64, VERSION, "host:1:x", 10.5), ("b" * 64, VERSION, "host:1:x", 10.5)])
    run(connection, add, [("a" * 64, VERSION, "host:2:y", 20.0), ("a" * 64, "v0002", "host:2:y", 20.0)])
    found = run(connection, find, lookup_values(["a" * 64, "c" * 64], VERSION))
    assert found == [("a" * 64, "host:1:x", 10.5)]
    assert len(run(connection, find, lookup_values(["a" * 64, "b" * 64], VERSION))) == 2


def test_predictions_keep_the_committed_probabilities_and_are_found_once_each(connection):
    add, find = statements(connection).add_predictions, statements(connection).find_predictions
    first = ("a" * 64, VERSION, b"\x00\x00\x80?", "2026-01-01T00:00:00.000000+00:00")
    run(connection, add, [first, ("b" * 64, VERSION, b"\x00\x00\x00\x00", "2026-01-01T00:00:01.000000+00:00")])
    run(connection, add, [("a" * 64, VERSION, b"\x00\x00\x00@", "2026-02-02T00:00:00.000000+00:00")])
    # The lookup fills its unused keys with the last content; each row still comes back once.
    found = run(connection, find, lookup_values(["a" * 64], VERSION))
    assert found == [(first[0], first[2], first[3])]


def test_files_are_refused_twice_unless_adopted_and_found_by_drop_and_model(connection):
    rows = [
        ("drop", "cat.png", "a" * 64, VERSION, "predicted", "part-1"),
        ("drop", "x.png", "", VERSION, "rejected", "part-2"),
    ]
    run(connection, statements(connection).add_files, rows)
    with pytest.raises(IntegrityError):
        run(connection, statements(connection).add_files, rows[:1])
    connection.rollback()
    adopted = ("drop", "cat.png", "a" * 64, VERSION, "predicted", "part-9")
    run(
        connection,
        statements(connection).adopt_files,
        [adopted, ("drop", "dog.png", "b" * 64, VERSION, "predicted", "part-9")],
    )
    found = run(connection, statements(connection).find_files, ("drop", VERSION))
    assert sorted(found) == [
        ("cat.png", "a" * 64, "predicted"),
        ("dog.png", "b" * 64, "predicted"),
        ("x.png", "", "rejected"),
    ]
    assert run(connection, statements(connection).find_files, ("another drop", VERSION)) == []


def test_the_statements_are_compiled_once_per_dialect(connection, tmp_path):
    other = open_engine(ledger_url(tmp_path / "other.sqlite"))
    try:
        same_dialect = connection.engine.dialect.name == other.dialect.name
        assert (ledger_statements(other) is statements(connection)) == same_dialect
    finally:
        other.dispose()


def test_lookup_values_fill_every_key_and_more_contents_than_keys_are_refused(connection):
    values = lookup_values(["a" * 64, "b" * 64], VERSION)
    assert len(values) == 1 + LOOKUP_CHUNK and values[:3] == (VERSION, "a" * 64, "b" * 64)
    assert set(values[3:]) == {"b" * 64}
    too_many = lookup_values([f"{index:064x}" for index in range(LOOKUP_CHUNK + 1)], VERSION)
    # Refused, by the driver (SQLite) or in naming the values (PostgreSQL), rather than cut short.
    with pytest.raises((SQLAlchemyError, ValueError)):
        run(connection, statements(connection).find_predictions, too_many)


def test_a_row_of_the_wrong_length_is_refused_by_name():
    by_name = DriverStatement("INSERT INTO t VALUES (%(a)s, %(b)s)", ("a", "b"), positional=False)
    assert by_name.row((1, 2)) == {"a": 1, "b": 2}
    assert by_name.rows([(1, 2), (3, 4)]) == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    with pytest.raises(ValueError):
        by_name.row((1, 2, 3))
    in_order = DriverStatement("INSERT INTO t VALUES (?, ?)", ("a", "b"), positional=True)
    assert in_order.rows([(1, 2)]) == [(1, 2)]
