"""Dispatch counters, registered on the server's registry (tests pass their own)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import and_, func, or_, select

from contracts.sites import SiteRegistry
from dispatch.config import Department
from dispatch.false_alarms import false_alarm_rates
from dispatch.reports.period import Period
from dispatch.reports.rates import measure
from storage.database import SessionFactory
from storage.tables import OPEN_STATES, Case, CaseState

RATES_MAX_AGE_SECONDS = 60.0  # how long /metrics reuses the rates it counted


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


class TrainingDataMetrics:
    """What the training-data exporter wrote, skipped and failed to write."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.items = Counter(
            "civicwatch_training_items",
            "Close-ups written as labelled data, by label (negative: false alarm; object)",
            ["label"],
            registry=self.registry,
        )
        self.skipped = Counter(
            "civicwatch_training_items_skipped",
            "Close-ups of reclassified cases left out: no box in the close-up or a class "
            "outside the training classes",
            registry=self.registry,
        )
        self.failures = Counter(
            "civicwatch_training_export_failures",
            "Training items or export runs that failed (logged; the dispatcher never sees it)",
            registry=self.registry,
        )


class CameraFalseAlarmCollector(Collector):
    """Per-camera cases, false alarms and their rate, read from the database at scrape time."""

    def __init__(self, session_factory: SessionFactory) -> None:
        self._sessions = session_factory

    def describe(self) -> Iterable[Metric]:
        """The families without values: registering asks this, not the database."""
        return _camera_families().values()

    def collect(self) -> Iterable[Metric]:
        with self._sessions() as session:
            rows = false_alarm_rates(session)
        families = _camera_families()
        for row in rows:
            families["cases"].add_metric([row.camera_id], row.cases)
            families["false_alarms"].add_metric([row.camera_id], row.false_alarms)
            families["reclassified"].add_metric([row.camera_id], row.reclassified)
            families["rate"].add_metric([row.camera_id], row.rate)
        yield from families.values()


def _camera_families() -> dict[str, GaugeMetricFamily]:
    return {
        "cases": GaugeMetricFamily("civicwatch_camera_cases", "Cases by camera", labels=["camera"]),
        "false_alarms": GaugeMetricFamily(
            "civicwatch_camera_false_alarms",
            "Cases closed as false alarms, by camera",
            labels=["camera"],
        ),
        "reclassified": GaugeMetricFamily(
            "civicwatch_camera_reclassified",
            "Cases whose kind the command centre changed, by camera",
            labels=["camera"],
        ),
        "rate": GaugeMetricFamily(
            "civicwatch_camera_false_alarm_ratio",
            "False alarms per case, by camera: a badly placed camera or zone stands out",
            labels=["camera"],
        ),
    }


class OverdueNowCollector(Collector):
    """Cases overdue at scrape time, by department: an open case past its resolve deadline, or
    a dispatched one past its accept deadline. Counted from the deadlines themselves, not the
    SLA sweep's flag, so the gauge is right between sweeps; a range scan of the deadline
    indexes, grouped, so a scrape stays cheap on 100,000 cases."""

    def __init__(self, session_factory: SessionFactory, clock: Callable[[], datetime]) -> None:
        self._sessions = session_factory
        self._clock = clock

    def describe(self) -> Iterable[Metric]:
        return [_overdue_family()]

    def collect(self) -> Iterable[Metric]:
        now = self._clock()
        late = or_(
            and_(Case.state.in_(list(OPEN_STATES)), Case.sla_due_at < now),
            and_(Case.state == CaseState.DISPATCHED, Case.ack_due_at < now),
        )
        department = func.coalesce(Case.department, "none")
        with self._sessions() as session:
            rows = session.execute(
                select(department, func.count()).where(late).group_by(department)
            )
            counts: dict[str, int] = {name: count for name, count in rows}
        family = _overdue_family()
        for name in sorted({*(d.value for d in Department), *counts}):
            family.add_metric([name], counts.get(name, 0))
        yield family


def _overdue_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "civicwatch_cases_overdue_now",
        "Open cases past a deadline now (resolve, or accept while dispatched), by department",
        labels=["department"],
    )


class RatesCollector(Collector):
    """civicwatch_rate{rate, department, period}: the three rates (docs/rates.md) of the current
    week and month, every site's cases in its own time zone. Counting a month of cases is a few
    queries, not free: the answer is kept for ``max_age`` seconds, so scrapes in between cost
    nothing. A rate with nothing to count (no case, no rating) has no sample, never 0."""

    def __init__(
        self,
        session_factory: SessionFactory,
        registry: SiteRegistry,
        clock: Callable[[], datetime],
        max_age: float = RATES_MAX_AGE_SECONDS,
    ) -> None:
        self._sessions = session_factory
        self._registry = registry
        self._clock = clock
        self._max_age = max_age
        self._lock = threading.Lock()
        self._kept: tuple[datetime, list[tuple[str, str, str, float]]] | None = None

    def describe(self) -> Iterable[Metric]:
        return [_rates_family()]

    def collect(self) -> Iterable[Metric]:
        family = _rates_family()
        for labels in self._samples():
            family.add_metric(list(labels[:3]), labels[3])
        yield family

    def _samples(self) -> list[tuple[str, str, str, float]]:
        now = self._clock()
        with self._lock:
            if self._kept is not None and (now - self._kept[0]).total_seconds() < self._max_age:
                return self._kept[1]
            samples: list[tuple[str, str, str, float]] = []
            with self._sessions() as session:
                for period in Period:
                    table = measure(session, self._registry, period, now)
                    for department, rates in table.rows.items():
                        for name, value in (
                            ("response", rates.response_rate),
                            ("resolution", rates.resolution_rate),
                            ("satisfaction", rates.satisfaction_rate),
                        ):
                            if value is not None:
                                samples.append((name, department, period.value, value))
            self._kept = (now, samples)
            return samples


def _rates_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "civicwatch_rate",
        "响应率/解决率/满意率 of the current week or month, by department (docs/rates.md); "
        "no sample when there is nothing to count",
        labels=["rate", "department", "period"],
    )
