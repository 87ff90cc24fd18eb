"""Event rows: inserted once per message id, and duplicates whose payload differs."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select

from contracts.events import ViolationEvent
from ingest.writer.batch import Batch, Placed
from ingest.writer.sql import bulk_insert, uuid_in
from storage.tables import Event

_PAYLOAD_WITHOUT_IMAGES: Any = {
    "evidence": {"__all__": {"data": True, "redacted": {"data": True}}},
}

# What may differ between two sends of one message: the outbox marks resends as historical.
_NOT_COMPARED = ("historical", "schema_version")


def insert_events(batch: Batch, unique: list[Placed]) -> set[UUID]:
    """Insert the events (ON CONFLICT DO NOTHING); the message ids actually inserted."""
    rows = [_event_values(item.event, batch.now) for item in unique]
    inserted = bulk_insert(
        batch.session, Event, rows, on_conflict=["message_id"], returning=["message_id"]
    )
    return {row.message_id for row in inserted}


def find_conflicts(
    batch: Batch, placed: list[Placed], first_of: dict[UUID, int], settled: set[UUID]
) -> None:
    """Duplicates whose payload differs from the first one's (the one kept)."""
    firsts = set(first_of.values())
    again = {item.event.message_id for index, item in enumerate(placed) if index not in firsts}
    kept = {  # only ids sent twice in this batch: the hot path dumps nothing extra
        message_id: _comparable(placed[first_of[message_id]].event)
        for message_id in again & settled
    }
    earlier = [message_id for message_id in first_of if message_id not in settled]
    if earlier:  # stored by an earlier batch: compare with what the database holds
        for message_id, payload in batch.session.execute(
            select(Event.message_id, Event.payload).where(
                uuid_in(Event.message_id, earlier, batch.postgres)
            )
        ):
            kept[message_id] = _comparable_payload(payload)
    for index, item in enumerate(placed):
        message_id = item.event.message_id
        if first_of[message_id] == index and message_id in settled:
            continue  # the first copy itself
        first = kept.get(message_id)
        if first is None:
            continue  # in neither: only possible in a race; the redelivery compares
        new = _comparable(item.event)
        if new != first:
            differ = sorted(
                key for key in first.keys() | new.keys() if first.get(key) != new.get(key)
            )
            batch.report.conflicts.append((message_id, differ))


def _comparable_payload(payload: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if key not in _NOT_COMPARED}


def _comparable(event: ViolationEvent) -> dict[str, Any]:
    """The event as its stored payload holds it, less what a resend may change."""
    return _comparable_payload(event.model_dump(mode="json", exclude=_PAYLOAD_WITHOUT_IMAGES))


def _event_values(event: ViolationEvent, now: datetime) -> dict[str, Any]:
    return {
        "message_id": event.message_id,
        "violation_id": event.violation_id,
        "camera_id": event.camera_id,
        "site_id": event.site_id,
        "gateway_id": event.gateway_id,
        "sequence": event.sequence,
        "phase": event.phase.value,
        "kind": event.kind.value,
        "zone_id": event.zone_id,
        "observed_at": event.observed_at,
        "received_at": now,
        "historical": event.historical,
        "payload": event.model_dump(mode="json", exclude=_PAYLOAD_WITHOUT_IMAGES),
        "plate_text": event.plate.text if event.plate else None,
        "plate_confidence": event.plate.confidence if event.plate else None,
        "blocked_share": event.blocked_share,
    }
