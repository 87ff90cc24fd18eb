"""Ingest's confirmation back to a gateway, sent only after the database commit."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import Field

from contracts.events import _WireModel


class AckOutcome(StrEnum):
    STORED = "stored"  # committed now
    DUPLICATE = "duplicate"  # committed earlier; safe to forget
    REJECTED = "rejected"  # will never be stored (invalid); the edge dead-letters it


class IngestAck(_WireModel):
    message_id: UUID
    outcome: AckOutcome
    reason: str = Field(default="", max_length=500)

    @property
    def settled(self) -> bool:
        """The edge may drop the message from its outbox."""
        return self.outcome in (AckOutcome.STORED, AckOutcome.DUPLICATE)

    def to_wire(self) -> bytes:
        return self.model_dump_json().encode()
