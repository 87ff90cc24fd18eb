"""``civicwatch loadgen``: simulated gateways publish realistic violation events at a set rate.

Two modes share one event simulator:

* direct (default): a few MQTT connections publish at QoS 1 and time each message from publish
  to ingest's IngestAck (p50/p95/p99), as a benchmark of ingest.
* durable (``--outbox-dir``): each gateway keeps the real edge delivery code, an
  ``edge.outbox.Outbox`` on disk drained by an ``edge.publisher.EdgePublisher``, so a killed
  loadgen restarted with the same folder replays what ingest never confirmed. Every message that
  enters an outbox is also written, in the same SQLite statement (a trigger), to a ``ledger``
  table: the exact set of ids the edge committed to deliver, which chaos tests compare with the
  database.

The simulated cameras must exist in the server's site registry: ``--write-config FILE`` writes a
config (from ``--config`` if given, its sites replaced) whose registry holds them.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sqlite3
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import paho.mqtt.client as mqtt
import yaml
from pydantic import ValidationError

from contracts.acks import AckOutcome, IngestAck
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
    chain_link,
)
from contracts.mqtt import BrokerSettings, make_client
from contracts.sites import (
    CameraConfig,
    GatewayConfig,
    SiteConfig,
    SiteRegistry,
    ZoneConfig,
    ZoneKind,
)
from contracts.topics import ack_topic, violation_topic

log = logging.getLogger(__name__)

PREFIX_DEFAULT = "load"
PARKING_ZONE = "no-parking"
FIRE_LANE_ZONE = "fire-lane"
_ZONE_DWELL_SECONDS = {PARKING_ZONE: 300.0, FIRE_LANE_ZONE: 30.0}
_FRAME_SIZE = (160, 120)
_PLATE_PROVINCES = "浙沪苏京粤川"
_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O, as on real plates
_PLATE_SYMBOLS = _PLATE_LETTERS + "0123456789"
_MODEL = ModelInfo(name="loadgen", version="1")
EVIDENCE_IMAGES = 8  # an incident shows at most 5 frames, each a different image

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    message_id   TEXT PRIMARY KEY,
    violation_id TEXT NOT NULL,
    camera_id    TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS ledger_on_add AFTER INSERT ON messages BEGIN
    INSERT OR IGNORE INTO ledger VALUES (
        NEW.message_id,
        json_extract(CAST(NEW.payload AS TEXT), '$.violation_id'),
        json_extract(CAST(NEW.payload AS TEXT), '$.camera_id')
    );
END;
"""


class LoadgenError(Exception):
    """A loadgen run that cannot start; the message says what to fix."""


# --- the simulated registry -------------------------------------------------------------------


def simulated_registry(
    cameras: int, cameras_per_gateway: int, prefix: str = PREFIX_DEFAULT
) -> SiteRegistry:
    """One site, ``cameras`` cameras spread over gateways, each with a parking and a fire-lane zone.

    Deterministic: the same arguments give the same ids, so the config written for the server
    and the running loadgen agree.
    """
    if cameras < 1 or cameras_per_gateway < 1:
        raise LoadgenError("--cameras and --cameras-per-gateway must be at least 1")
    square = [[0.0, 0.0], [160.0, 0.0], [160.0, 120.0], [0.0, 120.0]]
    zones = [
        ZoneConfig(
            id=PARKING_ZONE,
            kind=ZoneKind.NO_PARKING,
            polygon=square,
            dwell_seconds=_ZONE_DWELL_SECONDS[PARKING_ZONE],
        ),
        ZoneConfig(
            id=FIRE_LANE_ZONE,
            kind=ZoneKind.FIRE_LANE,
            polygon=square,
            dwell_seconds=_ZONE_DWELL_SECONDS[FIRE_LANE_ZONE],
        ),
    ]
    gateways = []
    for start in range(0, cameras, cameras_per_gateway):
        number = start // cameras_per_gateway + 1
        gateway_cameras = [
            CameraConfig(
                id=f"{prefix}-cam-{index + 1:05d}",
                source=f"rtsp://{prefix}.invalid/cam-{index + 1:05d}",
                zones=zones,
            )
            for index in range(start, min(start + cameras_per_gateway, cameras))
        ]
        gateways.append(GatewayConfig(id=f"{prefix}-gw-{number:04d}", cameras=gateway_cameras))
    return SiteRegistry(sites=[SiteConfig(id=f"{prefix}-site", gateways=gateways)])


