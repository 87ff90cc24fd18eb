"""The edge applies the rule document: an exempt stop never leaves the gateway.

Where a dwell rule opens a violation (the dwell crossed), the gateway's RuleStore decides:

- exempt: no event is published; the violation is held here and counted (``RuleStore.exempted``);
  its updates are decided again as they come, so a family-bay stay that runs over its minutes,
  or a permit revoked meanwhile, is published then, as ``opened`` with the update's frames (on
  an update without frames the gate asks the dwell rule for frames on the next one,
  ``frames_wanted``, so the cadence's cap never keeps a held stop from opening); its
  ``cleared`` stays here;
- warn (a family bay's unreadable plate): not enforced; with a warning stage on the zone it is
  warned through it (below), else held and counted in ``RuleStore.warned``;
- enforce: published as before, unless a ``warning_stage`` rule covers the zone: then the
  warning stage (edge.warning) warns first and enforces only after its grace period; the same
  goes for a held stop that stops being exempt (a family bay's stay over time).

Structures (no-build zones) are never exempt. Each stay of a readable plate is remembered for
two days so a family bay can count a plate's visits per day.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from uuid import UUID

from contracts.events import Phase, WarningNotice
from contracts.exemptions import Decision, Outcome, StayHistory
from contracts.sites import CameraConfig, ZoneConfig
from edge.detections import Frame
from edge.rule_store import RuleStore
from edge.rules import RuleEvent
from edge.warning import WarningStage

log = logging.getLogger(__name__)

STAY_MEMORY = timedelta(days=2)
MAX_REMEMBERED_STAYS = 100  # per plate and zone: a day's visit limit never comes near it


class ExemptionGate:
    """One camera's filter between its dwell rules and the outbox."""

    def __init__(
        self, camera: CameraConfig, rules: RuleStore, warnings: WarningStage | None = None
    ) -> None:
        self._camera = camera
        self._rules = rules
        self.warnings = warnings
        self._held: dict[UUID, Decision] = {}
        self._stays: dict[tuple[str, str], list[datetime]] = {}
        self.decisions: list[tuple[UUID, Decision]] = []  # the latest few, for logs and tests
        self._frames_wanted: set[UUID] = set()

    def admit(self, event: RuleEvent) -> RuleEvent | None:
        """The event to publish (perhaps turned into ``opened``), or None when it stays here."""
        zone = self._camera.zone(event.zone_id)
        if zone is None:
            return event
        stage = self.warnings
        if stage is not None and stage.holds(event.violation_id):
            return stage.follow(event)  # in its grace period: only its complied leaves
        held = event.violation_id in self._held
        if event.phase is Phase.CLEARED:
            if stage is not None:
                stage.forget(event.violation_id)
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
                return self._warn_first(event, zone)
            if not event.evidence:
                # opened needs frames: the pipeline has the next update carry them
                self._frames_wanted.add(event.violation_id)
                return None
            del self._held[event.violation_id]
            log.info("violation %s no longer exempt: %s", event.violation_id, decision.why)
            return self._warn_first(replace(event, phase=Phase.OPENED), zone)
        if decision.outcome is Outcome.WARN and not held and stage is not None:
            warned = stage.start(event, zone)
            if warned is not None:
                return warned
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

    def frames_wanted(self) -> set[UUID]:
        """Held stops that must open and wait for frames (taken: asked once each)."""
        wanted, self._frames_wanted = self._frames_wanted, set()
        return wanted

    def _warn_first(self, event: RuleEvent, zone: ZoneConfig) -> RuleEvent:
        """The stop's ``warned`` event when a warning stage applies, else ``event`` itself."""
        if self.warnings is None:
            return event
        return self.warnings.start(event, zone) or event

    def expire(self, frame: Frame) -> list[RuleEvent]:
        """Warned stops still there when their grace ends by ``frame``: their opened events."""
        return self.warnings.expire(frame) if self.warnings is not None else []

    def notice(self, event: RuleEvent) -> WarningNotice | None:
        """The warning an outgoing warned, complied or opened event carries, if it had one."""
        if self.warnings is None or event.phase not in (
            Phase.WARNED,
            Phase.COMPLIED,
            Phase.OPENED,
        ):
            return None
        return self.warnings.notice(event.violation_id)

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
