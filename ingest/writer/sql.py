"""Set-based SQL for the batch writer: one statement for many rows, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, Column, Dialect, Table, bindparam, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from storage.tables import Base


def dialect_insert(session: Session, entity: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT (it knows ON CONFLICT) on the entity's table."""
    table = Base.metadata.tables[entity.__tablename__]
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def bulk_insert(
    session: Session,
    entity: type[Base],
    rows: Sequence[dict[str, Any]],
    on_conflict: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> list[Row[Any]]:
    """Insert ``rows`` (dicts with the same keys) in one statement, skipping conflicts on the
    ``on_conflict`` key; returns the ``returning`` columns of the rows actually inserted.

    On PostgreSQL the rows travel as one array per column through unnest(): a short statement
    psycopg parses once, where a multi-row VALUES has thousands of placeholders that psycopg
    re-parses in Python on every call (it caches statements of at most 50 parameters).
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
    # Set-returning functions in one select list run in lockstep: row i of every column.
    columns = ", ".join(_column_of_rows(table.c[name], dialect) for name in names)
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(name) for name in names)}) "
        f"SELECT {columns}"
    )
    if on_conflict:
        sql += f" ON CONFLICT ({', '.join(quote(name) for name in on_conflict)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(quote(name) for name in returning)}"
    result = session.execute(text(sql), _column_values(table, rows))
    return list(result.all()) if returning else []


def bulk_update(
    session: Session, entity: type[Base], key: str, rows: Sequence[dict[str, Any]]
) -> None:
    """Set the columns of ``rows`` (dicts with the same keys) on the rows matching ``key``.

    PostgreSQL: one UPDATE ... FROM unnest() (executemany would send a statement per row).
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
    columns = ", ".join(
        f"{_column_of_rows(table.c[name], dialect)} AS {quote(name)}" for name in (key, *names)
    )
    assignments = ", ".join(f"{quote(name)} = v.{quote(name)}" for name in names)
    sql = (
        f"UPDATE {quote(table.name)} SET {assignments} FROM (SELECT {columns}) AS v "
        f"WHERE {quote(table.name)}.{quote(key)} = v.{quote(key)}"
    )
    session.execute(text(sql), _column_values(table, rows))


def upsert(session: Session, table: type[Base], values: dict[str, Any], key: str) -> None:
    """Insert one row, or overwrite the row with the same ``key``."""
    statement = dialect_insert(session, table).values(values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[key],
            set_={name: statement.excluded[name] for name in values if name != key},
        )
    )


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
