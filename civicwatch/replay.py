"""``civicwatch replay``'s wiring: one clip through a camera's live pipeline, built like the
gateway's (edge.replay runs it)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from civicwatch.gateway import camera_analysis, gateway_services, outbox_path, rule_store
from contracts.mqtt import BrokerSettings
from contracts.sites import CameraConfig, GatewayConfig, SiteConfig
from edge.capture import ReplaySource
from edge.config import EdgeSettings
from edge.detector import Detector
from edge.outbox import Outbox
from edge.publisher import EdgePublisher
from edge.replay import ReplaySummary, replay_clip
from edge.warning import Announcements


def replay(
    site: SiteConfig,
    gateway: GatewayConfig,
    camera: CameraConfig,
    settings: EdgeSettings,
    broker: BrokerSettings | None,
    detector: Detector | None,
    source_path: Path,
    loop: int = 0,
    hold_last_seconds: float = 0.0,
    confirm_timeout_seconds: float = 60.0,
    start: datetime | None = None,
) -> ReplaySummary:
    """Run a clip as fast as the CPU allows through the live pipeline, by the clip's own clock.

    Publishes like a live camera and returns once the clip ended and ingest confirmed every
    event, or confirm_timeout_seconds later with all_confirmed=False. Without a broker it only
    analyses (benchmarks): events stay in the outbox.
    """
    source = ReplaySource(source_path, loop=loop, hold_last_seconds=hold_last_seconds, start=start)
    outbox = Outbox(outbox_path(settings, gateway.id), settings.publish.event_encoding)
    # The gateway's exemptions hold in a replay too: the disk copy, then the retained document.
    rules = rule_store(settings, site, gateway.id)
    announcements = Announcements(site.id, gateway.id)  # the warning stage's, for the gate
    publisher = (
        EdgePublisher(
            broker,
            site.id,
            gateway.id,
            outbox,
            settings.resend_after_seconds,
            "-replay",
            announces_gateway=False,
            max_unconfirmed=settings.max_unconfirmed,
            rules=rules,
            announcements=announcements,
        )
        if broker is not None
        else None
    )
    services = gateway_services(
        settings, gateway.id, detector, outbox, ZoneInfo(site.timezone), rules, announcements
    )
    analysis = camera_analysis(
        site.id, gateway.id, camera, settings, services, detector, source.fps
    )
    return replay_clip(
        camera.id, source, analysis, detector, outbox, publisher, confirm_timeout_seconds
    )
