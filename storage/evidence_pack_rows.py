"""The database side of evidence packs (storage/evidence_packs.py): where a packed image is,
from its evidence row, and which packs no row names any more. Apart from the pack files
themselves because those are read by the store, which a gateway's install (no SQLAlchemy)
imports too.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Engine, text

from storage.database import make_engine
from storage.evidence_packs import PACK_FOLDER, PACK_NAME, PackedAt, fsync_directory


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