def write_config(
    path: Path, registry: SiteRegistry, base: Path | None, broker: BrokerSettings | None
) -> None:
    """Write a civicwatch config whose sites are ``registry``; other sections come from ``base``."""
    document: dict[str, Any] = {}
    if base is not None:
        loaded = yaml.safe_load(base.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise LoadgenError(f"{base}: the config must be a mapping of sections")
        document = loaded
    document["sites"] = registry.model_dump(mode="json", exclude_defaults=True)["sites"]
    if broker is not None:
        document["broker"] = {
            **document.get("broker", {}),
            "host": broker.host,
            "port": broker.port,
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), "utf-8")


def check_registry_covers(config: SiteRegistry, simulated: SiteRegistry) -> None:
    """Refuse to run when the server lacks a simulated camera: ingest would refuse its events."""
    for site in simulated.sites:
        for gateway in site.gateways:
            for camera in gateway.cameras:
                found = config.camera(camera.id)
                if found is None or (found[0].id, found[1].id) != (site.id, gateway.id):
                    raise LoadgenError(
                        f"camera {camera.id!r} of {site.id}/{gateway.id} is not in the config's "
                        "site registry; write a matching config with --write-config first"
                    )


# --- events -------------------------------------------------------------------------------------


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
        return ViolationEvent(
            message_id=uuid.uuid4(),
            violation_id=incident.violation_id,
            sequence=sequence,
            phase=phase,
            kind=kind,
            site_id=self.site_id,
            gateway_id=self.gateway_id,
            camera_id=self.camera_id,
            zone_id=incident.zone_id,
            started_at=incident.started_at,
            observed_at=now,
            dwell_seconds=(now - incident.started_at).total_seconds(),
            object=ObservedObject(
                class_name="car",
                confidence=round(self._rng.uniform(0.5, 0.95), 3),
                box=BoundingBox(x1=20, y1=50, x2=70, y2=90),
            ),
            evidence=[self._frame(incident, label, now) for label in labels],
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
            started_at=now - timedelta(seconds=_ZONE_DWELL_SECONDS[zone_id]),
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


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class AckTracker:
    """Publish times by message id, and what ingest answered; shared with paho's threads."""

    _sent_at: dict[UUID, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    bad_acks: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sent(self, message_id: UUID) -> None:
        with self._lock:
            self._sent_at[message_id] = time.monotonic()

    def answered(self, payload: bytes) -> None:
        now = time.monotonic()
        try:
            ack = IngestAck.model_validate_json(payload)
        except ValidationError:
            with self._lock:
                self.bad_acks += 1
            return
        with self._lock:
            sent_at = self._sent_at.pop(ack.message_id, None)
            if sent_at is None:
                return  # an ack for a message of an earlier run, or a repeat
            self.outcomes[ack.outcome.value] += 1
            self.latencies.append(now - sent_at)

    @property
    def unanswered(self) -> int:
        with self._lock:
            return len(self._sent_at)


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (share in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary_ms(latencies: Sequence[float]) -> dict[str, float | None]:
    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {
        "p50": ms(percentile(latencies, 0.50)),
        "p95": ms(percentile(latencies, 0.95)),
        "p99": ms(percentile(latencies, 0.99)),
        "max": ms(max(latencies) if latencies else None),
    }


class Progress:
    """One self-rewriting stderr line, only when stderr is a terminal."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = max(total, 1)
        self.enabled = sys.stderr.isatty()
        self._last = 0.0

    def show(self, done: int, detail: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < 0.25):
            return
        self._last = now
        filled = min(30, int(30 * done / self.total))
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} {detail}"
        )
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def stored_message_ids(database_url: str, message_ids: Iterable[UUID]) -> set[UUID]:
    """Which of ``message_ids`` ingest's database holds."""
    from sqlalchemy import select

    from storage.database import make_engine
    from storage.tables import Event

    wanted = list(message_ids)
    found: set[UUID] = set()
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                found.update(
                    connection.scalars(select(Event.message_id).where(Event.message_id.in_(chunk)))
                )
    finally:
        engine.dispose()
    return found


# --- durable mode: the real edge outbox ---------------------------------------------------------


def outbox_file(outbox_dir: Path, gateway_id: str) -> Path:
    return outbox_dir / f"outbox-{gateway_id}.sqlite"


def install_ledger(path: Path) -> None:
    """Record every message the outbox accepts, atomically with its insert (see module doc)."""
    connection = sqlite3.connect(path)
    try:
        connection.executescript(LEDGER_SCHEMA)
    finally:
        connection.close()


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    message_id: UUID
    violation_id: UUID
    camera_id: str


def read_ledger(outbox_dir: Path) -> list[LedgerEntry]:
    """Every message any outbox under ``outbox_dir`` ever accepted."""
    entries: list[LedgerEntry] = []
    for path in sorted(outbox_dir.glob("outbox-*.sqlite")):
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            has_ledger = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger'"
            ).fetchone()
            # No ledger yet: the outbox was just made and accepted nothing so far.
            rows = (
                connection.execute(
                    "SELECT message_id, violation_id, camera_id FROM ledger"
                ).fetchall()
                if has_ledger
                else []
            )
        finally:
            connection.close()
        entries.extend(LedgerEntry(UUID(m), UUID(v), str(c)) for m, v, c in rows)
    return entries


# --- running ------------------------------------------------------------------------------------


@dataclass
class LoadSummary:
    mode: str
    cameras: int
    gateways: int
    rate_target: float
    duration_s: float
    published: int
    confirmed: int
    duplicates: int
    rejected: int
    unconfirmed: int
    publish_rate: float
    elapsed_s: float
    latency_ms: dict[str, float | None]
    stored: int | None = None
    ledger_total: int | None = None
    outbox_pending: int | None = None

    @property
    def complete(self) -> bool:
        # Durable mode counts what every run put in the outboxes, restarts included.
        expected = self.ledger_total if self.ledger_total is not None else self.published
        stored_all = self.stored is None or self.stored >= expected
        return self.unconfirmed == 0 and self.rejected == 0 and stored_all


class _Pacer:
    """Spreads ``rate`` events a second evenly; falls behind rather than dropping events."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._start = time.monotonic()

    def wait_for(self, index: int) -> None:
        delay = self._start + index * self._interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _planned(rate: float, duration: float) -> int:
    return int(rate * duration)


def run_direct(
    broker: BrokerSettings,
    registry: SiteRegistry,
    simulators: Sequence[CameraSimulator],
    rate: float,
    duration: float,
    connections: int,
    confirm_timeout: float,
) -> tuple[LoadSummary, list[UUID]]:
    """Publish at QoS 1 from a few connections; the summary and every id published."""
    tracker = AckTracker()
    published_ids: list[UUID] = []
    gateways = [(site.id, gateway.id) for site in registry.sites for gateway in site.gateways]
    connections = max(1, min(connections, len(gateways)))
    run_id = uuid.uuid4().hex[:8]
    clients: list[mqtt.Client] = []
    ready: list[threading.Event] = []
    client_of_gateway: dict[str, mqtt.Client] = {}
    for number in range(connections):
        mine = gateways[number::connections]
        client = make_client(broker, f"civicwatch-loadgen-{run_id}-{number}")
        connected = threading.Event()
        client.on_connect = _subscriber(mine, connected)
        client.on_message = lambda _c, _u, message: tracker.answered(bytes(message.payload))
        client.connect_async(broker.host, broker.port, keepalive=broker.keepalive_seconds)
        client.loop_start()
        clients.append(client)
        ready.append(connected)
        client_of_gateway.update({gateway_id: client for _, gateway_id in mine})
    try:
        for connected in ready:
            if not connected.wait(15):
                raise LoadgenError(f"no connection to the broker at {broker.host}:{broker.port}")
        planned = _planned(rate, duration)
        progress = Progress("loadgen", planned)
        sequences = dict.fromkeys((s.camera_id for s in simulators), 0)
        pacer = _Pacer(rate)
        started = time.monotonic()
        for index in range(planned):
            pacer.wait_for(index)
            simulator = simulators[index % len(simulators)]
            event = simulator.next_event(sequences[simulator.camera_id], datetime.now(UTC))
            sequences[simulator.camera_id] += 1
            tracker.sent(event.message_id)
            published_ids.append(event.message_id)
            client_of_gateway[simulator.gateway_id].publish(simulator.topic, event.to_wire(), 1)
            progress.show(index + 1, f"acked {sum(tracker.outcomes.values())}")
        publish_seconds = time.monotonic() - started
        deadline = time.monotonic() + confirm_timeout
        while tracker.unanswered and time.monotonic() < deadline:
            progress.show(planned, f"acked {sum(tracker.outcomes.values())}")
            time.sleep(0.05)
        progress.show(planned, f"acked {sum(tracker.outcomes.values())}", force=True)
        progress.finish()
        elapsed = time.monotonic() - started
    finally:
        for client in clients:
            client.disconnect()
            client.loop_stop()
    outcomes = tracker.outcomes
    summary = LoadSummary(
        mode="direct",
        cameras=len(simulators),
        gateways=len(gateways),
        rate_target=rate,
        duration_s=duration,
        published=planned,
        confirmed=outcomes[AckOutcome.STORED.value] + outcomes[AckOutcome.DUPLICATE.value],
        duplicates=outcomes[AckOutcome.DUPLICATE.value],
        rejected=outcomes[AckOutcome.REJECTED.value],
        unconfirmed=tracker.unanswered,
        publish_rate=round(planned / publish_seconds, 1) if publish_seconds > 0 else 0.0,
        elapsed_s=round(elapsed, 3),
        latency_ms=latency_summary_ms(tracker.latencies),
    )
    return summary, published_ids


def _subscriber(gateways: Sequence[tuple[str, str]], connected: threading.Event) -> Any:
    def on_connect(
        client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any, _properties: Any
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused loadgen: %s", reason_code)
            return
        # Subscribing here means a reconnect resubscribes.
        client.subscribe([(ack_topic(site, gateway), 1) for site, gateway in gateways])
        connected.set()

    return on_connect


def run_durable(
    broker: BrokerSettings,
    registry: SiteRegistry,
    simulators: Sequence[CameraSimulator],
    rate: float,
    duration: float,
    outbox_dir: Path,
    resend_after: float,
    confirm_timeout: float,
) -> tuple[LoadSummary, list[UUID]]:
    """Feed the real edge outbox and publisher; the summary and every id any run committed."""
    from edge.outbox import Outbox
    from edge.publisher import EdgePublisher

    outboxes: dict[str, Outbox] = {}
    publishers: list[EdgePublisher] = []
    for site in registry.sites:
        for gateway in site.gateways:
            path = outbox_file(outbox_dir, gateway.id)
            outbox = Outbox(path)
            install_ledger(path)
            outboxes[gateway.id] = outbox
            publishers.append(
                EdgePublisher(broker, site.id, gateway.id, outbox, resend_after, "-loadgen")
            )
    stop = threading.Event()

    def drain() -> None:
        # The edge worker's loop: publish whatever is due, often.
        while not stop.is_set():
            for publisher in publishers:
                while publisher.flush_due():
                    pass
            stop.wait(0.02)

    for publisher in publishers:
        publisher.start()
    drainer = threading.Thread(target=drain, name="loadgen-drain", daemon=True)
    drainer.start()
    planned = _planned(rate, duration)
    progress = Progress("loadgen (durable)", planned)
    started = time.monotonic()

    def pending() -> int:
        return sum(outbox.pending_count() for outbox in outboxes.values())

    try:
        pacer = _Pacer(rate) if planned else None
        for index in range(planned):
            assert pacer is not None
            pacer.wait_for(index)
            simulator = simulators[index % len(simulators)]
            outbox = outboxes[simulator.gateway_id]
            event = simulator.next_event(
                outbox.next_sequence(simulator.camera_id), datetime.now(UTC)
            )
            outbox.add(simulator.topic, event)
            progress.show(index + 1, f"confirmed {sum(p.confirmed for p in publishers)}")
        publish_seconds = time.monotonic() - started
        deadline = time.monotonic() + confirm_timeout
        while (left := pending()) and time.monotonic() < deadline:
            progress.show(planned, f"pending {left}")
            time.sleep(0.1)
        progress.finish()
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        drainer.join(timeout=5)
        for publisher in publishers:
            publisher.stop()
    left = pending()
    for outbox in outboxes.values():
        outbox.close()
    rejected = sum(p.rejected for p in publishers)
    ledger = [entry.message_id for entry in read_ledger(outbox_dir)]
    summary = LoadSummary(
        mode="durable",
        cameras=len(simulators),
        gateways=len(publishers),
        rate_target=rate,
        duration_s=duration,
        published=planned,
        confirmed=sum(p.confirmed for p in publishers),
        duplicates=0,  # the edge publisher does not tell stored from duplicate
        rejected=rejected,
        unconfirmed=left,
        publish_rate=round(planned / publish_seconds, 1) if publish_seconds > 0 and planned else 0,
        elapsed_s=round(elapsed, 3),
        latency_ms=latency_summary_ms([]),
        ledger_total=len(ledger),
        outbox_pending=left,
    )
    return summary, ledger


# --- the command --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cameras", type=int, default=1000, help="simulated cameras")
    parser.add_argument("--cameras-per-gateway", type=int, default=8)
    parser.add_argument("--prefix", default=PREFIX_DEFAULT, help="id prefix of the simulated site")
    parser.add_argument("--rate", type=float, default=100.0, help="events per second, all cameras")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of publishing")
    parser.add_argument("--config", type=Path, help="a civicwatch config (broker, registry)")
    parser.add_argument("--broker", help="HOST:PORT; overrides the config's broker")
    parser.add_argument(
        "--write-config",
        type=Path,
        help="write a config whose registry holds the simulated cameras (from --config) and exit",
    )
    parser.add_argument("--database-url", help="count what ingest stored in this database")
    parser.add_argument("--connections", type=int, default=8, help="MQTT connections (direct)")
    parser.add_argument(
        "--outbox-dir",
        type=Path,
        help="durable mode: one real edge outbox per gateway in this folder, replayed on restart",
    )
    parser.add_argument("--resend-after", type=float, default=5.0, help="durable mode resend (s)")
    parser.add_argument("--confirm-timeout", type=float, default=30.0)
    parser.add_argument("--plate-share", type=float, default=0.3, help="incidents with a plate")
    parser.add_argument("--seed", type=int, default=0)


def _broker_settings(args: argparse.Namespace, config: BrokerSettings | None) -> BrokerSettings:
    broker = config or BrokerSettings()
    if args.broker is None:
        return broker
    host, _, port = str(args.broker).rpartition(":")
    if not host or not port.isdigit():
        raise LoadgenError(f"--broker must be HOST:PORT, got {args.broker!r}")
    return broker.model_copy(update={"host": host, "port": int(port)})


def run(args: argparse.Namespace) -> int:
    from civicwatch.cli import EXIT_CONFIG, EXIT_UNCONFIRMED
    from civicwatch.config import load_config

    try:
        if args.rate <= 0 or args.duration < 0 or not 0.0 <= args.plate_share <= 1.0:
            raise LoadgenError("--rate must be > 0, --duration >= 0, --plate-share in 0..1")
        simulated = simulated_registry(args.cameras, args.cameras_per_gateway, args.prefix)
        if args.write_config is not None:
            broker = _broker_settings(args, None) if args.broker else None
            write_config(args.write_config, simulated, args.config, broker)
            print(json.dumps({"config": str(args.write_config), "cameras": args.cameras}))
            return 0
        config = load_config(args.config) if args.config is not None else None
        if config is not None:
            check_registry_covers(config, simulated)
        broker = _broker_settings(args, config.broker if config else None)
        images = evidence_images(EVIDENCE_IMAGES, args.seed)
        simulators = camera_simulators(simulated, images, args.seed, args.plate_share)
        if args.outbox_dir is not None:
            summary, published_ids = run_durable(
                broker,
                simulated,
                simulators,
                args.rate,
                args.duration,
                args.outbox_dir,
                args.resend_after,
                args.confirm_timeout,
            )
        else:
            summary, published_ids = run_direct(
                broker,
                simulated,
                simulators,
                args.rate,
                args.duration,
                args.connections,
                args.confirm_timeout,
            )
    except LoadgenError as exc:
        print(f"civicwatch loadgen: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.database_url:
        summary.stored = len(stored_message_ids(args.database_url, published_ids))
    print(json.dumps(summary.__dict__))
    return 0 if summary.complete else EXIT_UNCONFIRMED
