"""Violation messages in, answers for the edge out: the broker-free core of the consumer."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from contracts.acks import AckOutcome, IngestAck
from contracts.events import ViolationEvent
from contracts.exemptions import DEFAULT_PLATE_CONFIDENCE_FLOOR
from contracts.sites import SiteRegistry
from ingest.exemption_check import ExemptionCheck
from ingest.metrics import IngestMetrics
from ingest.store import IngestService, StoreResult
from ingest.validation import Refusal, RefusalReason, parse_violation

log = logging.getLogger(__name__)


def is_transient(exc: BaseException) -> bool:
    """Errors that say nothing about the message: database down or locked, disk full, deadlock.

    The message is then not settled (no ack) and the batch is tried again later.
    """
    if isinstance(exc, OperationalError | InterfaceError | OSError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class ViolationHandler:
    def __init__(
        self,
        service: IngestService,
        registry: SiteRegistry,
        metrics: IngestMetrics,
        max_payload_bytes: int,
        plate_confidence_floor: float = DEFAULT_PLATE_CONFIDENCE_FLOOR,
    ) -> None:
        self._service = service
        self._registry = registry
        self._metrics = metrics
        self._max_payload_bytes = max_payload_bytes
        # The same exemption rules the gateways run: a stored violation they cover is flagged.
        self._exemptions = ExemptionCheck(
            service.session_factory, registry, metrics, plate_confidence_floor
        )

    def handle(self, topic: str, payload: bytes) -> IngestAck | None:
        """Validate and store one message; see handle_batch."""
        return self.handle_batch([(topic, payload)])[0]

    def handle_batch(self, messages: Sequence[tuple[str, bytes]]) -> list[IngestAck | None]:
        """Validate ``(topic, payload)`` messages and store the valid ones in one transaction.

        Returns the ack for each, in order; None where a message names no message_id. A
        refusal is logged and counted and stores nothing. When the batch fails for a reason
        that is the messages' own (not transient), it is stored again one message at a time so
        that a poison message is refused alone. Transient errors propagate: then nothing is
        settled and the caller must try the whole batch again.
        """
        acks: list[IngestAck | None] = [None] * len(messages)
        valid: list[tuple[int, str, ViolationEvent]] = []
        for index, (topic, payload) in enumerate(messages):
            try:
                event = parse_violation(topic, payload, self._registry, self._max_payload_bytes)
            except Refusal as refusal:
                acks[index] = self.refuse(topic, refusal)
                continue
            except Exception as exc:  # parsing is pure: whatever it raises is this message's
                log.exception("parsing a message on %s raised", topic)
                detail = f"unparseable: {type(exc).__name__}: {exc}"[:400]
                acks[index] = self.refuse(topic, Refusal(RefusalReason.INVALID, detail))
                continue
            valid.append((index, topic, event))
        if not valid:
            return acks
        try:
            outcomes = self._service.store_batch([event for _, _, event in valid])
        except Exception as exc:
            if is_transient(exc):
                raise
            if len(valid) == 1:
                index, topic, event = valid[0]
                acks[index] = self._poisoned(topic, event, exc)
                return acks
            log.warning("batch of %d failed (%s); storing one by one", len(valid), exc)
            for index, topic, event in valid:
                acks[index] = self.handle_one(topic, event)
            return acks
        for (index, topic, event), outcome in zip(valid, outcomes, strict=True):
            acks[index] = self._answer(topic, event, outcome)
        self._check_exemptions(
            [
                event
                for (_, _, event), o in zip(valid, outcomes, strict=True)
                if o is AckOutcome.STORED
            ]
        )
        return acks

    def _check_exemptions(self, stored: list[ViolationEvent]) -> None:
        """Flag what should have been exempt; the events are stored, so a failure here is only
        logged (the check must never make ingest refuse or redeliver)."""
        try:
            self._exemptions.check(stored)
        except Exception:
            log.exception("exemption check of %d stored events failed", len(stored))

    def _answer(self, topic: str, event: ViolationEvent, outcome: StoreResult) -> IngestAck | None:
        if isinstance(outcome, Refusal):
            return self.refuse(topic, outcome)
        return IngestAck(message_id=event.message_id, outcome=outcome)

    def handle_one(self, topic: str, event: ViolationEvent) -> IngestAck | None:
        """Store one parsed event alone; a non-transient failure refuses it as poison."""
        try:
            [outcome] = self._service.store_batch([event])
        except Refusal as refusal:
            return self.refuse(topic, refusal)
        except Exception as exc:
            if is_transient(exc):
                raise
            return self._poisoned(topic, event, exc)
        return self._answer(topic, event, outcome)

    def _poisoned(self, topic: str, event: ViolationEvent, exc: Exception) -> IngestAck | None:
        self._metrics.store_failures.labels(kind="poison").inc()
        log.error("message %s on %s cannot be stored: %r", event.message_id, topic, exc)
        refusal = Refusal(
            RefusalReason.STORE_FAILED, f"{type(exc).__name__}: {exc}"[:400], event.message_id
        )
        return self.refuse(topic, refusal)

    def refuse(self, topic: str, refusal: Refusal) -> IngestAck | None:
        """Count and log a refusal; the REJECTED ack for the edge when it named a message_id."""
        self.record_refusal(topic, refusal)
        if refusal.message_id is None:
            return None
        return IngestAck(
            message_id=refusal.message_id,
            outcome=AckOutcome.REJECTED,
            reason=f"{refusal.reason}: {refusal.detail}"[:500],
        )

    def record_refusal(self, topic: str, refusal: Refusal) -> None:
        self._metrics.refusals.labels(reason=refusal.reason.value).inc()
        log.warning(
            "refused message on %s: reason=%s message_id=%s detail=%s",
            topic,
            refusal.reason,
            refusal.message_id,
            refusal.detail,
        )
