"""Ingest's confirmation back to a gateway, sent only after the database commit.

Two forms travel on a gateway's ack topic: one ``IngestAck`` per message (every server
version sends it) and ``IngestAckBatch``, all of one committed batch's acks for that gateway in
one message, in the order the messages arrived. Ingest sends the batch only to a gateway whose
latest ``GatewayStatus`` says ``ack_batch: true`` (gateways that read batches announce it); to
any other (an older gateway, a plain client, one whose status it has not seen yet) it sends
singles, which every gateway reads. Both are additive to contract 1.x: ``ack_batch`` is a new
optional field an older server ignores, and an older server never sends a batch.
``parse_acks`` reads either form, validating every item before returning any.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import Discriminator, Field, Tag, TypeAdapter

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


ACK_BATCH_MAX_ITEMS = 1_000
"""Most acks in one IngestAckBatch; ingest splits a larger batch's acks over several."""

ACK_BATCH_MAX_BYTES = 256 * 1024
"""Largest IngestAckBatch payload. A stored ack is ~75 bytes (1,000 are ~75 KB); one with a
500-character reason at most ~3.1 KB escaped, so even then over 80 fit. A reader refuses a
larger payload before parsing it."""

_BATCH_OPEN = b'{"acks":['
_BATCH_CLOSE = b"]}"


class IngestAckBatch(_WireModel):
    """The acks of one committed ingest batch for one gateway, in arrival order."""

    acks: list[IngestAck] = Field(min_length=1, max_length=ACK_BATCH_MAX_ITEMS)

    def to_wire(self) -> bytes:
        return self.model_dump_json().encode()


def batch_wire(acks: list[IngestAck]) -> list[bytes]:
    """``acks`` as IngestAckBatch payloads, in order, each within ACK_BATCH_MAX_ITEMS and
    ACK_BATCH_MAX_BYTES (the same bytes ``IngestAckBatch(acks=...).to_wire()`` makes, built
    from each ack's own JSON so that the size is known while it is built)."""
    payloads: list[bytes] = []
    parts: list[bytes] = []
    size = len(_BATCH_OPEN) + len(_BATCH_CLOSE)
    for ack in acks:
        part = ack.to_wire()
        grown = size + len(part) + (1 if parts else 0)
        if parts and (len(parts) == ACK_BATCH_MAX_ITEMS or grown > ACK_BATCH_MAX_BYTES):
            payloads.append(_BATCH_OPEN + b",".join(parts) + _BATCH_CLOSE)
            parts = []
            grown = len(_BATCH_OPEN) + len(_BATCH_CLOSE) + len(part)
        parts.append(part)
        size = grown
    if parts:
        payloads.append(_BATCH_OPEN + b",".join(parts) + _BATCH_CLOSE)
    return payloads


class AckTooLargeError(ValueError):
    """An ack message over ACK_BATCH_MAX_BYTES: refused before parsing."""


def _form(value: Any) -> str:
    """An object with "acks" is a batch and must hold as one (it never falls back to a single
    ack, whatever else it carries); anything else is read as a single ack."""
    return "batch" if isinstance(value, dict) and "acks" in value else "single"


_EITHER: TypeAdapter[IngestAckBatch | IngestAck] = TypeAdapter(
    Annotated[
        Annotated[IngestAckBatch, Tag("batch")] | Annotated[IngestAck, Tag("single")],
        Discriminator(_form),
    ]
)


def parse_acks(payload: bytes) -> list[IngestAck]:
    """The acks an ack-topic message carries, single or batched, in order; all or nothing.

    Raises AckTooLargeError (over ACK_BATCH_MAX_BYTES) or pydantic's ValidationError (not JSON,
    not either form, or any item invalid: nothing of a bad batch is returned)."""
    if len(payload) > ACK_BATCH_MAX_BYTES:
        raise AckTooLargeError(
            f"ack message is {len(payload)} bytes, the limit is {ACK_BATCH_MAX_BYTES}"
        )
    parsed = _EITHER.validate_json(payload)
    if isinstance(parsed, IngestAckBatch):
        return list(parsed.acks)
    return [parsed]
