"""Evidence rows and files, and the case's list of the frames that show it."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ingest.writer.batch import Batch, Placed
from ingest.writer.case_rows import CaseRow
from ingest.writer.sql import bulk_insert
from storage.evidence_guard import hold_for_new_bytes
from storage.evidence_store import EvidenceStore
from storage.tables import CaseEvidence, Evidence


def store_evidence(batch: Batch, fresh: list[Placed], store: EvidenceStore) -> int:
    """Insert the evidence rows; write the images of the rows that are new (not yet synced).

    A row that already exists was committed after its image was durable, so only the
    images this transaction inserts need writing (the contract already checked each hash).
    Small images get their pack places first (the rows record them; the store's plan());
    the rest are files. Returns how many images were written.
    """
    files: dict[str, bytes] = {}
    rows: dict[str, dict[str, Any]] = {}
    for item in fresh:
        for frame in item.event.evidence:
            copies = [(frame.sha256, frame.data)]
            if frame.redacted is not None:
                copies.append((frame.redacted.sha256, frame.redacted.data))
            for sha256, data in copies:
                files[sha256] = data
                rows[sha256] = {
                    "sha256": sha256,
                    "content_type": frame.content_type,
                    "size": len(data),
                    "width": frame.width,
                    "height": frame.height,
                    "stored_at": batch.now,
                }
    if not rows:
        return 0
    places = store.plan(files.items())
    for sha256, row in rows.items():
        place = places.get(sha256)
        row["pack"] = place.pack if place is not None else None
        row["pack_offset"] = place.offset if place is not None else None
    new = [
        row.sha256
        for row in bulk_insert(
            batch.session,
            Evidence,
            list(rows.values()),
            on_conflict=["sha256"],
            returning=["sha256"],
        )
    ]
    if new:  # held until the commit: the retention job removes no bytes meanwhile
        hold_for_new_bytes(batch.session)
    return store.write_unsynced((sha256, files[sha256]) for sha256 in new)


def link_evidence(batch: Batch, fresh: list[Placed], cases: dict[UUID, CaseRow]) -> None:
    """Give each case the frames of its violations' messages, in capture order."""
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for item in fresh:
        event = item.event
        case_id = cases[event.violation_id].require_id()
        for position, frame in enumerate(event.evidence):
            rows.setdefault(
                (case_id, frame.sha256),
                {
                    "case_id": case_id,
                    "sha256": frame.sha256,
                    "label": frame.label.value,
                    "captured_at": frame.captured_at,
                    "width": frame.width,
                    "height": frame.height,
                    "violation_id": event.violation_id,
                    "sequence": event.sequence,
                    "position": position,
                    "chain_sha256": frame.chain_sha256,
                    "redacted_sha256": frame.redacted.sha256 if frame.redacted else None,
                    "faces_blurred": frame.redacted.faces_blurred if frame.redacted else None,
                },
            )
    bulk_insert(batch.session, CaseEvidence, list(rows.values()), on_conflict=["case_id", "sha256"])
