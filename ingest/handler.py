"""One violation message in, one answer for the edge out: the broker-free core of the consumer."""

from __future__ import annotations

import logging

from contracts.acks import AckOutcome, IngestAck
from contracts.sites import SiteRegistry
from ingest.metrics import IngestMetrics
from ingest.store import IngestService
from ingest.validation import Refusal, parse_violation

log = logging.getLogger(__name__)


class ViolationHandler:
    def __init__(
        self,
        service: IngestService,
        registry: SiteRegistry,
        metrics: IngestMetrics,
        max_payload_bytes: int,
    ) -> None:
        self._service = service
        self._registry = registry
        self._metrics = metrics
        self._max_payload_bytes = max_payload_bytes

    def handle(self, topic: str, payload: bytes) -> IngestAck | None:
        """Validate and store one message; the ack to send, or None when no message_id is known.

        A refusal is logged and counted and stores nothing. Database errors propagate: the
        message is then not settled and must be tried again.
        """
        try:
            event = parse_violation(topic, payload, self._registry, self._max_payload_bytes)
            outcome = self._service.store(event)
        except Refusal as refusal:
            self.record_refusal(topic, refusal)
            if refusal.message_id is None:
                return None
            return IngestAck(
                message_id=refusal.message_id,
                outcome=AckOutcome.REJECTED,
                reason=f"{refusal.reason}: {refusal.detail}"[:500],
            )
        return IngestAck(message_id=event.message_id, outcome=outcome)

    def record_refusal(self, topic: str, refusal: Refusal) -> None:
        self._metrics.refusals.labels(reason=refusal.reason.value).inc()
        log.warning(
            "refused message on %s: reason=%s message_id=%s detail=%s",
            topic,
            refusal.reason,
            refusal.message_id,
            refusal.detail,
        )
