"""Ingest rate: events stored per second on SQLite and PostgreSQL, beside the raw MQTT ceiling.

Each run gets a private Mosquitto with the project's production queue and persistence values
(deploy/mosquitto/dev.conf) and a fresh database. Ingest runs in its own process(es), as in
production; this process publishes like 1,000 camera gateways and collects ingest's acks (an
ack is sent only after the commit, so publish -> ack bounds publish -> commit from above). Like
the real edge, the gateways first publish a retained status that says they read batched acks
(``ack_batch``); an ingest that batches them then answers each gateway once per committed batch,
an older one with one ack per message, and the collector counts the acks either way.

Measured, each ``--repeats`` times (median and spread reported):
- raw: paho -> Mosquitto -> paho at QoS 1, same payloads, no database: the ceiling;
- sustained: every event published as fast as paho allows, stored rate on SQLite / PostgreSQL;
- latency: p50/p99 publish -> ack at a paced 1,000 events/s (SQLite and PostgreSQL);
- backlog: 35,000 events queued at the broker while ingest is away, then drained (PostgreSQL);
- scale-out: 1 vs 2 ingest workers on one shared subscription, PostgreSQL.

The workload is realistic in shape: 1,000 cameras, each violation an opened, two updated and a
cleared message, half of them with a plate, one ~1.5 KB evidence frame per message (random
bytes after a JPEG's magic number standing in for a JPEG: ingest checks the type, hashes and
files evidence, it never decodes it).

    .venv/bin/python -m bench.ingest_rate [--events 20000] [--repeats 3] [--quick]

Progress goes to stderr on a terminal; the last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from contracts.events import (
    BoundingBox,
    EvidenceFrame,
    EvidenceLabel,
    Phase,
    PlateReading,
    ViolationKind,
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
from contracts.stats import percentile
from contracts.status import GatewayState, GatewayStatus
from contracts.topics import ROOT, gateway_status_topic, violation_topic
from loadgen.events import violation_event

POSTGRES_ADMIN_URL = os.environ.get(
    "CIVICWATCH_TEST_POSTGRES", "postgresql+psycopg://root@127.0.0.1:5432/test"
)
REPO = Path(__file__).resolve().parent.parent
DEV_BROKER_CONF = REPO / "deploy" / "mosquitto" / "dev.conf"
RECEIVE_MAXIMUM = 4_000  # the collector's; ingest workers run with their defaults
MAX_INFLIGHT = int(os.environ.get("BENCH_MAX_INFLIGHT", "0"))  # 0: no broker-side cap
ZONE = "kerb"
_SQUARE = [[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0]]
_JPEG_START = b"\xff\xd8\xff\xe0"  # a JPEG's magic number and APP0 marker
_PHASES = (Phase.OPENED, Phase.UPDATED, Phase.UPDATED, Phase.CLEARED)
_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"

# --------------------------------------------------------------------------- workload


def build_registry(cameras: int, per_gateway: int = 20, gateways_per_site: int = 5) -> SiteRegistry:
    zone = ZoneConfig(id=ZONE, kind=ZoneKind.NO_PARKING, polygon=_SQUARE, dwell_seconds=300)
    camera_ids = [f"cam-{n:04d}" for n in range(cameras)]
    gateways = [
        GatewayConfig(
            id=f"gw-{start // per_gateway:03d}",
            cameras=[
                CameraConfig(id=cid, source="rtsp://camera.invalid/s", zones=[zone])
                for cid in camera_ids[start : start + per_gateway]
            ],
        )
        for start in range(0, cameras, per_gateway)
    ]
    sites = [
        SiteConfig(
            id=f"site-{start // gateways_per_site:02d}",
            gateways=gateways[start : start + gateways_per_site],
        )
        for start in range(0, len(gateways), gateways_per_site)
    ]
    return SiteRegistry(sites=sites)


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    message_id: str


def build_workload(
    registry: SiteRegistry,
    events: int,
    seed: int,
    opened_images: Callable[[], list[bytes]] | None = None,
) -> list[Message]:
    """``events`` messages round-robin over the cameras, each camera's violations in phases.

    Each message carries one ~1.5 KB frame; with ``opened_images`` an opened message carries
    the images it returns instead (bench.ingest_evidence: three real-size JPEGs).
    """
    cameras = [
        (site.id, gateway.id, camera.id)
        for site in registry.sites
        for gateway in site.gateways
        for camera in gateway.cameras
    ]
    start = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
    sequence = dict.fromkeys(range(len(cameras)), 0)
    violation: dict[int, tuple[uuid.UUID, str | None]] = {}
    messages = []
    rng = hashlib.sha256(str(seed).encode()).digest()
    for n in range(events):
        index = n % len(cameras)
        site_id, gateway_id, camera_id = cameras[index]
        phase = _PHASES[sequence[index] % len(_PHASES)]
        if phase is Phase.OPENED:
            rng = hashlib.sha256(rng).digest()
            plate = (
                "浙"
                + "".join(
                    _PLATE_LETTERS[b % 24 if i == 0 else b % 34] for i, b in enumerate(rng[:6])
                )
                if rng[6] % 2
                else None
            )
            violation[index] = (uuid.uuid4(), plate)
        violation_id, plate = violation[index]
        at = start + timedelta(seconds=n // len(cameras))
        image = _JPEG_START + os.urandom(1500 - len(_JPEG_START))  # the contract checks the type
        images = opened_images() if opened_images is not None and phase is Phase.OPENED else [image]
        labels = (EvidenceLabel.ENTRY, EvidenceLabel.MIDWAY, EvidenceLabel.LATEST)
        event = violation_event(
            site_id,
            gateway_id,
            camera_id,
            sequence[index],
            phase=phase,
            kind=ViolationKind.ILLEGAL_PARKING,
            zone_id=ZONE,
            violation_id=violation_id,
            started_at=at - timedelta(minutes=6),
            observed_at=at,
            confidence=0.8,
            box=BoundingBox(x1=1, y1=2, x2=30, y2=40),
            evidence=[
                EvidenceFrame(
                    label=labels[-len(images) :][number] if len(images) <= 3 else labels[-1],
                    captured_at=at,
                    sha256=hashlib.sha256(data).hexdigest(),
                    width=64,
                    height=48,
                    data=data,
                )
                for number, data in enumerate(images)
            ],
            plate=PlateReading(text=plate, confidence=0.9) if plate else None,
        )
        sequence[index] += 1
        messages.append(
            Message(
                violation_topic(site_id, gateway_id, camera_id),
                event.to_wire(),
                str(event.message_id),
            )
        )
    return messages


# --------------------------------------------------------------------------- infrastructure


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def private_broker(workdir: Path, usage: dict[str, float] | None = None) -> Iterator[int]:
    """Mosquitto with the project's dev.conf limits, on a free port, in ``workdir``.

    ``usage`` gets ``cpu_s``: the CPU seconds (user + system) Mosquitto used in its life."""
    port = _free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    kept = []
    for line in DEV_BROKER_CONF.read_text().splitlines():
        key = line.split(" ", 1)[0]
        if key in {"listener", "persistence_location", "pid_file", "log_dest"}:
            continue
        kept.append(line)
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        "\n".join(kept)
        + f"\nlistener {port} 127.0.0.1\npersistence_location {workdir}/\nuser root\n"
        + f"log_dest file {workdir}/mosquitto.log\n"
        # Mosquitto's default of 20 unacked messages per subscriber caps a subscriber that
        # acks after a commit (and the raw ceiling) at 20 per round trip; clients still lower
        # it with their MQTT v5 receive-maximum.
        + f"max_inflight_messages {MAX_INFLIGHT}\n"
    )
    process = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("mosquitto did not start")
            time.sleep(0.05)
        yield port
    finally:
        if usage is not None:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(process.pid).cpu_times()
                usage["cpu_s"] = float(times.user + times.system)
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def scratch_database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"civicwatch_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _ingest_worker(
    database_url: str,
    port: int,
    client_id: str,
    group: str | None,
    evidence_dir: str,
    registry_json: str,
    ready: ProcessEvent,
    stop: ProcessEvent,
    ingest_json: str = "{}",
) -> None:
    """One ingest worker process, wired as civicwatch.server wires it (without the API).

    ``ingest_json``: more IngestSettings fields (the evidence backend and writer threads)."""
    from civicwatch.serving import freeze_startup_heap
    from dispatch.config import RoutingSettings
    from dispatch.routing import Router
    from ingest.config import IngestSettings
    from ingest.consumer import IngestConsumer
    from ingest.metrics import IngestMetrics
    from ingest.store import IngestService
    from storage.database import make_engine, make_session_factory

    logging.basicConfig(level=logging.ERROR)
    registry = SiteRegistry.model_validate_json(registry_json)
    settings = IngestSettings(
        client_id=client_id,
        shared_group=group,
        evidence_dir=Path(evidence_dir),
        **json.loads(ingest_json),
    )
    engine = make_engine(database_url)
    metrics = IngestMetrics()
    router = Router(RoutingSettings())
    service = IngestService(
        make_session_factory(engine),
        settings.open_evidence_store(database_url),
        registry,
        metrics,
        router.dispatch_new_cases,
        settings=settings,
    )
    consumer = IngestConsumer(BrokerSettings(port=port), settings, service, registry, metrics)
    consumer.start()
    freeze_startup_heap()  # as civicwatch's process entry points do
    if consumer.ready.wait(30):
        ready.set()
    started = time.monotonic()
    stop.wait()
    thread_cpu = thread_cpu_seconds()  # before stop(): the writer and paho threads end there
    consumer.stop()
    engine.dispose()
    stats = {
        "batches": metrics.value("civicwatch_ingest_batch_messages_count"),
        "messages": metrics.value("civicwatch_ingest_batch_messages_sum"),
        "writer_busy_s": metrics.value("civicwatch_ingest_batch_seconds_sum"),
        "alive_s": time.monotonic() - started,
        "thread_cpu_s": thread_cpu,
    }
    Path(evidence_dir).parent.joinpath(f"stats-{client_id}.json").write_text(json.dumps(stats))


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) this process's live threads used so far, by role: ``writer``
    (ingest's writer thread), ``paho`` (the network thread), ``evidence`` (the evidence writer
    threads together) and ``other`` (the main thread's start-up among them); empty without
    Linux's /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    roles: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after the name: state is field 3 of stat(5)
        seconds = (int(fields[11]) + int(fields[12])) / ticks  # utime and stime, fields 14, 15
        name = thread.name
        role = (
            "writer"
            if name.startswith("ingest-writer")
            else "paho"
            if name.startswith("paho-mqtt")
            else "evidence"
            if name.startswith("evidence-writer")
            else "other"
        )
        roles[role] = roles.get(role, 0.0) + seconds
    return {role: round(seconds, 3) for role, seconds in roles.items()}


class IngestProcesses:
    """``count`` ingest workers (one shared-subscription group when more than one)."""

    def __init__(
        self,
        database_url: str,
        port: int,
        registry: SiteRegistry,
        workdir: Path,
        count: int,
        ingest_options: dict[str, Any] | None = None,
        code_root: Path | None = None,
    ) -> None:
        """``code_root``: another checkout (bench.report_cpu.export_tree) whose ingest the
        workers run instead of this tree's; its bench.ingest_rate must have this
        ``_ingest_worker``'s arguments (any tree since the evidence modes)."""
        self._code_root = code_root
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._ready = [context.Event() for _ in range(count)]
        group = "bench" if count > 1 else None
        self._processes = [
            context.Process(
                target=_ingest_worker,
                args=(
                    database_url,
                    port,
                    f"ingest-{n}",
                    group,
                    str(workdir / "evidence"),
                    registry.model_dump_json(),
                    self._ready[n],
                    self._stop,
                    json.dumps(ingest_options or {}),
                ),
                daemon=True,
            )
            for n in range(count)
        ]

    def start(self) -> None:
        # A spawned child imports with the sys.path it is started under: the other tree first
        # makes it import that tree's bench, ingest, storage and contracts.
        saved = list(sys.path)
        if self._code_root is not None:
            sys.path.insert(0, str(self._code_root))
        try:
            for process in self._processes:
                process.start()
        finally:
            sys.path[:] = saved
        for ready in self._ready:
            if not ready.wait(60):
                raise RuntimeError("an ingest worker did not connect")

    def stop(self) -> None:
        self._stop.set()
        for process in self._processes:
            process.join(timeout=60)


