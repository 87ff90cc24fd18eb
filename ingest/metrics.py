"""Ingest counters, in a registry of their own so tests and servers never share state."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.events_received = Counter(
            "civicwatch_ingest_events_received",
            "Violation messages received from the broker",
            registry=self.registry,
        )
        self.events_stored = Counter(
            "civicwatch_ingest_events_stored",
            "Violation messages committed",
            registry=self.registry,
        )
        self.duplicates = Counter(
            "civicwatch_ingest_duplicates",
            "Violation messages already stored (redelivered or resent)",
            registry=self.registry,
        )
        self.refusals = Counter(
            "civicwatch_ingest_refusals",
            "Messages refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.cases_opened = Counter(
            "civicwatch_ingest_cases_opened",
            "Cases created from violations",
            registry=self.registry,
        )
        self.sequence_gaps = Counter(
            "civicwatch_ingest_sequence_gaps",
            "Messages missing from a camera's sequence when a later one arrived",
            registry=self.registry,
        )
        self.status_messages = Counter(
            "civicwatch_ingest_status_messages",
            "Camera and gateway status messages stored",
            registry=self.registry,
        )

    def refusal_count(self, reason: str) -> float:
        value = self.registry.get_sample_value(
            "civicwatch_ingest_refusals_total", {"reason": reason}
        )
        return value or 0.0
