"""Illegal structures: a no-build zone watched against its registered baseline over days.

The watch runs the comparison (edge.structure_compare) on a schedule by frame time and raises a
violation only when the change persists over several checks spread over days, with the
baseline, the current view and the change mask as evidence. Baselines live on disk, one per
camera (or camera + PTZ preset): edge.structure_baselines. The names other modules import from
here stay importable from here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

import cv2
import numpy as np

from contracts.events import BoundingBox, EvidenceFrame, EvidenceLabel, ObservedObject, Phase
from contracts.sites import ZoneConfig, ZoneKind
from edge.config import EvidenceSettings, StructureSettings
from edge.detections import Detections, FloatArray, Frame, Image
from edge.evidence import annotate, caption_text, encode_evidence
from edge.rules import RuleEvent
from edge.structure_baselines import Baseline, BaselineInfo, BaselineStore
from edge.structure_compare import (
    STRUCTURE_CLASS,
    BaselineMemo,
    StructureChange,
    compare_structure,
    draw_change,
    estimate_shift,
    lab_otsu_change,
    structure_gain,
)
from edge.structure_dataset import ObjectFinder
from edge.structure_features import (
    BackboneFeatures,
    hidden_parts,
    learned_structure_change,
    moving_boxes,
    transient_boxes_of,
)
from edge.structure_net import ChangeNet

__all__ = [
    "STRUCTURE_CLASS",
    "Baseline",
    "BaselineInfo",
    "BaselineStore",
    "StructureChange",
    "StructureWatch",
    "compare_structure",
    "draw_change",
    "estimate_shift",
    "lab_otsu_change",
    "structure_gain",
]

logger = logging.getLogger(__name__)

_Box = tuple[float, float, float, float]


@dataclass(slots=True)
class _Sighting:
    frame: Frame
    change: StructureChange


@dataclass(slots=True)
class _Streak:
    """Consecutive changed checks: the first (when the change was first seen) and the latest."""

    first: _Sighting
    latest: _Sighting
    checks: int = 1

    def span_seconds(self) -> float:
        return (self.latest.frame.timestamp - self.first.frame.timestamp).total_seconds()


@dataclass(slots=True)
class _Open:
    violation_id: uuid.UUID
    streak: _Streak
    unchanged_checks: int = 0


class StructureWatch:
    """Compares one no-build zone with the camera's baseline on a schedule; raises and clears."""

    def __init__(
        self,
        camera_id: str,
        zone: ZoneConfig,
        settings: StructureSettings,
        evidence: EvidenceSettings,
        baselines: BaselineStore,
        preset: str | None = None,
        features: BackboneFeatures | None = None,
        finder: ObjectFinder | None = None,
        timezone: tzinfo = UTC,
        net: ChangeNet | None = None,
    ) -> None:
        """With `features`, each check runs the learned comparison (edge.structure_features).

        It then discounts the people and vehicles of both views: the current one's from the
        detections `update` is given, else found by `finder`; the baseline's found by `finder`
        once per baseline revision, or kept from the frame the watch registered or accepted.
        With `net` as well, the change is cut to where the change net (edge.structure_net) sees
        new structure.
        """
        if zone.kind is not ZoneKind.NO_BUILD:
            raise ValueError(f"zone {zone.id} is {zone.kind.value}, not a no_build zone")
        self.camera_id = camera_id
        self.zone = zone
        self.polygon: FloatArray = np.asarray(zone.polygon, dtype=np.float32)
        self.preset = preset
        self._timezone = timezone  # the site's, for the captions
        self._settings = settings
        self._evidence = evidence
        self._baselines = baselines
        self._features = features
        self._finder = finder
        self._net = net
        self._baseline_boxes: tuple[int, list[_Box]] | None = None  # (revision, boxes)
        # What the comparison derives from the baseline alone, kept between checks (the latest).
        self._memo = BaselineMemo(size=1)
        self._last_check_at: datetime | None = None
        self._revision: int | None = None
        self._baseline: Baseline | None = None  # the one the latest check compared against
        self._streak: _Streak | None = None
        self._open: _Open | None = None

    @property
    def method(self) -> str:
        """Which comparison the checks run: "learned", "learned + change net" or "gradient"."""
        if self._features is None:
            return "gradient"
        return "learned" if self._net is None else "learned + change net"

    @property
    def open_violations(self) -> int:
        return 0 if self._open is None else 1

    def update(self, frame: Frame, detections: Detections | None = None) -> list[RuleEvent]:
        """Compare when a check is due by frame time; the phases this check produced.

        `detections` (of this frame) only matter to a watch given learned features.
        """
        last = self._last_check_at
        if last is not None and (
            (frame.timestamp - last).total_seconds() < self._settings.check_interval_seconds
        ):
            return []
        self._last_check_at = frame.timestamp
        try:
            return self._check(frame, detections)
        except (ValueError, OSError, cv2.error) as exc:
            # One camera's bad baseline or odd frame must not stop the worker.
            logger.warning(
                "camera %s zone %s: structure check skipped: %s", self.camera_id, self.zone.id, exc
            )
            return []

    def accept(
        self,
        frame: Frame,
        note: str,
        by: str = "dispatcher",
        detections: Detections | None = None,
    ) -> list[RuleEvent]:
        """Accept this frame as the new baseline; an open violation clears now."""
        info = self._baselines.accept(
            self.camera_id, frame.image, self.preset, note, at=frame.timestamp, by=by
        )
        self._revision = info.revision
        self._keep_baseline_boxes(info.revision, detections)
        return self._restart(frame)

    def _check(self, frame: Frame, detections: Detections | None) -> list[RuleEvent]:
        stored = self._baselines.load(self.camera_id, self.preset)
        if stored is None:
            info = self._baselines.register(
                self.camera_id,
                frame.image,
                self.preset,
                at=frame.timestamp,
                by=f"structure watch {self.zone.id}",
                note="no baseline was registered: the first frame seen becomes it",
            )
            self._revision = info.revision
            self._keep_baseline_boxes(info.revision, detections)
            logger.info(
                "camera %s zone %s: no baseline, registered the frame of %s as baseline",
                self.camera_id,
                self.zone.id,
                frame.timestamp.isoformat(),
            )
            return []
        if self._revision != stored.info.revision:
            # A new baseline was accepted (or registered) elsewhere: judge against it from now.
            first_look = self._revision is None
            self._revision = stored.info.revision
            if not first_look:
                return self._restart(frame)
        self._baseline = stored
        change = self._compare(stored, frame.image, detections)
        if not change.conclusive:
            logger.info(
                "camera %s zone %s: structure check inconclusive: %s",
                self.camera_id,
                self.zone.id,
                change.reason,
            )
            return []
        sighting = _Sighting(frame, change)
        return self._changed(sighting) if change.changed else self._unchanged(frame)

    def _compare(
        self, baseline: Baseline, current: Image, detections: Detections | None
    ) -> StructureChange:
        kept = self._memo.of(baseline.image)
        if self._features is None:
            return compare_structure(baseline.image, current, self.polygon, self._settings, kept)
        if detections is None and self._finder is not None:
            detections = self._finder.detect(current)  # the detector skipped this frame
        now = transient_boxes_of(detections) if detections is not None else []
        then = self._boxes_in(baseline)
        boxes = moving_boxes(now, then)  # who stood still hides nothing
        return learned_structure_change(
            baseline.image,
            current,
            self.polygon,
            self._settings,
            self._features,
            boxes,
            self._net,
            kept,
            hidden_parts(now, then),  # where something new now hides them (round 11)
        )

    def _keep_baseline_boxes(self, revision: int, detections: Detections | None) -> None:
        """The people and vehicles of a frame this watch made the baseline, when it has them."""
        if detections is not None:
            self._baseline_boxes = (revision, transient_boxes_of(detections))

    def _boxes_in(self, baseline: Baseline) -> list[_Box]:
        """The baseline's people and vehicles: found once per revision (none without a finder)."""
        revision = baseline.info.revision
        if self._baseline_boxes is None or self._baseline_boxes[0] != revision:
            found = self._finder.detect(baseline.image) if self._finder is not None else None
            self._baseline_boxes = (revision, [] if found is None else transient_boxes_of(found))
        return list(self._baseline_boxes[1])

    def _changed(self, sighting: _Sighting) -> list[RuleEvent]:
        if self._open is not None:
            self._open.streak.latest = sighting
            self._open.unchanged_checks = 0
            return []
        streak = self._streak
        if streak is None:
            self._streak = _Streak(sighting, sighting)
            streak = self._streak
        else:
            streak.latest = sighting
            streak.checks += 1
        settings = self._settings
        if (
            streak.checks >= settings.persist_checks
            and streak.span_seconds() >= settings.persist_span_seconds
        ):
            return [self._opened(streak)]
        return []

    def _unchanged(self, frame: Frame) -> list[RuleEvent]:
        if self._open is None:
            self._streak = None  # the change did not persist: start counting again
            return []
        self._open.unchanged_checks += 1
        if self._open.unchanged_checks >= self._settings.persist_checks:
            return self._restart(frame)
        return []

    def _restart(self, frame: Frame) -> list[RuleEvent]:
        """Forget the streak; clear the open violation if there is one."""
        opened, self._open, self._streak = self._open, None, None
        return [] if opened is None else [self._cleared(opened, frame)]

    def _opened(self, streak: _Streak) -> RuleEvent:
        self._open = _Open(uuid.uuid4(), streak)
        self._streak = None
        latest = streak.latest
        at = latest.frame.timestamp
        box = _box_array(latest.change.box)
        box_label = f"{STRUCTURE_CLASS} {latest.change.changed_share:.0%} of zone"
        evidence: list[EvidenceFrame] = []
        if self._baseline is not None:  # always set by the check that got here
            baseline = self._baseline
            evidence.append(
                self._frame(
                    baseline.image, None, "", baseline.info.registered_at, EvidenceLabel.BASELINE
                )
            )
        evidence.append(self._frame(latest.frame.image, box, box_label, at, EvidenceLabel.CURRENT))
        overlay = draw_change(latest.frame.image, latest.change.mask)
        evidence.append(self._frame(overlay, box, box_label, at, EvidenceLabel.CHANGE_MASK))
        return self._event(Phase.OPENED, self._open, at, evidence)

    def _cleared(self, opened: _Open, frame: Frame) -> RuleEvent:
        at = frame.timestamp
        evidence = [self._frame(frame.image, None, "", at, EvidenceLabel.CLEARED)]
        return self._event(Phase.CLEARED, opened, at, evidence)

    def _frame(
        self,
        image: Image,
        box: FloatArray | None,
        box_label: str,
        at: datetime,
        label: EvidenceLabel,
    ) -> EvidenceFrame:
        caption = caption_text(at, self._timezone, self.camera_id, self.zone.id)
        picture = annotate(image, self.polygon, box, box_label, caption)
        return encode_evidence(picture, label, at, self._evidence)

    def _event(
        self, phase: Phase, opened: _Open, at: datetime, evidence: Sequence[EvidenceFrame]
    ) -> RuleEvent:
        streak = opened.streak
        change = streak.latest.change
        x1, y1, x2, y2 = change.box or (0.0, 0.0, 0.0, 0.0)
        return RuleEvent(
            phase=phase,
            violation_id=opened.violation_id,
            zone_id=self.zone.id,
            started_at=streak.first.frame.timestamp,
            observed_at=at,
            # Cleared: the change lasted until it was last seen, not until the clearing check.
            dwell_seconds=(
                streak.span_seconds()
                if phase is Phase.CLEARED
                else (at - streak.first.frame.timestamp).total_seconds()
            ),
            object=ObservedObject(
                class_name=STRUCTURE_CLASS,
                confidence=min(1.0, max(0.0, change.score)),
                box=BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2),
            ),
            evidence=list(evidence),
        )


def _box_array(box: tuple[float, float, float, float] | None) -> FloatArray | None:
    return None if box is None else np.asarray(box, dtype=np.float32)