class Collector:
    """Counts what arrives on ``topic_filter`` (acks or raw violations), with arrival times."""

    def __init__(
        self, port: int, topic_filter: str, expected: int, keys: Callable[[bytes], list[str]]
    ):
        self.arrived: dict[str, float] = {}
        self.done = threading.Event()
        self._expected = expected
        self._keys = keys
        self._lock = threading.Lock()
        self._client = make_client(BrokerSettings(port=port), f"collector-{uuid.uuid4().hex[:8]}")
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *_args: subscribed.set()
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        self._client.connect("127.0.0.1", port, properties=properties)
        self._client.loop_start()
        self._client.subscribe(topic_filter, qos=1)
        if not subscribed.wait(10):
            raise RuntimeError("collector could not subscribe")

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        keys = self._keys(bytes(message.payload))
        with self._lock:
            for key in keys:
                self.arrived.setdefault(key, now)
            if len(self.arrived) >= self._expected:
                self.done.set()

    def wait(self, timeout: float) -> bool:
        return self.done.wait(timeout)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _ack_keys(payload: bytes) -> list[str]:
    """The message ids an ack message settles: one IngestAck, or an IngestAckBatch's items."""
    ack = json.loads(payload)
    if "acks" in ack:
        return [str(item["message_id"]) for item in ack["acks"]]
    return [str(ack["message_id"])]


