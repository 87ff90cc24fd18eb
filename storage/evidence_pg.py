"""Evidence in PostgreSQL, for servers on several hosts that must all read every image.

One table, ``civicwatch_evidence.blob`` (sha256 text primary key, data bytea), not large
objects. It lives in a schema of its own, so the same database can hold it beside the
migrated tables without the migrations' schema comparison (public only) seeing it:

- an image is 50-300 KB, far below bytea's 1 GB, and TOAST stores it out of line anyway;
- ``INSERT ... ON CONFLICT (sha256) DO NOTHING`` makes a put idempotent and settles two
  concurrent puts of one hash on the primary key; a large object has no key of its own, so it
  needs a side table, and a lost race leaves an orphan object to ``lo_unlink`` (vacuumlo);
- rows are deleted, dumped, replicated and permission-checked like any table; large objects
  live in pg_largeobject, with their own privileges and pg_dump handling;
- the column's storage is EXTERNAL: JPEGs do not compress, so PostgreSQL skips trying.

Streaming a 300 KB image in chunks (large objects' one advantage) buys nothing here: the API
reads the image whole to re-hash it before serving it.

``path()`` (for code that wants a file, e.g. the report's PDF renderer) copies the image into
a local cache folder the first time; the cache is disposable and never the source of truth.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import Engine, bindparam, text
from sqlalchemy.dialects.postgresql import BYTEA
from sqlalchemy.engine import make_url

from storage.database import make_engine
from storage.evidence_pack_rows import RowLocator
from storage.evidence_packs import DEFAULT_PACK_MAX_BYTES, PackedAt
from storage.evidence_store import (
    DEFAULT_WRITER_THREADS,
    EvidenceError,
    EvidenceStore,
    SyncMode,
    prune_folder,
    write_copy,
)

SCHEMA = "civicwatch_evidence"
TABLE = f"{SCHEMA}.blob"
_SCHEMA_LOCK = 0x0E71DE7CE  # advisory lock key: two servers starting at once create it once

_CREATE = (
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " sha256 char(64) PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),"
    " data bytea NOT NULL,"
    " stored_at timestamptz NOT NULL DEFAULT now())",
    f"ALTER TABLE {TABLE} ALTER COLUMN data SET STORAGE EXTERNAL",
)
_INSERT = text(
    f"INSERT INTO {TABLE} (sha256, data) VALUES (:sha256, :data) ON CONFLICT (sha256) DO NOTHING"
).bindparams(bindparam("data", type_=BYTEA))
_READ = text(f"SELECT data FROM {TABLE} WHERE sha256 = :sha256")
_EXISTS = text(f"SELECT 1 FROM {TABLE} WHERE sha256 = :sha256")
_HELD = text(f"SELECT sha256 FROM {TABLE} WHERE sha256 IN :names").bindparams(
    bindparam("names", expanding=True)
)
_SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")
_DELETE = text(f"DELETE FROM {TABLE} WHERE sha256 = :sha256 RETURNING octet_length(data)")


class PostgresEvidenceStore(EvidenceStore):
    """Write-once images in a PostgreSQL table, keyed and checked by their SHA-256.

    ``engine`` must be PostgreSQL; ``cache_root`` is where path() materialises files.
    Ingest's write_unsynced() inserts the batch's images on a thread of its own, in its own
    transaction, while the batch's own transaction proceeds; sync() waits for that commit.
    """

    def __init__(self, engine: Engine, cache_root: Path) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError(
                f"the postgresql evidence store needs a PostgreSQL database, not "
                f"{engine.dialect.name}"
            )
        super().__init__(cache_root, writer_threads=0)
        self.engine = engine
        self._inserter: ThreadPoolExecutor | None = None
        self._inserter_lock = threading.Lock()
        self._waiting = threading.local()

    def create_schema(self) -> None:
        """Create the table if it is missing (idempotent, safe from several hosts at once)."""
        with self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            for statement in _CREATE:
                conn.execute(text(statement))

    def path(self, sha256: str) -> Path:
        """A local file holding the image, copied from the database on first use.

        The path is returned even when the database has no such image (as the folder store
        does); reading it then fails with FileNotFoundError.
        """
        cached = super().path(sha256)
        if cached.is_file():
            return cached
        try:
            data = self.read(sha256)
        except FileNotFoundError:
            return cached
        write_copy(cached, data)
        return cached

    def exists(self, sha256: str) -> bool:
        _check_name(sha256)
        with self.engine.connect() as conn:
            return conn.execute(_EXISTS, {"sha256": sha256}).first() is not None

    def put(self, data: bytes, sha256: str) -> Path:
        """Store ``data`` under ``sha256`` (committed when this returns); a no-op if there.

        Returns where path() puts its local copy (not written until path() is called).
        """
        _check_name(sha256)
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise EvidenceError(f"evidence sha256 mismatch: declared {sha256}, actual {actual}")
        with self.engine.begin() as conn:
            conn.execute(_INSERT, {"sha256": sha256, "data": data})
        return super().path(sha256)

    def remove(self, sha256: str) -> int:
        """Delete the image's row from the table and its cached copy; the bytes freed."""
        _check_name(sha256)
        with self.engine.begin() as conn:
            size = conn.execute(_DELETE, {"sha256": sha256}).scalar()
        return int(size or 0) + super().remove(sha256)

    def prune_copies(self, older_than_s: float) -> int:
        """Remove cached copies (the files path() made) older than ``older_than_s`` seconds:
        only files whose image the table holds, so a file the folder held before (a store
        moved from the local backend) is never taken for a copy."""
        pattern = "[0-9a-f][0-9a-f]/*.jpg"
        cached = prune_folder(self.root, older_than_s, pattern, self._held)
        return cached + super().prune_copies(older_than_s)

    def _held(self, paths: list[Path]) -> list[Path]:
        """Those of ``paths`` (named <sha256>.jpg) whose image the table holds."""
        by_name = {path.stem: path for path in paths if _SHA256_NAME.match(path.stem)}
        names = sorted(by_name)
        held: list[Path] = []
        with self.engine.connect() as conn:
            for start in range(0, len(names), 1000):
                part = names[start : start + 1000]
                found = conn.execute(_HELD, {"names": part}).scalars()
                held.extend(by_name[str(name).strip()] for name in found)
        return held

    def write_unsynced(self, items: Iterable[tuple[str, bytes]]) -> int:
        """Start inserting ``(sha256, data)`` (hashes already checked); sync() waits for it."""
        rows: list[dict[str, object]] = [
            {"sha256": _check_name(sha256), "data": data} for sha256, data in items
        ]
        self._waiting.future = self._inserter_pool().submit(self._insert, rows) if rows else None
        return len(rows)

    def sync(self) -> None:
        """Wait until this thread's last write_unsynced() committed; raises its failure."""
        future: Future[None] | None = getattr(self._waiting, "future", None)
        self._waiting.future = None
        if future is not None:
            future.result()

    def read(self, sha256: str, at: PackedAt | None = None) -> bytes:
        """The image, re-hashed; FileNotFoundError when the database has none by that hash.

        ``at`` is ignored: this store packs nothing (its rows never name a pack)."""
        _check_name(sha256)
        with self.engine.connect() as conn:
            row = conn.execute(_READ, {"sha256": sha256}).first()
        if row is None:
            raise FileNotFoundError(f"no evidence {sha256} in {TABLE}")
        data = bytes(row[0])
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise EvidenceError(
                f"stored evidence {sha256} is damaged: its content hashes to {actual}"
            )
        return data

    def close(self) -> None:
        with self._inserter_lock:
            pool, self._inserter = self._inserter, None
        if pool is not None:
            pool.shutdown(wait=True)
        super().close()

    def _insert(self, rows: list[dict[str, object]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(_INSERT, rows)

    def _inserter_pool(self) -> ThreadPoolExecutor:
        with self._inserter_lock:
            if self._inserter is None:
                self._inserter = ThreadPoolExecutor(
                    max_workers=DEFAULT_WRITER_THREADS, thread_name_prefix="evidence-pg"
                )
            return self._inserter


def _check_name(sha256: str) -> str:
    if len(sha256) != 64 or sha256.strip("0123456789abcdef"):
        raise EvidenceError(f"not a lowercase hex SHA-256: {sha256!r}")
    return sha256


def open_evidence_store(
    backend: str,
    root: Path,
    database_url: str,
    writer_threads: int = DEFAULT_WRITER_THREADS,
    sync: SyncMode = "files",
    pack_max_bytes: int = DEFAULT_PACK_MAX_BYTES,
) -> EvidenceStore:
    """The configured store: ``local`` files under ``root``, or ``postgresql`` at
    ``database_url`` (its table created if missing; ``root`` then only caches path() copies).

    ``local`` packs ingest's images of up to ``pack_max_bytes`` (0: none), and finds a packed
    image from its evidence row in ``database_url``.
    """
    if backend == "local":
        return EvidenceStore(
            root,
            writer_threads=writer_threads,
            sync=sync,
            pack_max_bytes=pack_max_bytes,
            # Always: images packed before packing was turned off are still read.
            locate=RowLocator(database_url),
        )
    if backend == "postgresql":
        if make_url(database_url).get_backend_name() != "postgresql":
            raise ValueError(
                "server.ingest.evidence_backend postgresql needs a PostgreSQL database: set "
                "server.ingest.evidence_database_url (or use PostgreSQL as the database)"
            )
        store = PostgresEvidenceStore(make_engine(database_url), root)
        store.create_schema()
        return store
    raise ValueError(f"unknown evidence backend {backend!r}: local or postgresql")
