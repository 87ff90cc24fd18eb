"""API latency under mixed console traffic: p50/p90/p99 at a fixed request rate, 100,000 cases.

For each backend (SQLite, PostgreSQL) a fresh database is migrated and seeded by bulk Core
INSERTs: ``--cases`` cases spread over 90 days, sites, departments, kinds and states, each with
its audit trail (register, dispatch; chained by storage.audit.chain_entries) and two evidence
links to 2,000 stored JPEGs (generated random pixels). The real
``civicwatch server`` then runs in its own process (uvicorn, a private Mosquitto for ingest).

The load is open-loop: request i is due at start + i/rate whether or not earlier ones have
answered, and its latency counts from when it was due, so a slow server cannot hide queueing
(coordinated omission). The mix is what an open console does: the case list (default, and
filtered + paged), case detail, the console's HTML fragments and case panel, cameras, stats,
evidence images, and a few actions (dispatcher notes, worker accepts). Routes that are not there
(or refuse a bearer token) are left out and named in the summary.

``--baseline`` first serves the same database without the indexes added for the console
(storage.tables.CONSOLE_INDEXES), then with them: the same mix, before and after, in one run.

    .venv/bin/python -m bench.api_load [--cases 100000] [--rate 200] [--seconds 30]
        [--backends sqlite postgresql] [--baseline]

Progress goes to stderr on a terminal; the last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import inspect
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from alembic.script import ScriptDirectory
from PIL import Image
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex, DropIndex

from bench.cpu_shares import CpuMeter, one_line, postgres_roots
from bench.ingest_rate import POSTGRES_ADMIN_URL, scratch_database
from contracts.events import ViolationKind
from contracts.kinds import CAMERA_KINDS, zone_kinds_of
from contracts.mqtt import BrokerSettings
from contracts.sites import CameraConfig, GatewayConfig, SiteConfig, ZoneConfig, ZoneKind
from contracts.stats import percentile
from dispatch.config import Department
from dispatch.kinds import DEFAULT_ROUTES
from loadgen.measure import Progress
from storage.audit import chain_entries
from storage.database import make_engine, make_session_factory
from storage.evidence_store import EvidenceStore
from storage.schema import alembic_config, migrate
from storage.tables import (
    CONSOLE_INDEXES,
    OPEN_STATES,
    REDACTED_EVIDENCE_INDEX,
    Case,
    CaseEvidence,
    CaseState,
    CaseTransition,
    Evidence,
)
from tests.conftest import MosquittoProcess, free_port

DISPATCHER_TOKEN = "bench-dispatcher-token-0001"
WORKER_TOKEN = "bench-worker-token-00000001"
WORKER_DEPARTMENT = Department.LAW_ENFORCEMENT
SITES, GATEWAYS_PER_SITE, CAMERAS_PER_GATEWAY = 10, 2, 5
IMAGES = 2000  # evidence files; each is linked to about 100 cases
SEEDED_TABLE = "bench_seeded"  # in a kept seeded database: what it was seeded with (JSON)
SERVER_COMMAND = (sys.executable, "-m", "civicwatch.cli", "--log-level", "WARNING", "server")
API_COMMAND = (sys.executable, "-m", "civicwatch.cli", "--log-level", "WARNING", "api")
SATURATE_SECONDS_WARMUP = 2.0
BATCH = 5000
WARMUP_SECONDS = 3.0
# Client connections, as a few open consoles behind a proxy would hold; requests beyond them
# wait in the client, and that wait counts in their latency (it is measured from the due time).
CONNECTIONS = 64
# uvicorn closes a kept-alive connection that has been idle for its keep-alive timeout (its
# default, 5 s: civicwatch.serving leaves it). httpx reuses an idle connection for its
# ``keepalive_expiry``, also 5 s by default, counted from a moment a little later (when the
# client has read the response): so now and then the generator sent a request on a connection
# the server was closing that instant, and got no answer (RemoteProtocolError "Server
# disconnected without sending a response", or ReadError on a reset). Browsers resend a request
# that fails so on a reused connection; httpx does not. httpx checks the expiry when it picks a
# connection, and a starved generator was seen to send up to ~0.5 s later: so the generator
# lets its connections go two seconds before the server would.
SERVER_KEEP_ALIVE_SECONDS = float(
    inspect.signature(uvicorn.Config).parameters["timeout_keep_alive"].default
)
CLIENT_KEEPALIVE_EXPIRY = SERVER_KEEP_ALIVE_SECONDS - 2.0
STATE_SHARES = {
    CaseState.DISPATCHED: 0.30,
    CaseState.ACCEPTED: 0.20,
    CaseState.NEW: 0.08,
    CaseState.RESOLVED: 0.05,
    CaseState.CLOSED: 0.27,
    CaseState.RETURNED: 0.04,
    CaseState.PARKED: 0.04,
    CaseState.MERGED: 0.02,
}
# Each kind's zone kind and default department, from the kinds catalogue.
# Camera kinds only: the load is camera events; residents' categories have no zone kind.
KINDS = {
    kind: (zone_kinds_of(kind)[0], DEFAULT_ROUTES[kind].department)
    for kind in ViolationKind
    if kind in CAMERA_KINDS
}


def site_registry() -> list[SiteConfig]:
    """SITES sites x GATEWAYS_PER_SITE gateways x CAMERAS_PER_GATEWAY cameras, one zone each."""
    square = [[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0]]
    sites = []
    for s in range(SITES):
        gateways = []
        for g in range(GATEWAYS_PER_SITE):
            cameras = [
                CameraConfig(
                    id=f"cam-{s:02d}-{g}-{c}",
                    name=f"camera {s}-{g}-{c}",
                    source="rtsp://camera.invalid/stream",
                    zones=[
                        ZoneConfig(id="gate", kind=ZoneKind.NO_PARKING, polygon=square),
                        ZoneConfig(id="lane", kind=ZoneKind.FIRE_LANE, polygon=square),
                    ],
                )
                for c in range(CAMERAS_PER_GATEWAY)
            ]
            gateways.append(GatewayConfig(id=f"gw-{s:02d}-{g}", cameras=cameras))
        sites.append(SiteConfig(id=f"site-{s:02d}", gateways=gateways))
    return sites


@dataclass
class Seeded:
    case_ids: list[int]
    evidence: list[str]
    accept_pool: list[int]  # dispatched cases of the worker's department, one accept each
    open_ids: list[int]  # cases a note may be added to
    seconds: float


def noise_jpeg(seed_value: int) -> bytes:
    """A small JPEG of random pixels: every seed gives a different file (and hash)."""
    pixels = random.Random(seed_value).randbytes(32 * 24 * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (32, 24), pixels).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def deadlines(state: CaseState, now: datetime, rng: random.Random) -> dict[str, Any]:
    """A case's times as the SLA sweep would have left them, so the server's sweep finds
    nothing to catch up on: closed cases over the last 90 days; open ones from the last hours,
    most due later, some overdue and already escalated to the department head."""
    if state in OPEN_STATES:
        opened = now - timedelta(seconds=rng.uniform(60, 4 * 3600))
        acknowledged = state in (CaseState.ACCEPTED, CaseState.RETURNED)
        overdue = rng.random() < 0.15
        due = now - timedelta(minutes=rng.uniform(5, 60)) if overdue else None
        times = {
            "opened_at": opened,
            "sla_due_at": due or now + timedelta(minutes=rng.uniform(10, 3 * 24 * 60)),
            "ack_due_at": opened + timedelta(minutes=30),
            "acknowledged_at": opened + timedelta(minutes=10) if acknowledged else None,
            "overdue": overdue,
            "escalation_level": 2 if overdue else 0,
            "escalated_at": now if overdue else None,
            "closed_at": None,
        }
        if not acknowledged and not overdue:
            times["ack_due_at"] = now + timedelta(minutes=rng.uniform(5, 60))
        if not acknowledged and overdue:
            times["acknowledged_at"] = opened + timedelta(minutes=10)
    else:
        opened = now - timedelta(seconds=rng.uniform(4 * 3600, 90 * 86400))
        closed = state in (CaseState.CLOSED, CaseState.MERGED)
        times = {
            "opened_at": opened,
            "sla_due_at": opened + timedelta(hours=2),
            "ack_due_at": opened + timedelta(minutes=30),
            "acknowledged_at": opened + timedelta(minutes=10),
            "overdue": False,
            "escalation_level": 0,
            "escalated_at": None,
            "closed_at": opened + timedelta(hours=rng.uniform(0.5, 30)) if closed else None,
        }
    times.update(
        started_at=opened - timedelta(minutes=6),
        last_observed_at=opened + timedelta(minutes=3),
        created_at=opened,
        updated_at=opened,
    )
    return times


def write_images(evidence_dir: Path) -> list[tuple[str, bytes]]:
    """The IMAGES evidence files (the same bytes for every run), stored under ``evidence_dir``."""
    files = []
    for seed_value in range(IMAGES):
        data = noise_jpeg(seed_value)
        files.append((hashlib.sha256(data).hexdigest(), data))
    store = EvidenceStore(evidence_dir)
    store.write_unsynced(files)
    store.sync()
    return files


def seed(database_url: str, evidence_dir: Path, cases: int, rng: random.Random) -> Seeded:
    """Migrate and fill the database (see the module docstring); returns ids to request."""
    started = time.monotonic()
    migrate(database_url)
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    now = datetime.now(UTC)
    files = write_images(evidence_dir)
    images = [sha for sha, _ in files]
    evidence_rows = [
        {
            "sha256": sha,
            "content_type": "image/jpeg",
            "size": len(data),
            "width": 32,
            "height": 24,
            "stored_at": now,
        }
        for sha, data in files
    ]
    cameras = [
        (site.id, gateway.id, camera.id)
        for site in site_registry()
        for gateway in site.gateways
        for camera in gateway.cameras
    ]
    states = list(STATE_SHARES)
    weights = list(STATE_SHARES.values())
    accept_pool: list[int] = []
    open_ids: list[int] = []
    progress = Progress(f"seed {make_url(database_url).get_backend_name()}", cases)
    with sessions.begin() as session:
        session.execute(insert(Evidence), evidence_rows)
    for start in range(0, cases, BATCH):
        case_rows, link_rows, audit = [], [], []
        for case_id in range(start + 1, min(start + BATCH, cases) + 1):
            kind = rng.choice(list(KINDS))
            zone_kind, department = KINDS[kind]
            if kind is ViolationKind.ILLEGAL_PARKING and rng.random() < 0.3:
                department = rng.choice(
                    [Department.PUBLIC_SECURITY, Department.PROPERTY_MANAGEMENT]
                )
            site_id, gateway_id, camera_id = rng.choice(cameras)
            state = rng.choices(states, weights)[0]
            case_times = deadlines(state, now, rng)
            case_rows.append(
                {
                    "id": case_id,
                    "violation_id": uuid.UUID(int=rng.getrandbits(128), version=4),
                    "kind": kind.value,
                    "site_id": site_id,
                    "gateway_id": gateway_id,
                    "camera_id": camera_id,
                    "zone_id": "lane" if zone_kind is ZoneKind.FIRE_LANE else "gate",
                    "zone_kind": zone_kind.value,
                    "state": state.value,
                    "department": None if state is CaseState.NEW else department.value,
                    "tier": "department",
                    "priority": "urgent" if kind is ViolationKind.FIRE_LANE_BLOCKING else "normal",
                    **case_times,
                    "dwell_seconds": 360.0,
                    "object_class": "car",
                    "object_confidence": 0.87,
                    "box_x1": 10.0,
                    "box_y1": 20.0,
                    "box_x2": 60.0,
                    "box_y2": 70.0,
                    "plate_text": f"浙A{rng.randrange(100000):05d}" if rng.random() < 0.5 else None,
                    "chain_broken": False,
                }
            )
            if state in OPEN_STATES:
                open_ids.append(case_id)
            if state is CaseState.DISPATCHED and department is WORKER_DEPARTMENT:
                accept_pool.append(case_id)
            first, second = rng.sample(images, 2)
            for position, sha in enumerate((first, second)):
                link_rows.append(
                    {
                        "case_id": case_id,
                        "sha256": sha,
                        "label": "dwell_crossed" if position else "first_seen",
                        "captured_at": case_times["opened_at"] + timedelta(seconds=position),
                        "width": 32,
                        "height": 24,
                    }
                )
            audit.append(
                {"case_id": case_id, "action": "register", "from_state": None}
                | {"to_state": "new", "actor": "ingest", "reason": "opened"}
                | {"at": case_times["opened_at"]}
            )
            if state is not CaseState.NEW:
                audit.append(
                    {"case_id": case_id, "action": "dispatch", "from_state": "new"}
                    | {"to_state": "dispatched", "actor": "router", "reason": "route"}
                    | {"at": case_times["opened_at"], "detail": {"department": department.value}}
                )
        with sessions.begin() as session:
            session.execute(insert(Case), case_rows)
            session.execute(insert(CaseEvidence), link_rows)
            session.execute(insert(CaseTransition), chain_entries(session, audit))
        progress.show(start + len(case_rows), force=True)
    progress.finish()
    if engine.dialect.name == "postgresql":
        # VACUUM as well: the test server runs with autovacuum off, and without the visibility
        # map it sets no scan reads an index alone (a served database's autovacuum sets it).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    rng.shuffle(accept_pool)
    return Seeded(
        case_ids=list(range(1, cases + 1)),
        evidence=images,
        accept_pool=accept_pool,
        open_ids=open_ids,
        seconds=time.monotonic() - started,
    )


def set_console_indexes(database_url: str, present: bool) -> None:
    """Create or drop storage.tables.CONSOLE_INDEXES (the baseline runs without them)."""
    engine = make_engine(database_url)
    with engine.begin() as connection:
        for index in (*CONSOLE_INDEXES, REDACTED_EVIDENCE_INDEX):
            if present:
                connection.execute(CreateIndex(index, if_not_exists=True))
            else:
                connection.execute(DropIndex(index, if_exists=True))
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("ANALYZE cases"))
            connection.commit()
    engine.dispose()


@dataclass
class Served:
    base: str  # the API's base URL
    broker: BrokerSettings  # the private Mosquitto its ingest consumes from
    pid: int = 0  # the server's process
    broker_pid: int = 0  # the private Mosquitto's process


def server_config(database_url: str, workdir: Path, broker_port: int, port: int) -> dict[str, Any]:
    """The server's configuration (as YAML would hold it): the bench sites, its two tokens."""
    return {
        "sites": [site.model_dump(mode="json") for site in site_registry()],
        "broker": {"host": "127.0.0.1", "port": broker_port},
        "server": {
            "database_url": database_url,
            "ingest": {"evidence_dir": str(workdir / "evidence")},
            "api": {
                "port": port,
                "tokens": [
                    {"name": "desk", "token": DISPATCHER_TOKEN, "role": "dispatcher"},
                    {
                        "name": "officer",
                        "token": WORKER_TOKEN,
                        "role": "worker",
                        "department": WORKER_DEPARTMENT.value,
                    },
                ],
            },
        },
    }


