"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import warnings
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from storage.database import make_engine
from storage.schema import alembic_config, migrate
from storage.tables import Base


def test_migrations_match_the_declared_schema(database_url: str) -> None:
    migrate(database_url)
    migrate(database_url)  # at head already: a no-op, as at every server start
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            with warnings.catch_warnings():
                # SQLite cannot reflect expression-based indexes, so autogenerate skips them
                # (and warns); their names are checked below on both databases instead.
                warnings.filterwarnings("ignore", message=r".*expression-based index")
                assert compare_metadata(context, Base.metadata) == []
            assert _declared_indexes() <= _index_names(connection)
            head = ScriptDirectory.from_config(alembic_config()).get_current_head()
            assert context.get_current_revision() == head
        assert set(inspect(engine).get_table_names()) == set(Base.metadata.tables) | {
            "alembic_version"
        }
    finally:
        engine.dispose()


def _declared_indexes() -> set[str]:
    return {str(index.name) for table in Base.metadata.tables.values() for index in table.indexes}


def _index_names(connection: Connection) -> set[str]:
    if connection.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'index'"
    else:
        query = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    return {str(name) for name in connection.exec_driver_sql(query).scalars()}


def test_sqlite_database_folder_is_created_and_uses_wal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'var' / 'deep' / 'civicwatch.db'}"
    migrate(url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_downgrading_past_new_case_columns_keeps_the_consoles_expression_indexes(
    database_url: str,
) -> None:
    # SQLite rebuilds the table to drop a column; the console's expression indexes must survive.
    from storage.schema import upgrade_engine
    from storage.tables import CONSOLE_INDEXES

    migrate(database_url)
    engine = make_engine(database_url)
    try:
        upgrade_engine(engine, "0004", downgrade=True)
        made_by_0003 = {index.name for index in CONSOLE_INDEXES} - LATER_CONSOLE_INDEXES
        assert made_by_0003 <= _case_index_names(engine)
        assert not LATER_CONSOLE_INDEXES & _case_index_names(engine)
        upgrade_engine(engine)  # and up again, as a rollback and its retry would
        assert {index.name for index in CONSOLE_INDEXES} <= _case_index_names(engine)
    finally:
        engine.dispose()


# Console indexes a revision after 0004 makes (0009): absent at 0004, there again at head.
LATER_CONSOLE_INDEXES = {"ix_cases_department_state_due", "ix_cases_open_due"}


def _case_index_names(engine: Engine) -> set[str]:
    """The indexes on cases as the database lists them (SQLite's inspector skips expression
    indexes, so ask the catalogue itself)."""
    query = (
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'cases'"
        if engine.dialect.name == "sqlite"
        else "SELECT indexname FROM pg_indexes WHERE tablename = 'cases'"
    )
    with engine.connect() as connection:
        return set(connection.scalars(text(query)))
