"""The warning stage at the edge (先提醒后执法): warn at the dwell crossing, enforce after a grace.

Where a stop would be enforced (``contracts.exemptions.evaluate`` says enforce, or warn for a
family bay's unreadable plate) and a ``warning_stage`` rule covers its zone
(``contracts.exemptions.warning_stage``):

- at the dwell crossing an ``Announcement`` goes to the gateway's announce topic (when the rule
  lists the ``announce`` channel) and a ``warned`` event goes to ingest, carrying the
  dwell-crossed frames as the "before" evidence and the ``WarningNotice`` (rule, warning time,
  end of the grace period);
- nothing else of the stop leaves the gateway during the grace period (its updates stay here);
- gone before the grace ends (the dwell rule clears it): a ``complied`` event with the cleared
  frame, and the item closes on the server as "warned, complied";
- still held by the dwell rule when the grace ends (``expire``, checked on every frame): an
  ``opened`` event with the "after" frames (the scene and a close-up, drawn now) and the
  notice: the server sends it to the department with the warning time on record.

Repeat offenders skip the warning: plates the server lists in the rule document, and plates
this gateway itself warned ``repeat_warnings`` times in ``repeat_days`` (a readable plate
only: a reading below the document's confidence floor is never linked).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

import numpy as np

from contracts.announce import Announcement, announce_topic, announcement_texts
from contracts.events import EvidenceLabel, Phase, WarningNotice
from contracts.exemptions import StageDecision, WarningChannel, warning_stage
from contracts.sites import CameraConfig, ZoneConfig
from edge.detections import Frame
from edge.rule_store import RuleStore
from edge.rules import RuleEvent
from edge.violation_evidence import ViolationEvidence

log = logging.getLogger(__name__)

MAX_QUEUED_ANNOUNCEMENTS = 100
MAX_WARNED = 1_000  # stops in their grace period at once, per camera
MAX_PLATES_COUNTED = 10_000


class Announcements:
    """The gateway's announcements waiting for the publisher; bounded, the oldest dropped first.

    An announcement is worth something only during its grace period: one that waited past it
    (the broker away) is dropped at the next drain and counted in ``stale``.
    """

    def __init__(self, site_id: str, gateway_id: str, limit: int = MAX_QUEUED_ANNOUNCEMENTS):
        self.topic = announce_topic(site_id, gateway_id)
        self._queue: deque[Announcement] = deque()
        self._limit = limit
        self._lock = threading.Lock()
        self.dropped = 0  # queue full
        self.stale = 0  # its grace period ended before it could go out
        self.sent = 0

    def put(self, announcement: Announcement) -> None:
        with self._lock:
            if len(self._queue) >= self._limit:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(announcement)

    def drain(self, now: datetime) -> list[Announcement]:
        """What is due to go out now, in order; stale ones are dropped."""
        with self._lock:
            due = [a for a in self._queue if a.grace_until > now]
            self.stale += len(self._queue) - len(due)
            self._queue.clear()
        return due

    def requeue(self, announcements: list[Announcement]) -> None:
        """Put back what could not be published (the connection went away)."""
        with self._lock:
            self._queue.extendleft(reversed(announcements))
            while len(self._queue) > self._limit:
                self._queue.popleft()
                self.dropped += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)


@dataclass
class _Warned:
    notice: WarningNotice
    latest: RuleEvent  # the stop as last seen: its box draws the "after" frames


class WarningStage:
    """One camera's stops in their warning stage."""

    def __init__(
        self,
        site_id: str,
        gateway_id: str,
        camera: CameraConfig,
        rules: RuleStore,
        pictures: Mapping[str, ViolationEvidence],
        announcements: Announcements | None = None,
    ) -> None:
        self._site_id = site_id
        self._gateway_id = gateway_id
        self._camera = camera
        self._rules = rules
        self._pictures = pictures
        self._announcements = announcements
        self._warned: dict[UUID, _Warned] = {}
        # Stops out of their grace (opened, or complied) whose event still names the warning.
        self._notices: dict[UUID, WarningNotice] = {}
        self._plate_warnings: dict[str, list[datetime]] = {}
        self.counts: Counter[str] = Counter()  # warned, complied, enforced, skipped_<why>

    def holds(self, violation_id: UUID) -> bool:
        return violation_id in self._warned

    def notice(self, violation_id: UUID) -> WarningNotice | None:
        """The warning a stop had, for its warned, complied or opened event."""
        warned = self._warned.get(violation_id)
        if warned is not None:
            return warned.notice
        return self._notices.get(violation_id)

    def start(self, event: RuleEvent, zone: ZoneConfig) -> RuleEvent | None:
        """At the crossing of a stop about to be enforced: its ``warned`` event, or None when
        no warning comes first (then it is enforced as before)."""
        if event.violation_id in self._warned or len(self._warned) >= MAX_WARNED:
            return None
        document = self._rules.document
        plate = event.plate.text if event.plate is not None else None
        confidence = event.plate.confidence if event.plate is not None else None
        readable = (
            document is not None
            and plate is not None
            and confidence is not None
            and confidence >= document.plate_confidence_floor
        )
        at = event.observed_at
        site = self._rules.site
        decision = warning_stage(document, plate, confidence, zone, site, at)
        if decision.warn and decision.rule is not None and readable and plate is not None:
            here = self._warnings_of(plate, at, decision.rule.repeat_days)
            decision = warning_stage(document, plate, confidence, zone, site, at, here)
        if not decision.warn:
            if decision.rule is not None:
                self.counts[f"skipped_{decision.why}"] += 1
                log.info("violation %s: no warning (%s)", event.violation_id, decision.why)
            return None
        rule = decision.rule
        assert rule is not None
        announce = WarningChannel.ANNOUNCE in rule.channels and self._announcements is not None
        notice = WarningNotice(
            rule_id=rule.id, warned_at=at, grace_until=at + rule.grace, announced=announce
        )
        self._warned[event.violation_id] = _Warned(notice, event)
        if readable and plate is not None:
            self._count_warning(plate, at, rule_days=rule.repeat_days)
        if announce and self._announcements is not None:
            self._announcements.put(
                self._announcement(event, zone, decision, plate if readable else None)
            )
        self.counts["warned"] += 1
        log.info(
            "violation %s in %s warned by rule %s; grace until %s",
            event.violation_id,
            event.zone_id,
            rule.id,
            notice.grace_until.isoformat(),
        )
        return replace(event, phase=Phase.WARNED)

    def follow(self, event: RuleEvent) -> RuleEvent | None:
        """A held stop's later event: its ``complied`` when it cleared; else it stays here."""
        warned = self._warned.get(event.violation_id)
        if warned is None:
            return event
        if event.phase is Phase.CLEARED:
            del self._warned[event.violation_id]
            self.counts["complied"] += 1
            self._remember(event.violation_id, warned.notice)
            log.info("violation %s gone within its grace: complied", event.violation_id)
            return replace(event, phase=Phase.COMPLIED)
        warned.latest = event
        return None

    def expire(self, frame: Frame) -> list[RuleEvent]:
        """Stops whose grace ended by ``frame`` and that the dwell rule still holds: their
        ``opened`` events, with the "after" frames drawn from ``frame``."""
        now = frame.timestamp
        due = [vid for vid, w in self._warned.items() if w.notice.grace_until <= now]
        opened: list[RuleEvent] = []
        for violation_id in due:
            warned = self._warned.pop(violation_id)
            latest = warned.latest
            pictures = self._pictures.get(latest.zone_id)
            if pictures is None or latest.object is None:
                continue  # no zone drawing for it: nothing to show; cannot happen in a pipeline
            box = latest.object.box
            xyxy = np.array([box.x1, box.y1, box.x2, box.y2], np.float32)
            dwell = (now - latest.started_at).total_seconds()
            evidence = [
                pictures.panorama(frame, xyxy, f"{dwell:.0f}s", EvidenceLabel.LATEST),
                pictures.closeup(frame, xyxy, latest.plate),
            ]
            self._remember(violation_id, warned.notice)
            self.counts["enforced"] += 1
            log.info("violation %s still there after its grace: opened", violation_id)
            opened.append(
                replace(
                    latest,
                    phase=Phase.OPENED,
                    observed_at=now,
                    dwell_seconds=dwell,
                    evidence=evidence,
                )
            )
        return opened

    def forget(self, violation_id: UUID) -> None:
        """A stop whose events are over (its cleared or complied went out)."""
        self._notices.pop(violation_id, None)

    def _remember(self, violation_id: UUID, notice: WarningNotice) -> None:
        self._notices[violation_id] = notice
        while len(self._notices) > MAX_WARNED:
            del self._notices[next(iter(self._notices))]

    def _warnings_of(self, plate: str, at: datetime, days: int) -> int:
        since = at - timedelta(days=days)
        return sum(1 for when in self._plate_warnings.get(plate, ()) if since <= when <= at)

    def _count_warning(self, plate: str, at: datetime, rule_days: int) -> None:
        cutoff = at - timedelta(days=rule_days)
        kept = [when for when in self._plate_warnings.get(plate, []) if when >= cutoff]
        self._plate_warnings[plate] = [*kept[-99:], at]
        if len(self._plate_warnings) > MAX_PLATES_COUNTED:
            del self._plate_warnings[next(iter(self._plate_warnings))]

    def _announcement(
        self, event: RuleEvent, zone: ZoneConfig, decision: StageDecision, plate: str | None
    ) -> Announcement:
        rule = decision.rule
        assert rule is not None
        place = zone.name or zone.location or zone.id
        texts = announcement_texts(plate, place, rule.grace_minutes)
        return Announcement(
            message_id=uuid.uuid4(),
            violation_id=event.violation_id,
            site_id=self._site_id,
            gateway_id=self._gateway_id,
            camera_id=self._camera.id,
            zone_id=zone.id,
            warned_at=event.observed_at,
            grace_until=event.observed_at + rule.grace,
            plate=plate,
            text_zh=texts["zh-CN"],
            text_en=texts["en"],
        )
