"""Ingest counters, in a registry of their own so tests and servers never share state."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.warnings = Counter(
            "civicwatch_ingest_warnings",
            "Warning-stage items by outcome: warned, complied (closed), enforced (routed)",
            ["outcome"],
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
        self.sequence_gaps_filled = Counter(
            "civicwatch_ingest_sequence_gaps_filled",
            "Missing messages that arrived late and closed (part of) a gap",
            registry=self.registry,
        )
        self.sequence_missing = Gauge(
            "civicwatch_ingest_sequence_missing",
            "Messages still missing from the cameras' sequences (open gaps, all workers)",
            registry=self.registry,
        )
        self.violations_merged = Counter(
            "civicwatch_ingest_violations_merged",
            "Violations that joined another camera's case of the same incident",
            registry=self.registry,
        )
        self.chain_breaks = Counter(
            "civicwatch_ingest_chain_breaks",
            "Violations whose evidence hash chain stopped verifying",
            registry=self.registry,
        )
        self.should_have_been_exempt = Counter(
            "civicwatch_ingest_should_have_been_exempt",
            "Stored violations an exemption rule covers: flagged on their case (ingest/"
            "exemption_check.py)",
            ["why"],
            registry=self.registry,
        )
        self.store_failures = Counter(
            "civicwatch_ingest_store_failures",
            "Batches that could not be stored "
            "(transient: retried; poison: one message refused; bug: retried one by one)",
            ["kind"],
            registry=self.registry,
        )
        self.batch_messages = Histogram(
            "civicwatch_ingest_batch_messages",
            "Messages per writer batch",
            buckets=(1, 5, 20, 50, 100, 200, 500, 1000, 2000, 5000),
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "civicwatch_ingest_batch_seconds",
            "Seconds from a batch's first message taken to its acks sent",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.duplicate_conflicts = Counter(
            "civicwatch_ingest_duplicate_conflicts",
            "Duplicates whose payload differs from the stored message (the first is kept)",
            registry=self.registry,
        )
        self.refresh_failures = Counter(
            "civicwatch_ingest_metric_refresh_failures",
            "Gauge refreshes from the database that failed (the gauge keeps its last value)",
            ["metric"],
            registry=self.registry,
        )
        self.status_messages = Counter(
            "civicwatch_ingest_status_messages",
            "Camera and gateway status messages stored",
            registry=self.registry,
        )

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's current value (0 when never set), e.g. ``value("..._stored_total")``."""
        return self.registry.get_sample_value(name, labels or {}) or 0.0

    def refusal_count(self, reason: str) -> float:
        value = self.registry.get_sample_value(
            "civicwatch_ingest_refusals_total", {"reason": reason}
        )
        return value or 0.0