# The edge serialises message_id near the start, in JSON and in a binary frame's header alike.
_MESSAGE_ID = re.compile(rb'"message_id":"([0-9a-f-]{36})"')


def _violation_keys(payload: bytes) -> list[str]:
    """The message id of a violation message of either encoding, read from its first 512
    bytes: the raw ceiling's collector must not parse the whole message (json.loads of a
    0.57 MB real-size JSON message cost it ~3 ms, which held that ceiling to about half)."""
    match = _MESSAGE_ID.search(payload[:512])
    if match is None:
        raise RuntimeError(f"no message_id in the first 512 bytes of {payload[:64]!r}")
    return [match.group(1).decode()]


class Publisher:
    def __init__(self, port: int) -> None:
        self._client = make_client(BrokerSettings(port=port), f"gateways-{uuid.uuid4().hex[:8]}")
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        self.sent_at: dict[str, float] = {}

    def announce(self, registry: SiteRegistry) -> None:
        """Each gateway's retained online status, saying it reads batched acks (as the edge's
        does); an ingest reads it at subscribe, before any event arrives."""
        now = datetime.now(UTC)
        infos = [
            self._client.publish(
                gateway_status_topic(site.id, gateway.id),
                GatewayStatus(
                    site_id=site.id,
                    gateway_id=gateway.id,
                    state=GatewayState.ONLINE,
                    at=now,
                    ack_batch=True,
                ).to_wire(),
                qos=1,
                retain=True,
            )
            for site in registry.sites
            for gateway in site.gateways
        ]
        for info in infos:
            info.wait_for_publish(30)

    def publish(self, messages: list[Message], rate: float | None = None) -> None:
        """Publish all, as fast as paho allows or paced at ``rate``/s; waits for the PUBACKs."""
        infos = []
        started = time.monotonic()
        for number, message in enumerate(messages):
            if rate is not None:
                due = started + number / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self.sent_at[message.message_id] = time.monotonic()
            infos.append(self._client.publish(message.topic, message.payload, qos=1))
        for info in infos:
            info.wait_for_publish(120)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _progress(label: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K{label}")
        sys.stderr.flush()


def _count_stored(database_url: str) -> tuple[int, int]:
    from storage.database import make_engine
    from storage.tables import Case, Event

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            events = conn.scalar(select(func.count()).select_from(Event.__table__)) or 0
            cases = conn.scalar(select(func.count()).select_from(Case.__table__)) or 0
        return int(events), int(cases)
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- measurements


def measure_raw(messages: list[Message], workdir: Path) -> float:
    """paho -> Mosquitto -> paho at QoS 1: messages per second end to end."""
    with private_broker(workdir / "broker") as port:
        collector = Collector(port, f"{ROOT}/+/+/+/violation", len(messages), _violation_keys)
        publisher = Publisher(port)
        started = time.monotonic()
        publisher.publish(messages)
        if not collector.wait(300):
            raise RuntimeError(f"raw: only {len(collector.arrived)} of {len(messages)} arrived")
        rate = len(messages) / (max(collector.arrived.values()) - started)
        publisher.close()
        collector.close()
    return rate


@dataclass
class IngestRun:
    rate: float
    latencies_ms: list[float]
    stored: int
    cases: int
    # per worker: batches, messages, writer_busy_s, alive_s, and (workers of trees since
    # ingest with evidence round 3) thread_cpu_s: thread_cpu_seconds() at the end
    writers: list[dict[str, Any]]
    broker_cpu_s: float = 0.0  # the private Mosquitto's CPU over the whole run

    def writer_summary(self) -> list[dict[str, Any]]:
        return [
            {
                "mean_batch": round(w["messages"] / max(w["batches"], 1), 1),
                "writer_busy_s": round(w["writer_busy_s"], 2),
                "messages": w["messages"],
                **({"thread_cpu_s": w["thread_cpu_s"]} if "thread_cpu_s" in w else {}),
            }
            for w in self.writers
        ]


def measure_ingest(
    messages: list[Message],
    registry: SiteRegistry,
    database: str,
    workdir: Path,
    workers: int = 1,
    rate: float | None = None,
    ingest_options: dict[str, Any] | None = None,
    code_root: Path | None = None,
) -> IngestRun:
    """Publish while ingest runs; stored rate from first publish to last ack (after commit).

    ``code_root``: run another tree's ingest (IngestProcesses); None runs this one."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    from storage.schema import migrate

    broker: dict[str, float] = {}
    with (
        scratch_database(database, workdir) as url,
        private_broker(workdir / "broker", broker) as port,
    ):
        migrate(url)
        publisher = Publisher(port)
        publisher.announce(registry)
        ingest = IngestProcesses(
            url, port, registry, workdir, workers, ingest_options, code_root=code_root
        )
        ingest.start()
        try:
            collector = Collector(port, f"{ROOT}/+/+/ack", len(messages), _ack_keys)
            started = time.monotonic()
            publisher.publish(messages, rate)
            if not collector.wait(600):
                raise RuntimeError(f"only {len(collector.arrived)} of {len(messages)} acked")
            finished = max(collector.arrived.values())
            latencies = [
                (collector.arrived[mid] - sent) * 1000 for mid, sent in publisher.sent_at.items()
            ]
            publisher.close()
            collector.close()
        finally:
            ingest.stop()
        stored, cases = _count_stored(url)
    writers = [json.loads(path.read_text()) for path in sorted(workdir.glob("stats-*.json"))]
    return IngestRun(
        len(messages) / (finished - started),
        latencies,
        stored,
        cases,
        writers,
        broker.get("cpu_s", 0.0),
    )


def measure_backlog(
    messages: list[Message], registry: SiteRegistry, database: str, workdir: Path
) -> dict[str, float]:
    """Queue ``messages`` at the broker while ingest is away, then time the drain."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    from storage.schema import migrate

    with scratch_database(database, workdir) as url, private_broker(workdir / "broker") as port:
        migrate(url)
        publisher = Publisher(port)
        publisher.announce(registry)
        first = IngestProcesses(url, port, registry, workdir, 1)
        first.start()  # makes the persistent session the backlog queues in
        first.stop()
        collector = Collector(port, f"{ROOT}/+/+/ack", len(messages), _ack_keys)
        publisher.publish(messages)
        publisher.close()
        started = time.monotonic()
        ingest = IngestProcesses(url, port, registry, workdir, 1)
        ingest.start()
        connected = time.monotonic()
        try:
            if not collector.wait(600):
                raise RuntimeError(f"only {len(collector.arrived)} of {len(messages)} drained")
            finished = max(collector.arrived.values())
        finally:
            ingest.stop()
            collector.close()
        stored, _cases = _count_stored(url)
    return {
        "events": len(messages),
        "stored": stored,
        "seconds_from_process_start": round(finished - started, 2),
        "seconds_from_connected": round(finished - connected, 2),
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cameras", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20_000, help="per sustained-rate run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-rate", type=float, default=1000.0)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--backlog", type=int, default=35_000)
    parser.add_argument(
        "--only",
        nargs="*",
        default=["raw", "sqlite", "postgresql", "latency", "backlog", "scaleout"],
    )
    args = parser.parse_args(argv)
    registry = build_registry(args.cameras)
    _progress("building the workload")
    rate_runs = {"raw", "sqlite", "postgresql", "scaleout"} & set(args.only)
    sustained = build_workload(registry, args.events, seed=1) if rate_runs else []
    paced = build_workload(registry, int(args.latency_rate * args.latency_seconds), seed=2)
    summary: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, shared",
        "cameras": args.cameras,
        "events_per_run": args.events,
        "repeats": args.repeats,
    }
    with tempfile.TemporaryDirectory(prefix="ingest-rate-") as tmp:
        workdir = Path(tmp)
        rates: dict[str, list[float]] = {}
        writers: dict[str, Any] = {}
        plan: list[tuple[str, Callable[[], float]]] = []
        if "raw" in args.only:
            plan.append(("raw_qos1", lambda: measure_raw(sustained, workdir / "raw")))
        for database in ("sqlite", "postgresql"):
            if database in args.only:
                plan.append(
                    (
                        f"{database}_1_worker",
                        partial(
                            _stored_rate,
                            sustained,
                            registry,
                            database,
                            workdir / database,
                            1,
                            writers,
                        ),
                    )
                )
        if "scaleout" in args.only:
            plan.append(
                (
                    "postgresql_2_workers",
                    partial(
                        _stored_rate, sustained, registry, "postgresql", workdir / "pg2", 2, writers
                    ),
                )
            )
        for repeat in range(args.repeats):
            for name, measure in plan:
                _progress(f"repeat {repeat + 1}/{args.repeats}: {name}")
                rates.setdefault(name, []).append(measure())
        summary["rates_events_per_s"] = {name: _spread(values) for name, values in rates.items()}
        summary["writers_last_repeat"] = writers
        if "raw_qos1" in rates:
            ceiling = statistics.median(rates["raw_qos1"])
            summary["share_of_raw_ceiling"] = {
                name: round(statistics.median(values) / ceiling, 2)
                for name, values in rates.items()
                if name != "raw_qos1"
            }
        if "latency" in args.only:
            latency = {}
            for database in ("sqlite", "postgresql"):
                _progress(f"latency at {args.latency_rate:.0f}/s on {database}")
                paced_run = measure_ingest(
                    paced, registry, database, workdir / f"lat-{database}", rate=args.latency_rate
                )
                _checked(paced_run, len(paced))
                latency[database] = {
                    "p50_ms": round(percentile(paced_run.latencies_ms, 0.50), 1),
                    "p99_ms": round(percentile(paced_run.latencies_ms, 0.99), 1),
                    "max_ms": round(max(paced_run.latencies_ms), 1),
                    "events": len(paced),
                }
            summary["latency_publish_to_ack_at_rate"] = {
                "rate": args.latency_rate,
                **latency,
            }
        if "backlog" in args.only:
            _progress(f"backlog of {args.backlog}")
            backlog = build_workload(registry, args.backlog, seed=3)
            summary["backlog_drain_postgresql"] = measure_backlog(
                backlog, registry, "postgresql", workdir / "backlog"
            )
    _progress("")
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def _stored_rate(
    messages: list[Message],
    registry: SiteRegistry,
    database: str,
    workdir: Path,
    workers: int,
    writers: dict[str, Any],
) -> float:
    run = measure_ingest(messages, registry, database, workdir, workers)
    writers[f"{database}_{workers}"] = run.writer_summary()  # the last repeat's
    return _checked(run, len(messages))


def _checked(run: IngestRun, expected: int) -> float:
    if run.stored != expected:
        raise RuntimeError(f"stored {run.stored} of {expected} events")
    return run.rate


if __name__ == "__main__":
    sys.exit(main())
