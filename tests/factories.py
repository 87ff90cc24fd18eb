"""Real contract objects and a migrated database for server-side tests."""

from __future__ import annotations

import atexit
import hashlib
import io
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

from PIL import Image
from pydantic import SecretStr
from sqlalchemy import Engine

from contracts.events import (
    EvidenceFrame,
    EvidenceLabel,
    Phase,
    ViolationEvent,
    ViolationKind,
    WarningNotice,
)
from contracts.sites import (
    CameraConfig,
    GatewayConfig,
    SiteConfig,
    SiteRegistry,
    ZoneConfig,
    ZoneKind,
)
from contracts.topics import violation_topic
from dispatch.config import ApiToken, Department, Role, RoutingSettings
from dispatch.routing import Router
from ingest.handler import ViolationHandler
from ingest.metrics import IngestMetrics
from ingest.store import IngestService
from loadgen.events import violation_event
from storage.database import SessionFactory, make_engine, make_session_factory
from storage.evidence_store import EvidenceStore
from storage.routing import CaseRouter
from storage.tables import CaseEvidence, Evidence

SITE = "site-a"
GATEWAY = "gw-a1"
CAMERA = "cam-a1"
# Config bearer tokens the API tests authenticate with (a test that needs another role for one
# of them derives it with model_copy).
API_TOKENS = {
    "dispatcher": ApiToken(
        name="desk", token=SecretStr("dispatcher-token-0001"), role=Role.DISPATCHER
    ),
    "law": ApiToken(
        name="officer",
        token=SecretStr("law-enforcement-token"),
        role=Role.WORKER,
        department=Department.LAW_ENFORCEMENT,
    ),
    "fire": ApiToken(
        name="firefighter",
        token=SecretStr("fire-rescue-token-01"),
        role=Role.WORKER,
        department=Department.FIRE_RESCUE,
    ),
    "integration": ApiToken(
        name="city-brain", token=SecretStr("integration-token-1"), role=Role.INTEGRATION
    ),
}

PARKING_ZONE = "gate-no-parking"
FIRE_LANE_ZONE = "fire-lane-north"
OTHER_SITE = "site-b"
OTHER_GATEWAY = "gw-b1"
OTHER_CAMERA = "cam-b1"
T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)

_SQUARE = [[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0]]


def make_registry() -> SiteRegistry:
    return SiteRegistry(
        sites=[
            SiteConfig(
                id=SITE,
                gateways=[
                    GatewayConfig(
                        id=GATEWAY,
                        cameras=[
                            CameraConfig(
                                id=CAMERA,
                                name="north gate",
                                source="rtsp://camera.invalid/stream",
                                zones=[
                                    ZoneConfig(
                                        id=PARKING_ZONE,
                                        kind=ZoneKind.NO_PARKING,
                                        polygon=_SQUARE,
                                        dwell_seconds=300,
                                    ),
                                    ZoneConfig(
                                        id=FIRE_LANE_ZONE,
                                        kind=ZoneKind.FIRE_LANE,
                                        polygon=_SQUARE,
                                        dwell_seconds=30,
                                    ),
                                ],
                            )
                        ],
                    )
                ],
            ),
            SiteConfig(
                id=OTHER_SITE,
                gateways=[
                    GatewayConfig(
                        id=OTHER_GATEWAY,
                        cameras=[
                            CameraConfig(
                                id=OTHER_CAMERA,
                                source="rtsp://camera.invalid/b",
                                zones=[
                                    ZoneConfig(
                                        id=PARKING_ZONE,
                                        kind=ZoneKind.NO_PARKING,
                                        polygon=_SQUARE,
                                        dwell_seconds=300,
                                    )
                                ],
                            )
                        ],
                    )
                ],
            ),
        ]
    )


def jpeg_bytes(seed: int) -> bytes:
    """A small real JPEG whose content (and so hash) depends on ``seed``."""
    image = Image.new("RGB", (32, 24), ((seed * 37) % 256, (seed * 91) % 256, (seed * 13) % 256))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def make_frame(seed: int, label: EvidenceLabel = EvidenceLabel.DWELL_CROSSED) -> EvidenceFrame:
    data = jpeg_bytes(seed)
    return EvidenceFrame(
        label=label,
        captured_at=T0 + timedelta(seconds=seed),
        sha256=hashlib.sha256(data).hexdigest(),
        width=32,
        height=24,
        data=data,
    )


