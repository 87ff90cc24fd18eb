"""Engines and sessions, built from a URL on demand: nothing here exists at import time."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SessionFactory = sessionmaker[Session]
# Room for every request the API serves at once (its thread pool runs 40) plus the background
# jobs: a request's session goes back to the pool only after its response is sent, so a smaller
# pool lets requests wait on connections that wait on threads (a stall, then timeouts).
# pool_size keeps as many idle as the thread pool has threads: with 10, every connection past
# the tenth was closed on return and opened again for the next request (a PostgreSQL backend
# each, ~3.7 ms of its CPU and ~0.7 ms of ours); the mix at saturation opened 192-233 a run.
# The most open at once (60) is unchanged.
POOL: dict[str, Any] = {"pool_size": 40, "max_overflow": 20}


def make_engine(database_url: str) -> Engine:
    """An engine for ``sqlite:///PATH`` (WAL, foreign keys; the folder is created) or PostgreSQL."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **POOL)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **POOL)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # WAL keeps it durable at commit boundaries
    finally:
        cursor.close()


def make_session_factory(engine: Engine) -> SessionFactory:
    # Objects stay readable after commit: callers hand them on (acks, API responses).
    return sessionmaker(engine, expire_on_commit=False)
