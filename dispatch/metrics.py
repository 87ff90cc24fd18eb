"""Dispatch counters, registered on the server's registry (tests pass their own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class DispatchMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.sla_breaches = Counter(
            "civicwatch_sla_breaches",
            "Cases that went overdue, by the deadline they missed first (ack or resolve)",
            ["kind", "department", "deadline"],
            registry=self.registry,
        )
        self.escalations = Counter(
            "civicwatch_escalations",
            "Overdue cases escalated, by level (supervisor or head) and the deadline missed",
            ["kind", "department", "deadline", "to"],
            registry=self.registry,
        )
        self.sla_transfers = Counter(
            "civicwatch_sla_transfers",
            "Community-tier cases handed to their escalation department when their SLA ran out",
            ["kind", "from_department", "to_department"],
            registry=self.registry,
        )
        self.sla_sweep_errors = Counter(
            "civicwatch_sla_sweep_errors",
            "Cases the SLA sweep could not act on (the workflow refused), by action",
            ["action"],
            registry=self.registry,
        )
