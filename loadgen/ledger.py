"""Durable mode's ledger: every message an edge outbox accepted, recorded with its insert."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    message_id   TEXT PRIMARY KEY,
    violation_id TEXT NOT NULL,
    camera_id    TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS ledger_on_add AFTER INSERT ON messages BEGIN
    INSERT OR IGNORE INTO ledger VALUES (
        NEW.message_id,
        json_extract(CAST(NEW.payload AS TEXT), '$.violation_id'),
        json_extract(CAST(NEW.payload AS TEXT), '$.camera_id')
    );
END;
"""


def outbox_file(outbox_dir: Path, gateway_id: str) -> Path:
    return outbox_dir / f"outbox-{gateway_id}.sqlite"


def install_ledger(path: Path) -> None:
    """Record every message the outbox accepts, atomically with its insert (see module doc)."""
    connection = sqlite3.connect(path)
    try:
        connection.executescript(LEDGER_SCHEMA)
    finally:
        connection.close()


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    message_id: UUID
    violation_id: UUID
    camera_id: str


def read_ledger(outbox_dir: Path) -> list[LedgerEntry]:
    """Every message any outbox under ``outbox_dir`` ever accepted."""
    entries: list[LedgerEntry] = []
    for path in sorted(outbox_dir.glob("outbox-*.sqlite")):
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            has_ledger = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger'"
            ).fetchone()
            # No ledger yet: the outbox was just made and accepted nothing so far.
            rows = (
                connection.execute(
                    "SELECT message_id, violation_id, camera_id FROM ledger"
                ).fetchall()
                if has_ledger
                else []
            )
        finally:
            connection.close()
        entries.extend(LedgerEntry(UUID(m), UUID(v), str(c)) for m, v, c in rows)
    return entries
