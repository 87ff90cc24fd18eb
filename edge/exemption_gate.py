"""The edge applies the rule document: an exempt stop never leaves the gateway.

Where a dwell rule opens a violation (the dwell crossed), the gateway's RuleStore decides:

- exempt: no event is published; the violation is held here and counted (``RuleStore.exempted``);
  its updates are decided again as they come, so a family-bay stay that runs over its minutes,
  or a permit revoked meanwhile, is published then, as ``opened`` with the update's frames (an
  update without frames waits for the next one that has them); its ``cleared`` stays here;
- warn (a family bay's unreadable plate): not enforced, held and counted in
  ``RuleStore.warned`` (the warning stage itself, issue 13 point 3, is not built yet);
- enforce: published as before.

Structures (no-build zones) are never exempt. Each stay of a readable plate is remembered for
two days so a family bay can count a plate's visits per day.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from uuid import UUID

from contracts.events import Phase
from contracts.exemptions import Decision, Outcome, StayHistory
from contracts.sites import CameraConfig
from edge.rule_store import RuleStore
from edge.rules import RuleEvent

log = logging.getLogger(__name__)

STAY_MEMORY = timedelta(days=2)
MAX_REMEMBERED_STAYS = 100  # per plate and zone: a day's visit limit never comes near it


class ExemptionGate:
    """One camera's filter between its dwell rules and the outbox."""

    def __init__(self, camera: CameraConfig, rules: RuleStore) -> None:
        self._camera = camera
        self._rules = rules
        self._held: dict[UUID, Decision] = {}
        self._stays: dict[tuple[str, str], list[datetime]] = {}
        self.decisions: list[tuple[UUID, Decision]] = []  # the latest few, for logs and tests

    def admit(self, event: RuleEvent) -> RuleEvent | None:
        """The event to publish (perhaps turned into ``opened``), or None when it stays here."""
        zone = self._camera.zone(event.zone_id)
        if zone is None:
            return event
        held = event.violation_id in self._held
        if event.phase is Phase.CLEARED:
            if held:
                del self._held[event.violation_id]
                return None
            return event
        if event.phase is Phase.UPDATED and not held:
            return event
        decision = self._decide(event)
        self.decisions = [*self.decisions[-99:], (event.violation_id, decision)]
        if decision.outcome is Outcome.ENFORCE:
            if not held:
                return event
            if not event.evidence:
                return None  # opened needs frames: the next update that has them opens it
            del self._held[event.violation_id]
            log.info("violation %s no longer exempt: %s", event.violation_id, decision.why)
            return replace(event, phase=Phase.OPENED)
        if not held:
            if decision.outcome is Outcome.EXEMPT:
                self._rules.exempted += 1
            else:
                self._rules.warned += 1
            log.info(
                "violation %s in %s held at the gateway: %s (%s by rule %s)",
                event.violation_id,
                event.zone_id,
                decision.outcome,
                decision.why,
                decision.rule_id,
            )
        self._held[event.violation_id] = decision
        return None

    def _decide(self, event: RuleEvent) -> Decision:
        zone = self._camera.zone(event.zone_id)
        assert zone is not None
        plate = event.plate.text if event.plate is not None else None
        confidence = event.plate.confidence if event.plate is not None else None
        earlier: tuple[datetime, ...] = ()
        if plate is not None:
            starts = self._remember(zone.id, plate, event.started_at)
            earlier = tuple(s for s in starts if s < event.started_at)
        history = StayHistory(event.started_at, earlier)
        return self._rules.decide(plate, confidence, zone, event.observed_at, history)

    def _remember(self, zone_id: str, plate: str, started_at: datetime) -> list[datetime]:
        key = (zone_id, plate)
        cutoff = started_at - STAY_MEMORY
        starts = [s for s in self._stays.get(key, []) if s >= cutoff]
        if started_at not in starts:
            starts.append(started_at)
        self._stays[key] = starts[-MAX_REMEMBERED_STAYS:]
        if len(self._stays) > 10_000:  # a busy gate: forget the oldest plates first
            del self._stays[next(iter(self._stays))]
        return starts