@dataclass
class EventFactory:
    """Builds events of one camera with increasing sequence numbers, like one edge worker."""

    site_id: str = SITE
    gateway_id: str = GATEWAY
    camera_id: str = CAMERA
    next_sequence: int = 0
    next_seed: int = 1

    def event(
        self,
        phase: Phase = Phase.OPENED,
        violation_id: UUID | None = None,
        zone_id: str = PARKING_ZONE,
        kind: ViolationKind = ViolationKind.ILLEGAL_PARKING,
        frames: int = 2,
        at: datetime = T0,
        warning: WarningNotice | None = None,
    ) -> ViolationEvent:
        if warning is None and phase in (Phase.WARNED, Phase.COMPLIED):
            warned_at = at if phase is Phase.WARNED else at - timedelta(minutes=1)
            warning = WarningNotice(
                rule_id="warn",
                warned_at=warned_at,
                grace_until=warned_at + timedelta(minutes=5),
                announced=True,
            )
        evidence = []
        for _ in range(frames):
            evidence.append(make_frame(self.next_seed))
            self.next_seed += 1
        event = violation_event(
            self.site_id,
            self.gateway_id,
            self.camera_id,
            self.next_sequence,
            phase=phase,
            kind=kind,
            zone_id=zone_id,
            violation_id=violation_id or uuid4(),
            started_at=at - timedelta(minutes=6),  # 360 s of dwell
            observed_at=at,
            evidence=evidence,
            warning=warning,
        )
        self.next_sequence += 1
        return event

    @property
    def topic(self) -> str:
        return violation_topic(self.site_id, self.gateway_id, self.camera_id)


# The scratch PostgreSQL databases conftest's fixture makes: only these may be replaced by a copy.
SCRATCH_POSTGRES_PREFIX = "civicwatch_test_"


@dataclass
class _MigratedTemplates:
    """A database per backend migrated to head by the real migrations once per test process; an
    empty scratch database starts as a copy of it (a file copy on SQLite, ``CREATE DATABASE ...
    TEMPLATE`` on PostgreSQL) instead of running every migration again (seconds per test)."""

    sqlite_file: Path | None = None
    postgres_name: str | None = None
    postgres_admin_url: str | None = None

    def sqlite(self) -> Path:
        if self.sqlite_file is None:
            from storage.schema import migrate

            folder = Path(tempfile.mkdtemp(prefix="civicwatch-template-"))
            atexit.register(shutil.rmtree, folder, True)
            migrate(f"sqlite:///{folder / 'template.db'}")
            self.sqlite_file = folder / "template.db"
        return self.sqlite_file

    def postgres(self, admin_url: str) -> str:
        if self.postgres_name is None:
            from sqlalchemy import create_engine, text
            from sqlalchemy.engine import make_url

            from storage.schema import migrate

            name = f"civicwatch_template_{uuid4().hex[:10]}"
            admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
            try:
                with admin.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
            finally:
                admin.dispose()
            self.postgres_name, self.postgres_admin_url = name, admin_url
            atexit.register(self.drop_postgres)
            migrate(make_url(admin_url).set(database=name).render_as_string(hide_password=False))
        return self.postgres_name

    def drop_postgres(self) -> None:
        if self.postgres_name is None or self.postgres_admin_url is None:
            return
        from sqlalchemy import create_engine, text

        admin = create_engine(self.postgres_admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.postgres_name}" WITH (FORCE)'))
        finally:
            admin.dispose()


_templates = _MigratedTemplates()
# Scratch PostgreSQL databases made as a copy of the migrated template and not yet handed to
# migrated_database: already at the newest schema, so there is nothing to copy or migrate.
_made_from_template: set[str] = set()


def postgres_copy_of_migrated_template() -> Iterator[str]:
    """A scratch PostgreSQL database (conftest's, dropped afterwards) made as a copy of the
    migrated template, for a test that would migrate its empty database first thing."""
    import pytest

    from tests.conftest import POSTGRES_ADMIN_URL, _postgres_scratch_database

    try:
        template = _templates.postgres(POSTGRES_ADMIN_URL)
    except Exception as exc:  # the suite must say why, not skip silently (as conftest does)
        pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN_URL} is not usable: {exc}")
    scratch = _postgres_scratch_database(template=template)
    url = next(scratch)
    _made_from_template.add(url)
    try:
        yield url
    finally:
        _made_from_template.discard(url)
        scratch.close()  # drops it