@contextmanager
def running_server(
    database_url: str, workdir: Path, command: Sequence[str] = SERVER_COMMAND
) -> Iterator[Served]:
    """``civicwatch server`` (or ``command``, e.g. ``civicwatch api --workers 2``) in its own
    process with a private Mosquitto, once ready."""
    broker = MosquittoProcess(workdir / "broker")
    broker.start()
    port = free_port()
    config = server_config(database_url, workdir, broker.port, port)
    config_file = workdir / "civicwatch.yaml"
    config_file.write_text(yaml.safe_dump(config, allow_unicode=True))
    log = (workdir / "server.log").open("wb")
    process = subprocess.Popen(
        [*command, "--config", str(config_file)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become ready; see {workdir}/server.log")
            time.sleep(0.2)
        yield Served(
            base, broker.settings, process.pid, broker.process.pid if broker.process else 0
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        broker.stop()


@dataclass
class Request:
    name: str
    method: str
    path: str
    token: str = DISPATCHER_TOKEN
    body: dict[str, Any] | None = None


@dataclass
class Mix:
    """The request mix: (name, weight) -> a Request factory drawing ids from the seed."""

    seeded: Seeded
    rng: random.Random
    skipped: list[str] = field(default_factory=list)
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "cases_default": 16,
            "cases_filtered_paged": 14,
            "case_detail": 18,
            "console_cases_fragment": 6,
            "console_sla_fragment": 4,
            "console_case_panel": 8,
            "cameras": 5,
            "stats": 3,
            "evidence_image": 20,
            "note": 4,
            "accept": 2,
        }
    )

    def make(self, name: str) -> Request:
        rng = self.rng
        case_id = rng.choice(self.seeded.case_ids)
        if name == "cases_default":
            return Request(name, "GET", "/api/v1/cases")
        if name == "cases_filtered_paged":
            state = rng.choice(["dispatched", "accepted", "returned"])
            department = rng.choice([d.value for d in Department])
            offset = rng.choice([0, 0, 50, 200, 1000])
            query = f"state={state}&department={department}&limit=50&offset={offset}"
            return Request(name, "GET", f"/api/v1/cases?{query}")
        if name == "case_detail":
            return Request(name, "GET", f"/api/v1/cases/{case_id}")
        if name == "console_cases_fragment":
            return Request(name, "GET", "/console/fragments/cases")
        if name == "console_sla_fragment":
            return Request(name, "GET", "/console/fragments/sla")
        if name == "console_case_panel":
            return Request(name, "GET", f"/console/cases/{case_id}/panel")
        if name == "cameras":
            return Request(name, "GET", "/api/v1/cameras")
        if name == "stats":
            return Request(name, "GET", "/api/v1/stats")
        if name == "evidence_image":
            return Request(name, "GET", f"/api/v1/evidence/{rng.choice(self.seeded.evidence)}")
        if name == "note":
            body = {"action": "note", "reason": "called the property office"}
            target = rng.choice(self.seeded.open_ids)
            return Request(name, "POST", f"/api/v1/cases/{target}/actions", body=body)
        if name == "accept":
            if not self.seeded.accept_pool:
                return self.make("case_detail")
            target = self.seeded.accept_pool.pop()
            body = {"action": "accept"}
            path = f"/api/v1/cases/{target}/actions"
            return Request(name, "POST", path, token=WORKER_TOKEN, body=body)
        raise ValueError(f"unknown request kind {name}")

    def draw(self) -> Request:
        names = list(self.weights)
        return self.make(self.rng.choices(names, [self.weights[n] for n in names])[0])

    def probe(self, base: str) -> None:
        """Leave out request kinds this server does not serve (a route not built yet, or one
        that wants a login session rather than a bearer token)."""
        for name in list(self.weights):
            if name in ("note", "accept"):
                continue
            request = self.make(name)
            response = httpx.get(
                base + request.path,
                headers={"Authorization": f"Bearer {request.token}"},
                follow_redirects=False,
                timeout=30,
            )
            if response.status_code != 200:
                self.skipped.append(f"{name} ({response.status_code})")
                del self.weights[name]


def client_limits(keepalive_expiry: float = CLIENT_KEEPALIVE_EXPIRY) -> httpx.Limits:
    """The generator's connection pool: CONNECTIONS, each reused while idle for less than
    ``keepalive_expiry`` (below the server's keep-alive timeout: see CLIENT_KEEPALIVE_EXPIRY)."""
    return httpx.Limits(
        max_connections=CONNECTIONS,
        max_keepalive_connections=CONNECTIONS,
        keepalive_expiry=keepalive_expiry,
    )


@dataclass
class Sample:
    name: str
    due: float
    latency_ms: float
    status: int
    error: str = ""  # status 0: the exception's class and message


async def drive(
    base: str,
    mix: Mix,
    rate: float,
    seconds: float,
    keepalive_expiry: float = CLIENT_KEEPALIVE_EXPIRY,
) -> tuple[list[Sample], float]:
    """Open-loop load: request i is due at start + i / rate; latency counts from that moment."""
    total = int(rate * (seconds + WARMUP_SECONDS))
    samples: list[Sample] = []
    progress = Progress(f"load {rate:.0f}/s", total)
    limits = client_limits(keepalive_expiry)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def one(request: Request, due: float) -> None:
            headers = {"Authorization": f"Bearer {request.token}"}
            try:
                response = await client.request(
                    request.method, request.path, headers=headers, json=request.body
                )
                await response.aread()
                status = response.status_code
                error = ""
            except httpx.HTTPError as exc:
                status = 0
                error = ": ".join(failure_of(exc))
            latency = (time.perf_counter() - due) * 1000
            samples.append(Sample(request.name, due, latency, status, error))

        start = time.perf_counter() + 0.1
        tasks = []
        for index in range(total):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(mix.draw(), due)))
            progress.show(index + 1)
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
        progress.finish()
    warm = start + WARMUP_SECONDS
    measured = [sample for sample in samples if sample.due >= warm]
    return measured, len(measured) / max(elapsed - WARMUP_SECONDS, 1e-9)


