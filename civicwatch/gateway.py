"""The gateway's composition root: one edge worker's graph built in named steps.

Server packages are never imported here, so a gateway that installed ``civicwatch[edge]`` alone
can build it.
"""

from __future__ import annotations

from datetime import UTC, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from contracts.mqtt import BrokerSettings
from contracts.rule_signing import public_key_from_text
from contracts.sites import CameraConfig, GatewayConfig, SiteConfig
from contracts.status import CameraHealth
from edge.capture import LatestFrameSource, open_source
from edge.config import EdgeSettings
from edge.detector import Detector
from edge.outbox import Outbox
from edge.pipeline import CameraPipeline, GatewayServices
from edge.plates import PlateReader
from edge.publisher import EdgePublisher
from edge.redaction import EvidenceSealer, FaceRedactor
from edge.rule_store import RuleStore
from edge.structure_features import gateway_learned_parts
from edge.structures import BaselineStore
from edge.verification import VerificationChannel, ZoneVerifier
from edge.warning import Announcements
from edge.worker import CameraAnalysis, EdgeWorker, WatchedCamera


def outbox_path(settings: EdgeSettings, gateway_id: str) -> Path:
    """One outbox file per gateway: live and replay runs of one gateway share it."""
    return settings.data_dir / f"outbox-{gateway_id}.sqlite"


def gateway_services(
    settings: EdgeSettings,
    gateway_id: str,
    detector: Detector | None,
    outbox: Outbox,
    timezone: tzinfo = UTC,
    rules: RuleStore | None = None,
    announcements: Announcements | None = None,
) -> GatewayServices:
    """What every camera of a gateway shares, built once: the readers are costly to load."""
    redactor = FaceRedactor(settings.redaction) if settings.redaction.blur_faces else None
    return GatewayServices(
        model_info=detector.model_info if detector is not None else None,
        outbox=outbox,
        sealer=EvidenceSealer(redactor),
        plate_reader=PlateReader(settings.plates) if settings.plates.enabled else None,
        baselines=BaselineStore(settings.baselines_dir),
        structure_parts=gateway_learned_parts(settings.detector.model, detector),
        timezone=timezone,
        rules=rules,
        announcements=announcements,
    )


def rule_store(settings: EdgeSettings, site: SiteConfig, gateway_id: str) -> RuleStore:
    """The gateway's signed rule document: the disk copy now, the broker's retained one later."""
    key = settings.rules_public_key
    return RuleStore(
        settings.rules_path(gateway_id),
        public_key_from_text(key) if key is not None else None,
        site,
        gateway_id,
    )


def camera_analysis(
    site_id: str,
    gateway_id: str,
    camera: CameraConfig,
    settings: EdgeSettings,
    services: GatewayServices,
    detector: Detector | None,
    fps: float,
) -> CameraAnalysis:
    """One camera's rules pipeline (at its source's frame rate), motion gate and health."""
    pipeline = CameraPipeline(site_id, gateway_id, camera, settings, services, fps)
    return CameraAnalysis(camera, pipeline, settings, services.baselines, detector)


def build_gateway(
    site: SiteConfig,
    gateway: GatewayConfig,
    settings: EdgeSettings,
    broker: BrokerSettings,
    detector: Detector | None,
) -> EdgeWorker:
    """Wire every camera of ``gateway``: outbox, publisher, shared services, each camera's
    source and analysis, camera verification. Opens the outbox; starts nothing."""
    outbox = Outbox(outbox_path(settings, gateway.id), settings.publish.event_encoding)
    rules = rule_store(settings, site, gateway.id)
    announcements = Announcements(site.id, gateway.id)  # the warning stage's, for the gate
    publisher = EdgePublisher(
        broker,
        site.id,
        gateway.id,
        outbox,
        settings.resend_after_seconds,
        max_unconfirmed=settings.max_unconfirmed,
        rules=rules,
        announcements=announcements,
    )
    # The site's time zone was checked when the config loaded; captions show its local time.
    services = gateway_services(
        settings, gateway.id, detector, outbox, ZoneInfo(site.timezone), rules, announcements
    )
    cameras = _cameras(site, gateway, settings, services, detector)
    sources = {camera.source.camera_id: camera.source for camera in cameras}
    verifier, verification = _camera_verification(
        site, gateway, settings, broker, services, cameras, sources
    )
    return EdgeWorker(
        site.id,
        gateway.id,
        settings,
        detector,
        cameras,
        outbox=outbox,
        publisher=publisher,
        verifier=verifier,
        verification=verification,
    )


def _cameras(
    site: SiteConfig,
    gateway: GatewayConfig,
    settings: EdgeSettings,
    services: GatewayServices,
    detector: Detector | None,
) -> list[WatchedCamera]:
    cameras = []
    for config in gateway.cameras:
        source = open_source(config)
        analysis = camera_analysis(
            site.id, gateway.id, config, settings, services, detector, source.fps
        )
        cameras.append(WatchedCamera(source, analysis))
    return cameras


def _camera_verification(
    site: SiteConfig,
    gateway: GatewayConfig,
    settings: EdgeSettings,
    broker: BrokerSettings,
    services: GatewayServices,
    cameras: list[WatchedCamera],
    sources: dict[str, LatestFrameSource],
) -> tuple[ZoneVerifier, VerificationChannel]:
    """The server's re-check requests: answered from the cameras' own pipelines."""
    verifier = ZoneVerifier(
        site.id,
        gateway.id,
        {camera.analysis.camera.id: camera.analysis.pipeline for camera in cameras},
        settings.evidence,
        services.sealer,
        available=lambda camera_id: sources[camera_id].health is not CameraHealth.OFFLINE,
        frames=settings.verification_frames,
    )
    return verifier, VerificationChannel(broker, site.id, gateway.id, sources)
