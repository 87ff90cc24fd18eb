"""Which process leads the periodic jobs (SLA sweep, notifications, verification, reports).

Any number of ``civicwatch sweep`` (or ``server``) processes may run against one database; only
the leader runs the jobs, the others wait and try again every interval.

- PostgreSQL: a session-level ``pg_try_advisory_lock`` on a connection of its own, held for as
  long as the process leads. A process that dies, or whose connection drops, loses the lock
  with its session (the server ends it), so another takes over at its next try. Before each
  job the leader checks that its connection still answers: a lost connection is lost
  leadership, never a second leader.
- SQLite (one machine): an exclusive ``fcntl`` lock on a file next to the database, which the
  kernel releases when the process ends. An in-memory database has one process: it leads.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

LOCK_NAME = "civicwatch-sweep-leader"
MIGRATION_LOCK = "civicwatch-migrate"


def advisory_key(name: str) -> int:
    """pg advisory locks take a signed 64-bit key: a stable one from the name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


ADVISORY_KEY = advisory_key(LOCK_NAME)
CONNECT_TIMEOUT_SECONDS = 5


class Leader(Protocol):
    """The leadership of one process; thread-safe."""

    def try_lead(self) -> bool:
        """Take the leadership if it is free, keep it if held; True while this process leads."""
        ...

    def still_leading(self) -> bool:
        """Check (cheaply) that the leadership is still held; a lost one is given up."""
        ...

    @property
    def leading(self) -> bool:
        """The last known state, without asking anyone (metrics, health)."""
        ...

    def release(self) -> None:
        """Give the leadership up (at shutdown)."""
        ...


class AlwaysLeader:
    """One process per database by construction (an in-memory SQLite database)."""

    def try_lead(self) -> bool:
        return True

    def still_leading(self) -> bool:
        return True

    @property
    def leading(self) -> bool:
        return True

    def release(self) -> None:
        return None


class PostgresLeader:
    """A session-level advisory lock on a dedicated connection (not from the app's pool)."""

    def __init__(self, database_url: str, key: int = ADVISORY_KEY) -> None:
        self._engine: Engine = create_engine(
            make_url(database_url),
            poolclass=NullPool,
            connect_args={
                "connect_timeout": CONNECT_TIMEOUT_SECONDS,
                # A dead peer (a cut network) is noticed in ~20 s, not hours.
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 2,
                "application_name": f"civicwatch-sweep-{os.getpid()}",
            },
        )
        self._key = key
        self._connection: Connection | None = None
        self._lock = threading.Lock()

    @property
    def leading(self) -> bool:
        return self._connection is not None

    def try_lead(self) -> bool:
        with self._lock:
            if self._connection is not None:
                return self._alive()
            try:
                connection = self._engine.connect()
            except SQLAlchemyError as exc:
                log.warning("sweep leader: the database is unreachable: %s", _first_line(exc))
                return False
            try:
                won = bool(
                    connection.execute(
                        text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
                    ).scalar()
                )
                connection.commit()  # no transaction left open on the held session
            except SQLAlchemyError as exc:
                log.warning("sweep leader: could not ask for the lock: %s", _first_line(exc))
                connection.close()
                return False
            if not won:
                connection.close()
                return False
            self._connection = connection
            log.info("sweep leader: this process (pid %d) leads", os.getpid())
            return True

    def still_leading(self) -> bool:
        with self._lock:
            return self._connection is not None and self._alive()

    def _alive(self) -> bool:
        """The held connection answers; else leadership is lost (the lock went with it)."""
        connection = self._connection
        assert connection is not None
        try:
            connection.execute(text("SELECT 1"))
            connection.commit()
            return True
        except SQLAlchemyError as exc:
            log.error(
                "sweep leader: lost the lock's connection, no longer leading: %s",
                _first_line(exc),
            )
            self._drop()
            return False

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.invalidate()
                connection.close()
            except SQLAlchemyError:
                pass

    def release(self) -> None:
        with self._lock:
            connection = self._connection
            if connection is not None:
                try:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
                    connection.commit()
                except SQLAlchemyError:
                    pass  # closing the session frees it as well
                self._connection = None
                connection.close()
                log.info("sweep leader: pid %d gave the leadership up", os.getpid())
        self._engine.dispose()


class FileLeader:
    """An exclusive, non-blocking ``flock`` on a file; the kernel frees it with the process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def leading(self) -> bool:
        return self._file is not None

    def try_lead(self) -> bool:
        with self._lock:
            if self._file is not None:
                return True
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("a+b")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return False
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n".encode())
            handle.flush()
            self._file = handle
            log.info("sweep leader: this process (pid %d) leads (%s)", os.getpid(), self.path)
            return True

    def still_leading(self) -> bool:
        return self.leading

    def release(self) -> None:
        with self._lock:
            handle, self._file = self._file, None
            if handle is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
                handle.close()


@contextmanager
def exclusive(database_url: str, name: str = MIGRATION_LOCK) -> Iterator[None]:
    """Wait until no other process holds ``name`` for this database, then hold it (blocking):
    several processes starting at once against an empty database migrate one after another."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                key = advisory_key(name)
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
                connection.commit()
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    connection.commit()
        finally:
            engine.dispose()
    elif url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database)
        database.parent.mkdir(parents=True, exist_ok=True)
        with database.with_name(f"{database.name}.{name}.lock").open("a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    else:
        yield


def make_leader(database_url: str) -> Leader:
    """The leadership that fits the database: advisory lock, file lock, or always."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return PostgresLeader(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database)
        return FileLeader(database.with_name(database.name + ".sweep-leader.lock"))
    return AlwaysLeader()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
