"""The database side of evidence packs (storage/evidence_packs.py): where a packed image is,
from its evidence row; which packs no row names any more; and compaction, which copies the
live records of mostly-dead packs into a new one. Apart from the pack files themselves because
those are read by the store, which a gateway's install (no SQLAlchemy) imports too.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import Engine, bindparam, text

from storage.database import make_engine
from storage.evidence_packs import (
    HEADER,
    PACK_FOLDER,
    PACK_NAME,
    PackAppender,
    PackedAt,
    PackError,
    encode_record,
    fsync_directory,
    pack_path,
    read_record,
)


class RowLocator:
    """Finds a packed image's place from its evidence row, for readers that only have a hash
    (the training export, reports); its engine is made on first use from ``database_url``."""

    def __init__(self, database_url: str, engine: Engine | None = None) -> None:
        self._url = database_url
        self._engine = engine
        self._own = engine is None

    def __call__(self, sha256: str) -> PackedAt | None:
        if self._engine is None:
            self._engine = make_engine(self._url)
        with self._engine.connect() as conn:
            row = conn.execute(
                text("SELECT pack, pack_offset, size FROM evidence WHERE sha256 = :sha256"),
                {"sha256": sha256},
            ).first()
        return None if row is None else PackedAt.of(row[0], row[1], row[2])

    def close(self) -> None:
        if self._own and self._engine is not None:
            self._engine.dispose()
            self._engine = None


def collect_packs(
    engine: Engine, root: Path, in_use: set[str] | None = None, grace_s: float = 3600.0
) -> list[str]:
    """Remove the packs under ``root`` that no evidence row names; returns their names.

    Leaves alone a pack in ``in_use`` (this process is writing it) and any pack modified in the
    last ``grace_s`` seconds: another process's batch may have written it and not yet
    committed the rows that name it.
    """
    folder = root / PACK_FOLDER
    if not folder.is_dir():
        return []
    with engine.connect() as conn:
        named = {
            row[0]
            for row in conn.execute(
                text("SELECT DISTINCT pack FROM evidence WHERE pack IS NOT NULL")
            )
        }
    cutoff = time.time() - grace_s
    removed: list[str] = []
    for path in sorted(folder.glob("*.pack")):
        name = path.stem
        if name in named or name in (in_use or set()) or not PACK_NAME.match(name):
            continue
        try:
            if path.stat().st_mtime > cutoff:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(name)
    if removed:
        fsync_directory(folder)
    return removed


def compact_packs(
    engine: Engine, root: Path, in_use: set[str] | None = None, max_live_share: float = 0.5
) -> dict[str, int]:
    """Copy the live records of each pack whose rows name at most ``max_live_share`` of its
    bytes into one new pack, and point the rows there; returns the records moved per old pack.

    Crash-safe in this order: the new pack is written and fdatasynced, then the rows move in
    one transaction (each only if it still names the old place), and the old pack is left for
    collect_packs, after its grace period (a reader that looked up the old place just before
    still finds it). A crash before the commit leaves the new pack unnamed: collected later.
    Each record is read back checked against its SHA-256: a damaged one is not copied (its row
    keeps naming the old pack, which then stays).
    """
    with engine.connect() as conn:
        live = {
            row[0]: int(row[1])
            for row in conn.execute(
                text(
                    "SELECT pack, sum(size) + count(*) * :header FROM evidence "
                    "WHERE pack IS NOT NULL GROUP BY pack"
                ),
                {"header": HEADER.size},
            )
        }
    sparse = []
    for name, live_bytes in sorted(live.items()):
        if name in (in_use or set()):
            continue
        try:
            size = pack_path(root, name).stat().st_size
        except FileNotFoundError:
            continue
        if size and live_bytes <= max_live_share * size:
            sparse.append(name)
    if not sparse:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT sha256, pack, pack_offset, size FROM evidence WHERE pack IN :packs "
                "ORDER BY pack, pack_offset"
            ).bindparams(bindparam("packs", expanding=True)),
            {"packs": sparse},
        ).all()
    target = PackAppender.create(root)
    try:
        records: list[bytes] = []
        moves: list[dict[str, object]] = []
        moved: dict[str, int] = {}
        for sha256, pack, offset, size in rows:
            try:
                data = read_record(root, sha256, PackedAt(pack, offset, size))
            except (PackError, OSError):
                continue
            record = encode_record(sha256, data)
            moves.append(
                {
                    "sha256": sha256,
                    "old_pack": pack,
                    "old_offset": offset,
                    "new_pack": target.name,
                    "new_offset": target.end,
                }
            )
            target.end += len(record)
            records.append(record)
            moved[pack] = moved.get(pack, 0) + 1
        if records:
            target.write(0, records)
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE evidence SET pack = :new_pack, pack_offset = :new_offset "
                        "WHERE sha256 = :sha256 AND pack = :old_pack "
                        "AND pack_offset = :old_offset"
                    ),
                    moves,
                )
    finally:
        target.close()
    if not records:
        pack_path(root, target.name).unlink(missing_ok=True)
    now = time.time()
    for name in moved:  # collect_packs's grace period starts now, not at its last write
        os.utime(pack_path(root, name), (now, now))
    return moved
