"""Set-based SQL for the batch writer: one statement for many rows, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, Column, Dialect, Table, Uuid, any_, bindparam, cast, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.sqltypes import NullType

from storage.tables import Base


def dialect_insert(session: Session, entity: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT (it knows ON CONFLICT) on the entity's table."""
    table = Base.metadata.tables[entity.__tablename__]
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def uuid_in(column: Any, ids: Iterable[UUID], postgres: bool) -> ColumnElement[bool]:
    """``column IN ids``; on PostgreSQL as ``column = ANY(CAST(:ids AS UUID[]))`` with the ids
    in ONE text parameter ('{id,id,...}'), the same condition and plan as the IN list.

    An IN list of a batch's ids is a thousand placeholders that SQLAlchemy renders into the
    statement and psycopg parses again (a regex pass over a statement it cannot cache) and
    dumps one by one, on every batch; one string costs the writer almost nothing.
    """
    if not postgres:
        return column.in_(list(ids))  # type: ignore[no-any-return]
    array = "{" + ",".join(map(str, ids)) + "}"
    return column == any_(cast(bindparam(None, array, type_=NullType()), postgresql.ARRAY(Uuid)))  # type: ignore[no-any-return]


def bulk_insert(
    session: Session,
    entity: type[Base],
    rows: Sequence[dict[str, Any]],
    on_conflict: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> list[Row[Any]]:
    """Insert ``rows`` (dicts with the same keys) in one statement, skipping conflicts on the
    ``on_conflict`` key; returns the ``returning`` columns of the rows actually inserted.

    On PostgreSQL the rows travel as ONE JSON document, turned back into rows of the table's
    own column types by json_populate_recordset(): a short statement psycopg parses once, and
    one string it sends as it is. (A multi-row VALUES has thousands of placeholders psycopg
    re-parses in Python on every call; an array per column through unnest() has psycopg dump
    every element in Python, a regex search each: a quarter of the writer's CPU.)
    """
    if not rows:
        return []
    table = Base.metadata.tables[entity.__tablename__]
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        statement = sqlite.insert(table)
        if on_conflict:
            statement = statement.on_conflict_do_nothing(index_elements=list(on_conflict))
        if not returning:
            session.execute(statement, list(rows))
            return []
        returned = [table.c[name] for name in returning]
        return list(session.execute(statement.returning(*returned), list(rows)).all())
    quote = dialect.identifier_preparer.quote
    names = list(rows[0])
    source, parameters = _rows_source(table, rows, dialect)
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(name) for name in names)}) "
        f"SELECT {', '.join(f'v.{quote(name)}' for name in names)} FROM {source} AS v"
    )
    if on_conflict:
        sql += f" ON CONFLICT ({', '.join(quote(name) for name in on_conflict)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(quote(name) for name in returning)}"
    result = session.execute(text(sql), parameters)
    return list(result.all()) if returning else []


def bulk_update(
    session: Session, entity: type[Base], key: str, rows: Sequence[dict[str, Any]]
) -> None:
    """Set the columns of ``rows`` (dicts with the same keys) on the rows matching ``key``.

    PostgreSQL: one UPDATE ... FROM the rows as one JSON document (see bulk_insert; an
    executemany would send a statement per row).
    """
    if not rows:
        return
    table = Base.metadata.tables[entity.__tablename__]
    dialect = session.get_bind().dialect
    names = [name for name in rows[0] if name != key]
    if dialect.name != "postgresql":
        # Bound names must differ from the columns' own in an executemany UPDATE.
        session.execute(
            update(table)
            .where(table.c[key] == bindparam(f"new_{key}"))
            .values({name: bindparam(f"new_{name}") for name in names}),
            [{f"new_{name}": value for name, value in row.items()} for row in rows],
        )
        return
    quote = dialect.identifier_preparer.quote
    source, parameters = _rows_source(table, rows, dialect)
    assignments = ", ".join(f"{quote(name)} = v.{quote(name)}" for name in names)
    sql = (
        f"UPDATE {quote(table.name)} SET {assignments} FROM {source} AS v "
        f"WHERE {quote(table.name)}.{quote(key)} = v.{quote(key)}"
    )
    session.execute(text(sql), parameters)


def upsert(session: Session, table: type[Base], values: dict[str, Any], key: str) -> None:
    """Insert one row, or overwrite the row with the same ``key``."""
    statement = dialect_insert(session, table).values(values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[key],
            set_={name: statement.excluded[name] for name in values if name != key},
        )
    )


def _rows_source(
    table: Table, rows: Sequence[dict[str, Any]], dialect: Dialect
) -> tuple[str, dict[str, Any]]:
    """A FROM item yielding ``rows`` with the table's column names and types, and its
    parameters: json_populate_recordset over one JSON document, or unnest() of one array per
    column for a value JSON cannot carry as PostgreSQL would read it back (NaN, a naive time:
    neither is sent here, both are stored as before)."""
    try:
        document = json.dumps(list(rows), default=_json_value, allow_nan=False)
    except ValueError:
        quote = dialect.identifier_preparer.quote
        # Set-returning functions in one select list run in lockstep: row i of every column.
        columns = ", ".join(
            f"{_column_of_rows(table.c[name], dialect)} AS {quote(name)}" for name in rows[0]
        )
        return f"(SELECT {columns})", _column_values(table, rows)
    record = f"NULL::{dialect.identifier_preparer.format_table(table)}"
    return f"json_populate_recordset({record}, CAST(:rows AS JSON))", {"rows": document}


def _json_value(value: object) -> object:
    """What json.dumps cannot write itself, as PostgreSQL reads it into the column's type."""
    if isinstance(value, datetime):
        if value.tzinfo is None:  # its meaning would be the session's time zone's: unnest()
            raise ValueError(f"naive datetime {value!r}")
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"no JSON form for a {type(value).__name__} column value")


def _column_values(table: Table, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One parameter per column: a list of the rows' values, or for JSON one JSON document
    (psycopg would otherwise escape every quote of every element)."""
    values: dict[str, Any] = {}
    for name in rows[0]:
        column = [row[name] for row in rows]
        values[name] = json.dumps(column) if isinstance(table.c[name].type, JSON) else column
    return values


def _column_of_rows(column: Column[Any], dialect: Dialect) -> str:
    if isinstance(column.type, JSON):
        return f"json_array_elements(CAST(:{column.name} AS JSON))"
    return f"unnest(CAST(:{column.name} AS {column.type.compile(dialect=dialect)}[]))"