def summarise(samples: list[Sample], achieved: float) -> dict[str, Any]:
    latencies = [sample.latency_ms for sample in samples]
    by_name: dict[str, list[float]] = {}
    for sample in samples:
        by_name.setdefault(sample.name, []).append(sample.latency_ms)
    errors = [s for s in samples if s.status == 0 or s.status >= 400]
    return {
        "requests": len(samples),
        "achieved_rate": round(achieved, 1),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p90_ms": round(percentile(latencies, 0.90), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies, default=float("nan")), 1),
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
        "errors": len(errors),
        "error_statuses": sorted({s.status for s in errors}),
        "unanswered_by_kind": {
            error: sum(1 for s in errors if s.error == error)
            for error in sorted({s.error for s in errors if s.status == 0})
        },
        "by_request": {
            name: {
                "n": len(values),
                "p50_ms": round(percentile(values, 0.5), 1),
                "p99_ms": round(percentile(values, 0.99), 1),
            }
            for name, values in sorted(by_name.items())
        },
    }


def serve_and_drive(
    url: str, workdir: Path, seeded: Seeded, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """One server; the mix at each of ``args.rate`` in turn."""
    results = []
    with running_server(url, workdir) as served:
        for rate in args.rate:
            mix = Mix(seeded, random.Random(args.seed + 1))
            mix.probe(served.base)
            samples, achieved = asyncio.run(
                drive(served.base, mix, rate, args.seconds, args.keepalive_expiry)
            )
            result = summarise(samples, achieved)
            result.update(offered_rate=rate, skipped=mix.skipped)
            results.append(result)
    return results


def run_backend(backend: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Seed once; with --baseline serve it first without the console indexes, then with."""
    workdir = Path(tempfile.mkdtemp(prefix=f"api-load-{backend}-"))
    results = []
    try:
        with scratch_database(backend, workdir) as url:
            seeded = seed(url, workdir / "evidence", args.cases, random.Random(args.seed))
            schemas = ["baseline", "optimised"] if args.baseline else ["optimised"]
            for schema in schemas:
                set_console_indexes(url, present=schema == "optimised")
                for result in serve_and_drive(url, workdir, seeded, args):
                    result.update(backend=backend, schema=schema, seed_s=round(seeded.seconds, 1))
                    print(json.dumps(result), file=sys.stderr)
                    results.append(result)
        return results
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Failure:
    """One request that got no answer (httpx raised) or an error status, and when."""

    name: str  # the request kind
    kind: str  # the exception's class (``ReadTimeout``...), or ``HTTP 500``
    message: str  # the exception's text, or the response's first 200 characters
    sent_s: float  # when it was sent, seconds from the window's start (< 0: in the warm-up)
    failed_s: float  # when the failure came, seconds from the window's start
    # On a kept-alive connection: how long it had been idle when this request went out
    # (None: a new connection); and the step of httpcore's that failed (``...failed``).
    idle_s: float | None = None
    step: str = ""

    def phase(self, seconds: float) -> str:
        """``warm-up``, ``start`` (the window's first second), ``steady``, ``end`` (its last
        second) or ``after`` (sent in the window, failed after it ended) by ``failed_s``."""
        if self.sent_s < 0:
            return "warm-up"
        if self.failed_s >= seconds:
            return "after"
        if self.failed_s < 1.0:
            return "start"
        return "end" if self.failed_s >= seconds - 1.0 else "steady"


class ConnectionTrace:
    """httpcore's trace events for one client: for each request, whether it went out on a new
    connection or on a kept-alive one and how long that one had been idle, and the step that
    failed. A connection is told apart by the httpcore object that traces (found up the
    stack: the trace API names the request, not the connection)."""

    def __init__(self) -> None:
        # connection -> when its last response closed (weak: a closed connection's id() may be
        # a new connection's, which would then look reused)
        self.last_closed: weakref.WeakKeyDictionary[object, float] = weakref.WeakKeyDictionary()
        self.reused = 0  # requests sent on a kept-alive connection
        self.reused_late = 0  # ... on one idle for over SERVER_KEEP_ALIVE_SECONDS - 1
        self.longest_idle = 0.0  # the longest idle time a reused connection had

    @staticmethod
    def _connection() -> object | None:
        frame = sys._getframe(1)
        while frame is not None:
            owner = frame.f_locals.get("self")
            connection = getattr(owner, "_connection", owner)
            if type(connection).__name__ == "AsyncHTTP11Connection":
                return connection
            frame = frame.f_back  # type: ignore[assignment]
        return None

    def extension(self, record: dict[str, Any]) -> Callable[[str, dict[str, Any]], Any]:
        """A ``trace`` extension for one request, filling ``record`` (idle_s, step)."""

        async def trace(name: str, info: dict[str, Any]) -> None:
            if name == "http11.send_request_headers.started":
                connection = self._connection()
                last = None if connection is None else self.last_closed.get(connection)
                idle = None if last is None else time.perf_counter() - last
                record["idle_s"] = idle
                if idle is not None:
                    self.reused += 1
                    self.reused_late += idle > SERVER_KEEP_ALIVE_SECONDS - 1.0
                    self.longest_idle = max(self.longest_idle, idle)
            elif name == "http11.response_closed.complete":
                if (connection := self._connection()) is not None:
                    self.last_closed[connection] = time.perf_counter()
            elif name.endswith(".failed") and "step" not in record:
                record["step"] = name

        return trace


def failure_of(exc: BaseException) -> tuple[str, str]:
    """An httpx exception's class and message (its cause's when it has none of its own)."""
    message = str(exc) or repr(exc.__cause__ or exc.__context__ or "")
    return type(exc).__name__, message[:200]


def failure_summary(failures: Sequence[Failure], seconds: float) -> dict[str, Any]:
    """Failures counted by kind and message (the window's: sent after the warm-up), by phase
    (the warm-up's too), and the first few with their times."""
    by_kind: dict[str, int] = {}
    by_phase: dict[str, int] = {}
    for failure in failures:
        phase = failure.phase(seconds)
        by_phase[phase] = by_phase.get(phase, 0) + 1
        if phase != "warm-up":
            key = f"{failure.kind}: {failure.message}"
            by_kind[key] = by_kind.get(key, 0) + 1
    first = [
        {
            "name": failure.name,
            "kind": failure.kind,
            "idle_s": None if failure.idle_s is None else round(failure.idle_s, 3),
            "step": failure.step,
            "sent_s": round(failure.sent_s, 3),
            "failed_s": round(failure.failed_s, 3),
            "phase": failure.phase(seconds),
        }
        for failure in sorted(failures, key=lambda failure: failure.failed_s)[:10]
    ]
    return {"by_kind": by_kind, "by_phase": by_phase, "first": first}


async def saturate(
    base: str,
    draw: Callable[[], Request],
    seconds: float,
    meter: CpuMeter | None = None,
    failures: list[Failure] | None = None,
    keepalive_expiry: float = CLIENT_KEEPALIVE_EXPIRY,
    reuse: dict[str, float] | None = None,
) -> tuple[float, dict[str, int], list[float]]:
    """Closed loop: CONNECTIONS clients each send their next request as soon as the last one
    answered, for ``seconds`` after a short warm-up. Returns the answered (2xx) requests per
    second, the errors by request kind and status (0: no answer), and the latencies: the most
    this server does with this generator. A ``meter`` is started when the warm-up ends and
    stopped when the window does (``meter.result``: its figures per answered request).
    ``failures`` gets each failed request (the warm-up's too, marked as such), with its
    exception or status and when it came; ``reuse`` how often a kept-alive connection was
    reused, how often after idling over a second short of the server's keep-alive timeout
    (where the server may be closing it), and the longest idle time reused."""
    limits = client_limits(keepalive_expiry)
    answered = 0
    errors: dict[str, int] = {}
    latencies: list[float] = []
    tracer = ConnectionTrace()
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        warm_until = time.perf_counter() + SATURATE_SECONDS_WARMUP
        stop = warm_until + seconds

        async def one_client() -> None:
            nonlocal answered
            while (now := time.perf_counter()) < stop:
                request = draw()
                headers = {"Authorization": f"Bearer {request.token}"}
                kind = message = ""
                traced: dict[str, Any] = {}
                try:
                    response = await client.request(
                        request.method,
                        request.path,
                        headers=headers,
                        json=request.body,
                        extensions={"trace": tracer.extension(traced)},
                    )
                    await response.aread()
                    status = response.status_code
                    if status >= 400:
                        kind, message = f"HTTP {status}", response.text[:200]
                except httpx.HTTPError as exc:
                    status = 0
                    kind, message = failure_of(exc)
                ok = 0 < status < 400
                if not ok and failures is not None:
                    failed = time.perf_counter() - warm_until
                    failures.append(
                        Failure(
                            request.name,
                            kind,
                            message,
                            now - warm_until,
                            failed,
                            traced.get("idle_s"),
                            traced.get("step", ""),
                        )
                    )
                if now < warm_until:
                    continue
                if ok:
                    answered += 1
                    latencies.append((time.perf_counter() - now) * 1000)
                else:
                    key = f"{request.name} {status}"
                    errors[key] = errors.get(key, 0) + 1

        async def window() -> None:
            if meter is None:
                return
            await asyncio.sleep(max(warm_until - time.perf_counter(), 0.0))
            meter.start()
            await asyncio.sleep(max(stop - time.perf_counter(), 0.0))
            meter.result = meter.stop(requests=answered)

        await asyncio.gather(window(), *(one_client() for _ in range(CONNECTIONS)))
    if reuse is not None:
        reuse.update(
            reused=tracer.reused,
            reused_late=tracer.reused_late,
            longest_idle_s=round(tracer.longest_idle, 3),
        )
    return answered / seconds, errors, latencies


SHARES = ("healthz", "mix")


def cpu_meter(served: Served) -> CpuMeter:
    """Per-process CPU while a saturation runs: the server (its workers included), this
    generator (its own threads only), every PostgreSQL process (the postmaster's tree: other
    databases' backends too) and the private Mosquitto."""
    return CpuMeter(
        {
            "server": [served.pid],
            "generator": [os.getpid()],
            "postgres": postgres_roots(),
            "mosquitto": [served.broker_pid],
        },
        own_only=frozenset({"generator"}),
    )


def postgres_sessions(url: str) -> int:
    """Sessions (connections) PostgreSQL has started on ``url``'s database so far."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(
                connection.scalar(
                    text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
                )
                or 0
            )
    finally:
        engine.dispose()


def healthz_request() -> Request:
    return Request("healthz", "GET", "/healthz")


def healthz_share(url: str, workdir: Path, seeded: Seeded, args: argparse.Namespace) -> list[Any]:
    """Issue 15's API figure: at each ``--workers`` count, the mix's most answered requests per
    second as a share of /healthz's (same generator, same server), and the mix's latency at
    half its most, open loop."""
    results = []
    for workers in args.workers:
        command = (*API_COMMAND, "--workers", str(workers))
        with running_server(url, workdir, command) as served:
            mix = Mix(seeded, random.Random(args.seed + 1))
            mix.probe(served.base)
            meters = {name: cpu_meter(served) if args.cpu_shares else None for name in SHARES}
            failures: dict[str, list[Failure]] = {name: [] for name in SHARES}
            reuse: dict[str, dict[str, float]] = {name: {} for name in SHARES}
            sessions = postgres_sessions(url)
            health_rate, health_errors, _ = asyncio.run(
                saturate(
                    served.base,
                    healthz_request,
                    args.seconds,
                    meters["healthz"],
                    failures["healthz"],
                    args.keepalive_expiry,
                    reuse["healthz"],
                )
            )
            between = postgres_sessions(url)
            mix_rate, mix_errors, _ = asyncio.run(
                saturate(
                    served.base,
                    mix.draw,
                    args.seconds,
                    meters["mix"],
                    failures["mix"],
                    args.keepalive_expiry,
                    reuse["mix"],
                )
            )
            after = postgres_sessions(url)
            half = max(mix_rate / 2, 1.0)
            samples, achieved = asyncio.run(
                drive(served.base, mix, half, args.seconds, args.keepalive_expiry)
            )
            at_half = summarise(samples, achieved)
        result = {
            "workers": workers,
            "healthz_rate": round(health_rate, 1),
            "healthz_errors": sum(health_errors.values()),
            "mix_rate": round(mix_rate, 1),
            "mix_errors": sum(mix_errors.values()),
            "mix_errors_by_kind": mix_errors,
            "failures_at_saturation": {
                name: failure_summary(found, args.seconds) for name, found in failures.items()
            },
            "connection_reuse_at_saturation": reuse,
            "share": round(mix_rate / health_rate, 3) if health_rate else None,
            "half_rate": round(half, 1),
            "p50_ms_at_half": at_half["p50_ms"],
            "p99_ms_at_half": at_half["p99_ms"],
            "errors_at_half": at_half["errors"],
            "by_request_at_half": at_half["by_request"],
            "skipped": mix.skipped,
            "load_average": [round(value, 2) for value in os.getloadavg()],
            "postgres_sessions_started": {"healthz": between - sessions, "mix": after - between},
        }
        if args.cpu_shares:
            result["cpu_at_saturation"] = {
                name: meter.result for name, meter in meters.items() if meter
            }
        print(json.dumps(result), file=sys.stderr)
        results.append(result)
    return results


def unanswered_line(run: dict[str, Any]) -> str:
    """``; failed at saturation: mix 2 (ReadError 1, HTTP 500 1)``, or nothing when none did."""
    parts = []
    for name, found in run["failures_at_saturation"].items():
        kinds: dict[str, int] = {}
        for key, count in found["by_kind"].items():
            kind = key.partition(":")[0]
            kinds[kind] = kinds.get(kind, 0) + count
        if kinds:
            listed = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
            parts.append(f"{name} {sum(kinds.values())} ({listed})")
    return f"; failed at saturation: {'; '.join(parts)}" if parts else ""


def template_name(cases: int, seed_value: int) -> str:
    """The kept seeded database's name: its cases, seed, schema head and a digest of the
    seeding code, so a changed schema or seeder never reuses a stale copy."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head() or "none"
    code = "".join(inspect.getsource(part) for part in (seed, deadlines, write_images))
    digest = hashlib.sha256(code.encode()).hexdigest()[:8]
    return f"civicwatch_bench_api_{cases}_{seed_value}_{head}_{digest}"


def _seeded_from(url: str) -> Seeded | None:
    """What a kept database was seeded with; None when its seeding never finished."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            found = connection.scalar(text(f"SELECT to_regclass('{SEEDED_TABLE}') IS NOT NULL"))
            data = connection.scalar(text(f"SELECT data FROM {SEEDED_TABLE}")) if found else None
    finally:
        engine.dispose()
    if data is None:
        return None
    fields = json.loads(data)
    return Seeded(case_ids=list(range(1, fields.pop("cases") + 1)), **fields)


@contextmanager
def seeded_database(
    workdir: Path, cases: int, seed_value: int, keep_template: bool
) -> Iterator[tuple[str, Seeded]]:
    """A PostgreSQL database seeded as ``seed`` does, dropped afterwards. With
    ``keep_template`` the seeding is done once into a kept database (``template_name``) and
    each run gets a fresh copy of it (CREATE DATABASE ... TEMPLATE, seconds instead of the
    minutes 100,000 cases take to seed); its requests change the copy, never the template."""
    if not keep_template:
        with scratch_database("postgresql", workdir) as url:
            yield url, seed(url, workdir / "evidence", cases, random.Random(seed_value))
        return
    started = time.monotonic()
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    base = make_url(POSTGRES_ADMIN_URL)
    template = template_name(cases, seed_value)
    template_url = base.set(database=template).render_as_string(hide_password=False)
    scratch = f"civicwatch_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            there = connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": template}
            )
        seeded = _seeded_from(template_url) if there else None
        if seeded is None:  # none kept yet, or a seeding that was cut short: seed it afresh
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))
                connection.execute(text(f'CREATE DATABASE "{template}"'))
            seeded = seed(template_url, workdir / "evidence", cases, random.Random(seed_value))
            kept = asdict(seeded) | {"cases": len(seeded.case_ids)}
            del kept["case_ids"]
            engine = make_engine(template_url)
            with engine.begin() as connection:
                connection.execute(text(f"CREATE TABLE {SEEDED_TABLE} (data text NOT NULL)"))
                connection.execute(
                    text(f"INSERT INTO {SEEDED_TABLE} VALUES (:data)"), {"data": json.dumps(kept)}
                )
            engine.dispose()
        else:
            write_images(workdir / "evidence")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{scratch}" TEMPLATE "{template}"'))
        seeded.seconds = time.monotonic() - started
        yield base.set(database=scratch).render_as_string(hide_password=False), seeded
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
        admin.dispose()


def run_share(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="api-share-"))
    try:
        with seeded_database(workdir, args.cases, args.seed, args.keep_seeded) as (url, seeded):
            runs = healthz_share(url, workdir, seeded, args)
        shares = [run["share"] for run in runs]
        p99s = [run["p99_ms_at_half"] for run in runs]
        return {
            "bench": "api_load",
            "mode": "healthz_share",
            "backend": "postgresql",
            "cases": args.cases,
            "seed_s": round(seeded.seconds, 1),
            "seed_template": template_name(args.cases, args.seed) if args.keep_seeded else None,
            "seconds": args.seconds,
            "connections": CONNECTIONS,
            "keepalive_expiry": args.keepalive_expiry,
            "target_share": 0.5,
            "target_p99_ms_at_half": 100,
            "share_met": all(share is not None and share >= 0.5 for share in shares),
            "p99_met": all(p99 <= 100 for p99 in p99s),
            "runs": runs,
        }
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument(
        "--rate", type=float, nargs="+", default=[200.0], help="requests per second (each in turn)"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per run")
    parser.add_argument(
        "--backends", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    parser.add_argument("--baseline", action="store_true", help="also run without BENCH_INDEXES")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the work folders")
    parser.add_argument(
        "--healthz-share",
        action="store_true",
        help="PostgreSQL only: the mix's most requests/s as a share of /healthz's under "
        "`civicwatch api --workers N` for each of --workers, and the p99 at half the most",
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--keep-seeded",
        action="store_true",
        help="with --healthz-share: seed once into a kept PostgreSQL database (named after "
        "--cases, --seed and the schema) and serve a fresh copy of it on each run",
    )
    parser.add_argument(
        "--cpu-shares",
        action="store_true",
        help="with --healthz-share: each process group's CPU (server, generator, postgres, "
        "mosquitto, the rest of the machine) over each saturation window, as cores and as "
        "CPU ms per answered request",
    )
    parser.add_argument(
        "--keepalive-expiry",
        type=float,
        default=CLIENT_KEEPALIVE_EXPIRY,
        help="seconds the generator reuses an idle connection (default: 2 s under the "
        f"server's keep-alive timeout, {SERVER_KEEP_ALIVE_SECONDS:g} s; 5 is httpx's default, "
        "which races the server's closing)",
    )
    args = parser.parse_args(argv)
    if args.healthz_share:
        share = run_share(args)
        line = "; ".join(
            f"{run['workers']} worker(s): mix {run['mix_rate']}/s = {run['share']} of healthz "
            f"{run['healthz_rate']}/s, p99 {run['p99_ms_at_half']} ms at {run['half_rate']}/s"
            + unanswered_line(run)
            + (
                f"; at mix saturation: {one_line(run['cpu_at_saturation']['mix'])}"
                if "cpu_at_saturation" in run
                else ""
            )
            for run in share["runs"]
        )
        print(f"API mix vs /healthz ({args.cases} cases, PostgreSQL): {line}")
        print(json.dumps(share))
        return 0
    runs = []
    for backend in args.backends:
        runs.extend(run_backend(backend, args))
    summary = {
        "bench": "api_load",
        "cases": args.cases,
        "rate": args.rate,
        "seconds": args.seconds,
        "target_p99_ms": 50,
        "runs": runs,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
