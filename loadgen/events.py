"""Violation events as gateways publish them: one event builder that tests, benchmarks and
loadgen share, and simulated cameras whose incidents carry real JPEG evidence."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from contracts.events import (
    GENESIS_CHAIN,
    BoundingBox,
    EvidenceFrame,
    EvidenceLabel,
    ModelInfo,
    ObservedObject,
    Phase,
    PlateReading,
    ViolationEvent,
    ViolationKind,
    WarningNotice,
    chain_link,
)
from contracts.sites import SiteRegistry
from contracts.topics import violation_topic
from loadgen.registry import FIRE_LANE_ZONE, PARKING_ZONE, ZONE_DWELL_SECONDS, LoadgenError

_FRAME_SIZE = (160, 120)
_PLATE_PROVINCES = "浙沪苏京粤川"
_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O, as on real plates
_PLATE_SYMBOLS = _PLATE_LETTERS + "0123456789"
_MODEL = ModelInfo(name="loadgen", version="1")
CAR_BOX = BoundingBox(x1=10, y1=20, x2=60, y2=70)
EVIDENCE_IMAGES = 8  # an incident shows at most 5 frames, each a different image


def violation_event(
    site_id: str,
    gateway_id: str,
    camera_id: str,
    sequence: int,
    *,
    phase: Phase,
    kind: ViolationKind,
    zone_id: str,
    violation_id: UUID,
    started_at: datetime,
    observed_at: datetime,
    evidence: list[EvidenceFrame],
    dwell_seconds: float | None = None,
    confidence: float = 0.87,
    box: BoundingBox = CAR_BOX,
    model: ModelInfo | None = None,
    plate: PlateReading | None = None,
    blocked_share: float | None = None,
    warning: WarningNotice | None = None,
) -> ViolationEvent:
    """One camera's event about a car in a zone, as a gateway publishes it, with a new message
    id: the one event builder of the tests, the benchmarks and loadgen. ``dwell_seconds``
    defaults to the time from ``started_at`` to ``observed_at``."""
    if dwell_seconds is None:
        dwell_seconds = (observed_at - started_at).total_seconds()
    return ViolationEvent(
        message_id=uuid.uuid4(),
        violation_id=violation_id,
        sequence=sequence,
        phase=phase,
        kind=kind,
        site_id=site_id,
        gateway_id=gateway_id,
        camera_id=camera_id,
        zone_id=zone_id,
        started_at=started_at,
        observed_at=observed_at,
        dwell_seconds=dwell_seconds,
        object=ObservedObject(class_name="car", confidence=confidence, box=box),
        evidence=evidence,
        model=model,
        plate=plate,
        blocked_share=blocked_share,
        warning=warning,
    )


@dataclass(frozen=True, slots=True)
class EvidenceImage:
    data: bytes
    sha256: str
    width: int
    height: int


def evidence_images(count: int, seed: int) -> list[EvidenceImage]:
    """Small real JPEGs (a few KB each) of a textured street-like scene, made once per run."""
    import hashlib

    try:
        import cv2
        import numpy as np
    except ImportError as exc:
        raise LoadgenError(
            "loadgen encodes its evidence with OpenCV: install civicwatch[edge]"
        ) from exc
    rng = np.random.default_rng(seed)
    width, height = _FRAME_SIZE
    images = []
    for index in range(count):
        rows = np.linspace(60, 180, height, dtype=np.float32)[:, None, None]
        picture = np.broadcast_to(rows, (height, width, 3)).copy()
        picture += rng.normal(0, 12, picture.shape).astype(np.float32)
        x = 20 + 7 * index % 80
        cv2.rectangle(picture, (x, 50), (x + 50, 90), (40.0, 40.0, 160.0), -1)  # the "vehicle"
        ok, encoded = cv2.imencode(
            ".jpg", np.clip(picture, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 70]
        )
        if not ok:
            raise LoadgenError("OpenCV could not encode a JPEG")
        data = encoded.tobytes()
        images.append(EvidenceImage(data, hashlib.sha256(data).hexdigest(), width, height))
    return images


@dataclass
class _Incident:
    violation_id: UUID
    zone_id: str
    started_at: datetime
    updates_left: int
    chain: str
    plate: PlateReading | None
    unused_images: list[int]  # real frames of one incident differ: no image twice


class CameraSimulator:
    """One camera's incidents in turn: opened (two frames), 0-2 updates, cleared.

    An incident shows at most 5 frames, so it needs at least 5 evidence images.
    """

    def __init__(
        self,
        site_id: str,
        gateway_id: str,
        camera_id: str,
        images: Sequence[EvidenceImage],
        rng: random.Random,
        plate_share: float,
    ) -> None:
        self.site_id = site_id
        self.gateway_id = gateway_id
        self.camera_id = camera_id
        self.topic = violation_topic(site_id, gateway_id, camera_id)
        self._images = images
        self._rng = rng
        self._plate_share = plate_share
        self._incident: _Incident | None = None

    def next_event(self, sequence: int, now: datetime) -> ViolationEvent:
        incident = self._incident
        labels: tuple[EvidenceLabel, ...]
        if incident is None:
            incident = self._open(now)
            phase, labels = Phase.OPENED, (EvidenceLabel.ENTRY, EvidenceLabel.DWELL_CROSSED)
        elif incident.updates_left > 0:
            incident.updates_left -= 1
            phase, labels = Phase.UPDATED, (EvidenceLabel.LATEST,)
        else:
            self._incident = None
            phase, labels = Phase.CLEARED, (EvidenceLabel.CLEARED,)
        kind = (
            ViolationKind.ILLEGAL_PARKING
            if incident.zone_id == PARKING_ZONE
            else ViolationKind.FIRE_LANE_BLOCKING
        )
        return violation_event(
            self.site_id,
            self.gateway_id,
            self.camera_id,
            sequence,
            phase=phase,
            kind=kind,
            zone_id=incident.zone_id,
            violation_id=incident.violation_id,
            started_at=incident.started_at,
            observed_at=now,
            evidence=[self._frame(incident, label, now) for label in labels],
            confidence=round(self._rng.uniform(0.5, 0.95), 3),
            box=BoundingBox(x1=20, y1=50, x2=70, y2=90),
            model=_MODEL,
            plate=incident.plate,
            blocked_share=0.4 if kind is ViolationKind.FIRE_LANE_BLOCKING else None,
        )

    def _open(self, now: datetime) -> _Incident:
        zone_id = PARKING_ZONE if self._rng.random() < 0.7 else FIRE_LANE_ZONE
        plate = None
        if self._rng.random() < self._plate_share:
            text = (
                self._rng.choice(_PLATE_PROVINCES)
                + self._rng.choice(_PLATE_LETTERS)
                + "".join(self._rng.choice(_PLATE_SYMBOLS) for _ in range(5))
            )
            plate = PlateReading(text=text, confidence=0.9, votes=3)
        self._incident = _Incident(
            violation_id=uuid.uuid4(),
            zone_id=zone_id,
            started_at=now - timedelta(seconds=ZONE_DWELL_SECONDS[zone_id]),
            updates_left=self._rng.randint(0, 2),
            chain=GENESIS_CHAIN,
            plate=plate,
            unused_images=self._rng.sample(range(len(self._images)), len(self._images)),
        )
        return self._incident

    def _frame(self, incident: _Incident, label: EvidenceLabel, now: datetime) -> EvidenceFrame:
        image = self._images[incident.unused_images.pop()]
        incident.chain = chain_link(incident.chain, image.sha256)
        return EvidenceFrame(
            label=label,
            captured_at=now,
            sha256=image.sha256,
            width=image.width,
            height=image.height,
            data=image.data,
            chain_sha256=incident.chain,
        )


def camera_simulators(
    registry: SiteRegistry, images: Sequence[EvidenceImage], seed: int, plate_share: float
) -> list[CameraSimulator]:
    rng = random.Random(seed)
    return [
        CameraSimulator(site.id, gateway.id, camera.id, images, rng, plate_share)
        for site in registry.sites
        for gateway in site.gateways
        for camera in gateway.cameras
    ]