# Counts what was made in a PostgreSQL database since CREATE DATABASE copied template1.
_POSTGRES_ANYTHING_MADE = """
SELECT (SELECT count(*) FROM pg_namespace
        WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\\_%')
     + (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace)
     + (SELECT count(*) FROM pg_type WHERE typnamespace = 'public'::regnamespace)
     + (SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace)
     + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')
"""


def start_from_migrated_template(database_url: str) -> bool:
    """Make the empty scratch database at ``database_url`` (a missing or empty SQLite file, or an
    empty scratch PostgreSQL database of conftest's) a copy of the migrated template; False (and
    nothing done) for any other database."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return False
        path = Path(url.database)
        if path.exists() and path.stat().st_size > 0:
            return False
        for suffix in ("-wal", "-shm", "-journal"):  # another database's leftovers would corrupt it
            if Path(f"{path}{suffix}").exists():
                return False
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_templates.sqlite(), path)
        return True
    name = url.database or ""
    if url.get_backend_name() != "postgresql" or not name.startswith(SCRATCH_POSTGRES_PREFIX):
        return False
    if database_url in _made_from_template:  # a fresh copy already: the first use only
        _made_from_template.discard(database_url)
        return True
    engine = create_engine(url)
    try:
        with engine.connect() as conn:  # anything a test made (a schema, a table, a type) stays
            made = conn.execute(text(_POSTGRES_ANYTHING_MADE)).scalar_one()
    finally:
        engine.dispose()
    if made:
        return False
    from tests.conftest import POSTGRES_ADMIN_URL  # the server the scratch databases live on

    template = _templates.postgres(POSTGRES_ADMIN_URL)
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    finally:
        admin.dispose()
    return True


@contextmanager
def migrated_database(database_url: str) -> Iterator[tuple[Engine, SessionFactory]]:
    """The database at ``database_url`` brought to the newest schema by the real migrations
    (an empty scratch one starts as a copy of one they migrated once per test process)."""
    from storage.schema import migrate

    if not start_from_migrated_template(database_url):
        migrate(database_url)
    engine = make_engine(database_url)
    try:
        yield engine, make_session_factory(engine)
    finally:
        engine.dispose()


@dataclass
class IngestRig:
    """Ingest wired as the server wires it, with routing as the case-opened hook."""

    session_factory: SessionFactory
    evidence_store: EvidenceStore
    registry: SiteRegistry
    metrics: IngestMetrics
    service: IngestService
    handler: ViolationHandler


def make_ingest(
    session_factory: SessionFactory,
    evidence_dir: Path,
    routing: RoutingSettings | None = None,
    route_cases: CaseRouter | None = None,
    max_payload_bytes: int = 1024 * 1024,
) -> IngestRig:
    registry = make_registry()
    store = EvidenceStore(evidence_dir)
    metrics = IngestMetrics()
    if route_cases is None:
        route_cases = Router(routing or RoutingSettings()).dispatch_new_cases
    service = IngestService(session_factory, store, registry, metrics, route_cases)
    handler = ViolationHandler(service, registry, metrics, max_payload_bytes)
    return IngestRig(session_factory, store, registry, metrics, service, handler)


def plant_evidence(
    session_factory: SessionFactory,
    store: EvidenceStore,
    case_id: int,
    data: bytes,
    content_type: str,
    label: str = "overview",
) -> str:
    """Files ``data`` on a case as evidence past ingest's checks (a tampered or older store, or
    hostile bytes ingest would now refuse); its SHA-256."""
    sha256 = hashlib.sha256(data).hexdigest()
    store.put(data, sha256)
    with session_factory() as session:
        session.add(
            Evidence(
                sha256=sha256,
                content_type=content_type,
                size=len(data),
                width=32,
                height=24,
                stored_at=T0,
            )
        )
        session.flush()
        session.add(
            CaseEvidence(
                case_id=case_id, sha256=sha256, label=label, captured_at=T0, width=32, height=24
            )
        )
        session.commit()
    return sha256
