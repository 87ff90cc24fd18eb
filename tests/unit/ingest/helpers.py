"""Incident-level builders for ingest tests: two cameras that see the same place, plates, chains.

Evidence images are small generated JPEGs (tests.factories.jpeg_bytes): ingest never decodes
them, it hashes, files and links them, so no footage is needed here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from contracts.events import (
    GENESIS_CHAIN,
    EvidenceFrame,
    PlateReading,
    RedactedCopy,
    ViolationEvent,
    chain_link,
)
from contracts.sites import (
    CameraConfig,
    GatewayConfig,
    SiteConfig,
    SiteRegistry,
    ZoneConfig,
    ZoneKind,
)
from dispatch.config import RoutingSettings
from dispatch.routing import Router
from ingest.config import IngestSettings
from ingest.handler import ViolationHandler
from ingest.metrics import IngestMetrics
from ingest.store import IngestService
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from storage.routing import CaseRouter
from tests.factories import EventFactory, jpeg_bytes

SITE = "site-m"
GATEWAY = "gw-m1"
NORTH_CAMERA = "cam-m1"  # both see the east gate from two sides
SOUTH_CAMERA = "cam-m2"
YARD_CAMERA = "cam-m3"  # sees somewhere else
ZONE = "east-gate"
YARD_ZONE = "yard"
LOCATION = "east-gate-kerb"
PLATE = "浙A12345"
OTHER_PLATE = "浙B67890"

_SQUARE = [[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0]]


def overlapping_registry() -> SiteRegistry:
    """One site; two cameras whose no-parking zones share a location, and a third elsewhere."""

    def camera(camera_id: str, zone_id: str, location: str | None) -> CameraConfig:
        zone = ZoneConfig(
            id=zone_id,
            kind=ZoneKind.NO_PARKING,
            polygon=_SQUARE,
            dwell_seconds=300,
            location=location,
        )
        return CameraConfig(id=camera_id, source="rtsp://camera.invalid/x", zones=[zone])

    cameras = [
        camera(NORTH_CAMERA, ZONE, LOCATION),
        camera(SOUTH_CAMERA, ZONE, LOCATION),
        camera(YARD_CAMERA, YARD_ZONE, None),
    ]
    return SiteRegistry(
        sites=[SiteConfig(id=SITE, gateways=[GatewayConfig(id=GATEWAY, cameras=cameras)])]
    )


def camera_factory(camera_id: str, seed: int) -> EventFactory:
    """An edge worker for ``camera_id``; ``seed`` keeps its images apart from other cameras'."""
    return EventFactory(site_id=SITE, gateway_id=GATEWAY, camera_id=camera_id, next_seed=seed)


@dataclass
class Rig:
    registry: SiteRegistry
    service: IngestService
    handler: ViolationHandler
    metrics: IngestMetrics
    evidence_store: EvidenceStore
    sessions: SessionFactory


def make_rig(
    sessions: SessionFactory,
    evidence_dir: Path,
    registry: SiteRegistry | None = None,
    settings: IngestSettings | None = None,
    route_cases: CaseRouter | None = None,
) -> Rig:
    """Ingest wired as the server wires it (the router decides for every case a batch opens)."""
    registry = registry or overlapping_registry()
    store = EvidenceStore(evidence_dir)
    metrics = IngestMetrics()
    router = Router(RoutingSettings())
    service = IngestService(
        sessions,
        store,
        registry,
        metrics,
        route_cases or router.dispatch_new_cases,
        settings=settings,
    )
    handler = ViolationHandler(service, registry, metrics, 1024 * 1024)
    return Rig(registry, service, handler, metrics, store, sessions)


def with_plate(event: ViolationEvent, text: str, confidence: float = 0.9) -> ViolationEvent:
    return event.model_copy(update={"plate": PlateReading(text=text, confidence=confidence)})


def chained(events: Sequence[ViolationEvent]) -> list[ViolationEvent]:
    """The events (one violation, in sequence order) with their frames hash-chained."""
    chain = GENESIS_CHAIN
    result = []
    for event in events:
        frames = []
        for frame in event.evidence:
            chain = chain_link(chain, frame.sha256)
            frames.append(frame.model_copy(update={"chain_sha256": chain}))
        result.append(event.model_copy(update={"evidence": frames}))
    return result


def with_redacted_copies(event: ViolationEvent) -> ViolationEvent:
    """Each frame gets a console copy (a different generated JPEG standing in for the blur)."""
    frames: list[EvidenceFrame] = []
    for frame in event.evidence:
        data = jpeg_bytes(int(frame.sha256[:6], 16))
        copy = RedactedCopy(sha256=hashlib.sha256(data).hexdigest(), faces_blurred=1, data=data)
        frames.append(frame.model_copy(update={"redacted": copy}))
    return event.model_copy(update={"evidence": frames})
