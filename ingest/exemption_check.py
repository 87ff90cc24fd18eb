"""Ingest checks incoming violations against the same exemption rules the gateways run.

The gateway decides (an exempt stop never leaves it); the server checks. After a batch is
stored, each newly stored ``opened`` event is evaluated (contracts.exemptions.evaluate) against
its site's rules as the database holds them now. One that should have been exempt (a gateway
running an old document, a permit issued after the crossing, a forged or buggy gateway) is not
silently accepted: it is counted (civicwatch_ingest_should_have_been_exempt_total, by why) and
flagged on its case with an ``exemption_flagged`` entry on the case's audit chain naming the
rule. The case itself stays as it is: a person decides.

The document is built as the server builds the gateways' (the site's unrevoked rules, plus the
residents' vehicle registry's plates, contracts/registry_plates.py) with the server's configured
``server.exemptions.plate_confidence_floor``, so ingest and the gateways decide alike. Rules are
read per site and kept for ``CACHE_SECONDS`` so a busy batch costs one query a site.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from uuid import UUID

from pydantic import TypeAdapter
from sqlalchemy import select

from contracts.events import Phase, ViolationEvent
from contracts.exemptions import (
    DEFAULT_PLATE_CONFIDENCE_FLOOR,
    Decision,
    Rule,
    RuleDocument,
    StayHistory,
    evaluate,
)
from contracts.registry_plates import RegistryPlates, with_registry
from contracts.sites import SiteRegistry
from ingest.metrics import IngestMetrics
from storage.audit import append_entry
from storage.database import SessionFactory
from storage.tables import Case, CaseTransition, ExemptionRuleRow, RegistryVehicle, utcnow

log = logging.getLogger(__name__)

CACHE_SECONDS = 2.0
FLAG_ACTION = "exemption_flagged"
_RULE = TypeAdapter[Rule](Rule)


class ExemptionCheck:
    def __init__(
        self,
        sessions: SessionFactory,
        registry: SiteRegistry,
        metrics: IngestMetrics,
        plate_confidence_floor: float = DEFAULT_PLATE_CONFIDENCE_FLOOR,
    ) -> None:
        """``plate_confidence_floor``: the server's ``server.exemptions.plate_confidence_floor``,
        the one the gateways' documents carry."""
        self._floor = plate_confidence_floor
        self._sessions = sessions
        self._registry = registry
        self._metrics = metrics
        self._cache: dict[str, tuple[float, RuleDocument]] = {}

    def decide(self, event: ViolationEvent) -> Decision | None:
        """The decision for an opened or warned event (a warning is a stop the gateway did not
        exempt, too), or None when there is nothing to decide."""
        found = self._registry.camera(event.camera_id)
        # A stop's first event to the server: warned, or opened without a warning before it.
        first = event.phase is Phase.WARNED or (
            event.phase is Phase.OPENED and event.warning is None
        )
        if found is None or not first:
            return None
        site, _gateway, camera = found
        zone = camera.zone(event.zone_id)
        if zone is None:
            return None
        plate = event.plate.text if event.plate is not None else None
        confidence = event.plate.confidence if event.plate is not None else None
        history = StayHistory(event.started_at)
        return evaluate(
            self._document(site.id), plate, confidence, zone, site, event.observed_at, history
        )

    def check(self, events: Sequence[ViolationEvent]) -> list[tuple[ViolationEvent, Decision]]:
        """Flag every stored opened event that should have been exempt; returns those."""
        flagged = []
        for event in events:
            decision = self.decide(event)
            if decision is not None and decision.exempt:
                flagged.append((event, decision))
        if flagged:
            self._flag(flagged)
        return flagged

    def _flag(self, flagged: list[tuple[ViolationEvent, Decision]]) -> None:
        now = utcnow()
        with self._sessions.begin() as session:
            by_violation: dict[UUID, tuple[ViolationEvent, Decision]] = {
                event.violation_id: (event, decision) for event, decision in flagged
            }
            cases = session.scalars(
                select(Case).where(Case.violation_id.in_(list(by_violation)))
            ).all()
            for case in cases:
                event, decision = by_violation[case.violation_id]
                self._metrics.should_have_been_exempt.labels(why=decision.why.value).inc()
                log.warning(
                    "violation %s (case %d, gateway %s) should have been exempt: %s by rule %s",
                    event.violation_id,
                    case.id,
                    event.gateway_id,
                    decision.why,
                    decision.rule_id,
                )
                append_entry(
                    session,
                    CaseTransition(
                        case_id=case.id,
                        from_state=case.state,
                        to_state=case.state,
                        actor="ingest",
                        reason=f"should have been exempt: {decision.why.value}",
                        at=now,
                        action=FLAG_ACTION,
                        detail={
                            "rule_id": decision.rule_id,
                            "why": decision.why.value,
                            "gateway_id": event.gateway_id,
                        },
                    ),
                )

    def _document(self, site_id: str) -> RuleDocument:
        cached = self._cache.get(site_id)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        with self._sessions() as session:
            rows = session.scalars(
                select(ExemptionRuleRow.body)
                .where(ExemptionRuleRow.site_id == site_id)
                .where(ExemptionRuleRow.revoked_at.is_(None))
            ).all()
            registered = session.execute(
                select(
                    RegistryVehicle.plate, RegistryVehicle.category, RegistryVehicle.updated_at
                ).where(RegistryVehicle.site_id == site_id)
            )
            plates = RegistryPlates.of([(p, c, at) for p, c, at in registered])
        rules = [_RULE.validate_python(body) for body in rows]
        document = RuleDocument(
            site_id=site_id,
            gateway_id="ingest",
            version=1,
            issued_at=utcnow(),
            plate_confidence_floor=self._floor,
            rules=with_registry(rules, plates, site_id),
        )
        self._cache[site_id] = (time.monotonic(), document)
        return document
