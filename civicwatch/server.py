"""The server's composition root: database, ingest, dispatch, API and SLA sweep, wired once
(civicwatch.serving runs it with the API).

A process runs some of three roles (``Role``): ``server`` runs all three, ``civicwatch api``,
``ingest`` and ``sweep`` one each, as many processes of each as needed. Each process builds only
what its roles use: the API serves HTTP only; ingest connects its MQTT consumers only; the sweep
runs the periodic jobs only, and only while it leads (storage.leader).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from apscheduler.schedulers.background import BackgroundScheduler
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest
from prometheus_client.registry import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from civicwatch.config import CivicwatchConfig, ServerSettings
from civicwatch.mqtt_identity import resolve_ingest
from contracts.mqtt import BrokerSettings, MqttSession, process_client_id
from dispatch.accounts import AccountService
from dispatch.calendar import WorkingCalendar
from dispatch.config import QR_DISABLED_MESSAGE
from dispatch.exemption_settings import KEY_ENV_VAR as RULES_KEY_ENV_VAR
from dispatch.exemptions import Exemptions, build_exemptions
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.metrics import CameraFalseAlarmCollector, DispatchMetrics, TrainingDataMetrics
from dispatch.notifications.reports import enqueue_report
from dispatch.notifications.sender import Delivery
from dispatch.notifications.service import Notifications, build_notifications
from dispatch.reports.service import CHECK_SECONDS as REPORT_CHECK_SECONDS
from dispatch.reports.service import ReportService, notice_of
from dispatch.residents.intake import IntakeDeps
from dispatch.residents.status import (
    RESIDENT_DEPARTMENT,
    ResidentGateway,
    ResidentStatusPump,
)
from dispatch.residents.tiers import ResidentAwareRouter
from dispatch.routing import Router
from dispatch.sla import SlaSweep
from dispatch.training_data import CATCH_UP_SECONDS, TrainingDataExporter
from dispatch.verification import CameraVerifier, Publish
from dispatch.warning_stage import (
    OWNER_DEPARTMENT,
    OwnerGateway,
    OwnerWarningPump,
    WarningTimeouts,
)
from dispatch.workflow import Workflow
from ingest.config import IngestSettings
from ingest.consumer import IngestConsumer
from ingest.metrics import IngestMetrics
from ingest.store import IngestService
from storage.database import SessionFactory, make_engine, make_session_factory
from storage.evidence_pack_rows import collect_packs
from storage.evidence_retention import EvidenceRetention, RetentionMetrics
from storage.evidence_store import EvidenceStore
from storage.leader import Leader, exclusive, make_leader
from storage.schema import upgrade_engine
from storage.tables import Case, utcnow

log = logging.getLogger(__name__)

# paho retries an unreachable broker in silence; after this long the server says it waits.
BROKER_NOTICE_SECONDS = 3.0
RULES_REPUBLISH_SECONDS = 24 * 3600.0  # the leader republishes every gateway's rules daily
# Packs no evidence row names (a batch whose transaction failed after its pack was written) are
# removed by the leader hourly; collect_packs itself leaves any pack written in the last hour.
PACK_COLLECT_SECONDS = 3600.0


class Role(StrEnum):
    """What a process does; ``civicwatch server`` runs all of them."""

    API = "api"  # HTTP: the API, consoles and pages
    INGEST = "ingest"  # MQTT consumers: events in, cases out
    SWEEP = "sweep"  # the periodic jobs, while this process leads


ALL_ROLES = frozenset(Role)


class SweepLeadership:
    """The scheduler's jobs run only while this process leads; /metrics says whether it does."""

    def __init__(self, leader: Leader, registry: CollectorRegistry) -> None:
        self.leader = leader
        self._gauge = Gauge(
            "civicwatch_sweep_leader",
            "1 while this process leads the periodic jobs (SLA sweep, notifications ...)",
            registry=registry,
        )
        self._gauge.set_function(lambda: 1.0 if leader.leading else 0.0)
        self.runs = Counter(
            "civicwatch_sweep_job_runs",
            "Periodic jobs this process ran as the leader",
            ["job"],
            registry=registry,
        )
        self.on_elected: Callable[[], None] | None = None
        self._tried = False

    def first_try(self) -> bool:
        """At start: a lone process leads from its first job on (no jobs run early)."""
        self._tried = True
        return self.leader.try_lead()

    def elect(self) -> bool:
        """Try for the leadership (every interval); says when it was just won."""
        self._tried = True
        was = self.leader.leading
        now = self.leader.try_lead()
        if now and not was and self.on_elected is not None:
            self.on_elected()
        return now

    def guard(self, job: Callable[[], object], job_id: str) -> Callable[[], None]:
        def run() -> None:
            # A job run by hand on a server never started asks for the leadership first.
            if not self.leader.still_leading() and (self._tried or not self.first_try()):
                return
            job()
            self.runs.labels(job_id).inc()
            if job_id == "sla-sweep":
                log.debug("sla sweep ran as the leader (pid %d)", os.getpid())

        return run


@dataclass
class Server:
    engine: Engine
    session_factory: SessionFactory
    evidence_store: EvidenceStore
    metrics: IngestMetrics
    router: Router
    service: IngestService
    consumers: list[IngestConsumer]
    scheduler: BackgroundScheduler
    app: FastAPI
    notifications: Notifications | None = None  # webhooks and MQTT to departments
    sla_sweep: SlaSweep | None = None  # the "sla-sweep" job's sweep, for tests to run by hand
    verifier: CameraVerifier | None = None  # camera re-checks of resolved cases
    training_data: TrainingDataExporter | None = None  # false alarms as labelled data
    broker: BrokerSettings | None = None  # where ingest connects: named in the log while it waits
    roles: frozenset[Role] = ALL_ROLES
    leadership: SweepLeadership | None = None  # the sweep role's leader election
    sweep_publisher: MqttSession | None = None  # the sweep's own connection (no ingest here)
    exemptions: Exemptions | None = None  # signed rule documents pushed to the gateways
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _broker_watch: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def consumer(self) -> IngestConsumer:
        """The first ingest worker (the only one unless ``server.ingest.workers`` > 1)."""
        return self.consumers[0]

    def start(self) -> None:
        """Start consuming MQTT and sweeping SLAs; the API is served by run_server (or a test)."""
        if self.sweep_publisher is not None:
            self.sweep_publisher.start()
        if self.notifications is not None:
            self.notifications.start()  # its MQTT client, before the sender first runs
        if self.leadership is not None:
            self.leadership.first_try()
            self.scheduler.start()
        for consumer in self.consumers:
            consumer.start()
        if self.exemptions is not None:
            self.exemptions.start()  # every gateway's document, a new version each
        if self.broker is not None and self.consumers:
            self._stopping.clear()
            self._broker_watch = threading.Thread(
                target=self._tell_broker_state,
                args=(self.broker,),
                name="broker-watch",
                daemon=True,
            )
            self._broker_watch.start()

    def _tell_broker_state(self, broker: BrokerSettings) -> None:
        """Say once that ingest waits for the broker, and why, and once that it arrived."""
        if self._stopping.wait(BROKER_NOTICE_SECONDS) or self._ingest_connected():
            return
        log.warning(
            "waiting for the MQTT broker at %s:%d (%s); ingest keeps retrying and /readyz "
            "answers 503 until it connects",
            broker.host,
            broker.port,
            _why_unreachable(broker),
        )
        while not self._stopping.wait(0.5):
            if self._ingest_connected():
                log.info("the MQTT broker at %s:%d is reachable: ingest connected", *_at(broker))
                return

    def _ingest_connected(self) -> bool:
        return all(consumer.ready.is_set() for consumer in self.consumers)

    def stop(self) -> None:
        self._stopping.set()
        if self._broker_watch is not None:
            self._broker_watch.join(timeout=5)
            self._broker_watch = None
        for consumer in self.consumers:
            consumer.stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self.leadership is not None:
            self.leadership.leader.release()
        if self.notifications is not None:
            self.notifications.stop()
        if self.sweep_publisher is not None:
            self.sweep_publisher.stop()
        if self.exemptions is not None:
            self.exemptions.stop()
        if self.training_data is not None:
            self.training_data.close()  # an export the hook started finishes first
        self.engine.dispose()


def build_server(config: CivicwatchConfig, roles: Iterable[Role] = ALL_ROLES) -> Server:
    """Wire the server parts ``roles`` need from ``config``; migrates the database. Starts
    nothing.

    Named steps, each object built with everything it needs: database, routing, case rules
    (workflow and camera verification), ingest, notifications, scheduler, accounts, app.
    Without the API role the app serves only /healthz, /readyz and /metrics (for
    ``--health-port``); without ingest there are no consumers; without the sweep no jobs.
    """
    roles = frozenset(roles)
    settings = config.server
    database = _database(settings)
    metrics = IngestMetrics()
    calendar = WorkingCalendar(settings.sla.calendar)
    # Routes report-born cases too (no zone kind): transfers, the SLA sweep, the console.
    router = ResidentAwareRouter(settings.routing, calendar, config)
    consumers: list[IngestConsumer] = []
    sweep_publisher: MqttSession | None = None
    publish: Publish
    if Role.INGEST in roles or Role.SWEEP not in roles:

        def publish_on_ingest(topic: str, payload: bytes) -> bool:
            # Verification requests go out on ingest's connection; the consumers hand the
            # verifier its answers, so they are built after it (before anything starts).
            return bool(consumers) and consumers[0].publish(topic, payload)

        publish = publish_on_ingest
    else:  # a sweep process publishes the verification requests on a connection of its own
        sweep_publisher = MqttSession(config.broker, process_client_id("civicwatch-sweep"))
        publish = _publisher(sweep_publisher)

    training = _training_data(database, settings, metrics)
    workflow, verifier = _case_rules(database, settings, router, metrics, publish, training)
    service, ingest_consumers = _ingest(
        config, database, metrics, router, verifier, consume=Role.INGEST in roles
    )
    consumers.extend(ingest_consumers)
    resident_status, deliveries = _resident_status(database.session_factory, settings)
    notifications = build_notifications(
        database.session_factory,
        settings.notifications,
        config.broker,
        metrics.registry,
        deliveries=deliveries,
    )
    sla_sweep = SlaSweep(
        database.session_factory,
        workflow,
        calendar,
        settings.sla,
        DispatchMetrics(metrics.registry),
        router,
    )
    reports = ReportService(
        database.session_factory,
        config,
        evidence_store=database.evidence_store,
        plate_confidence_floor=settings.exemptions.plate_confidence_floor,
    )
    leadership: SweepLeadership | None = None
    scheduler = BackgroundScheduler(timezone="UTC")
    exemptions = None
    if Role.API in roles or Role.SWEEP in roles:  # the API issues permits; the sweep republishes
        exemptions = build_exemptions(
            database.session_factory,
            config,
            config.broker,
            config.server.exemptions,
            os.environ.get(RULES_KEY_ENV_VAR),
        )
    if Role.SWEEP in roles:
        leadership = SweepLeadership(make_leader(settings.database_url), metrics.registry)
        scheduler = _scheduler(
            settings,
            notifications,
            verifier,
            sla_sweep,
            training,
            reports,
            leadership,
            resident_status,
            exemptions.service.publish_all if exemptions is not None else None,
            _owner_warnings(database.session_factory, settings),
            WarningTimeouts(
                database.session_factory,
                timedelta(minutes=settings.exemptions.warning_silence_margin_minutes),
                metrics.registry,
            ),
            lambda: collect_packs(
                database.engine,
                database.evidence_store.root,
                database.evidence_store.packs_in_use(),
            ),
            _retention(database, settings, metrics.registry),
        )
    if Role.API in roles:
        app = _app(config, database, metrics, workflow, consumers, router, exemptions)
        _process_info(metrics.registry, roles)
    else:
        app = _role_app(roles, database, metrics, consumers, leadership)
    return Server(
        engine=database.engine,
        session_factory=database.session_factory,
        evidence_store=database.evidence_store,
        metrics=metrics,
        router=router,
        service=service,
        consumers=consumers,
        scheduler=scheduler,
        app=app,
        notifications=notifications if Role.SWEEP in roles else None,
        sla_sweep=sla_sweep,
        verifier=verifier,
        training_data=training,
        broker=config.broker,
        roles=roles,
        leadership=leadership,
        sweep_publisher=sweep_publisher,
        exemptions=exemptions,
    )


def _publisher(session: MqttSession) -> Publish:
    def publish(topic: str, payload: bytes) -> bool:
        if not session.is_connected():
            return False  # the verifier tries again at its next run
        return session.publish(topic, payload, qos=1).rc == 0

    return publish


def _process_info(registry: CollectorRegistry, roles: frozenset[Role]) -> None:
    """Which process answered a scrape: an API with several workers has one pid per worker."""
    info = Gauge(
        "civicwatch_process",
        "This process: its pid and roles (1)",
        ["pid", "roles"],
        registry=registry,
    )
    info.labels(str(os.getpid()), ",".join(sorted(roles))).set(1)


def _role_app(
    roles: frozenset[Role],
    database: Database,
    metrics: IngestMetrics,
    consumers: list[IngestConsumer],
    leadership: SweepLeadership | None,
) -> FastAPI:
    """An ingest or sweep process's health: /healthz (its role, pid and leadership), /readyz
    (database and broker) and /metrics. Served only with ``--health-port``."""
    _process_info(metrics.registry, roles)
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/healthz")
    def healthz() -> dict[str, object]:
        body: dict[str, object] = {
            "status": "ok",
            "roles": sorted(roles),
            "pid": os.getpid(),
        }
        if leadership is not None:
            body["leader"] = leadership.leader.leading
        return body

    @app.get("/readyz")
    def readyz() -> Response:
        problems = ingest_readiness(consumers)
        try:
            with database.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except Exception as exc:  # any driver error means the same: not ready
            problems.insert(0, f"database unreachable: {exc}")
        if problems:
            detail = "; ".join(problems)
            return JSONResponse(
                {"detail": detail, "code": "not_ready", "params": {}}, status_code=503
            )
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    def scrape() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def prepare_database(config: CivicwatchConfig) -> None:
    """Migrate once, before several processes (API workers) build their servers at once."""
    _database(config.server).engine.dispose()


@dataclass(frozen=True)
class Database:
    """The storage every server part shares: engine, sessions and the evidence files."""

    engine: Engine
    session_factory: SessionFactory
    evidence_store: EvidenceStore


def _database(settings: ServerSettings) -> Database:
    """Connect and migrate to the newest schema before any part touches a table."""
    engine = make_engine(settings.database_url)
    with exclusive(settings.database_url):  # processes started together migrate in turn
        upgrade_engine(engine)
    return Database(
        engine,
        make_session_factory(engine),
        settings.ingest.open_evidence_store(settings.database_url),
    )


def _case_rules(
    database: Database,
    settings: ServerSettings,
    router: Router,
    metrics: IngestMetrics,
    publish: Publish,
    training: TrainingDataExporter,
) -> tuple[Workflow, CameraVerifier]:
    """The workflow and the camera verifier, which need each other: resolving a case asks a
    camera to re-check, and the camera's answer verifies or reopens it through the same rules
    as people. The workflow's hook calls the verifier built right after it."""

    def on_resolve(session: Session, case: Case, now: datetime) -> None:
        verifier.on_resolve(session, case, now)

    workflow = Workflow(
        on_resolve=on_resolve, reroute=router.assignment, on_committed=training.on_committed
    )
    verifier = CameraVerifier(
        database.session_factory,
        publish=publish,
        settings=settings.verification,
        workflow=workflow,
        metrics_registry=metrics.registry,
        evidence_store=database.evidence_store,
    )
    return workflow, verifier


def _training_data(
    database: Database, settings: ServerSettings, metrics: IngestMetrics
) -> TrainingDataExporter:
    """False alarms' and kind changes' close-ups as YOLO data, in
    ``server.training_data_dir``; /metrics shows the per-camera false-alarm rates."""
    metrics.registry.register(CameraFalseAlarmCollector(database.session_factory))
    return TrainingDataExporter(
        database.session_factory,
        database.evidence_store,
        settings.training_data_folder,
        TrainingDataMetrics(metrics.registry),
    )


def _ingest(
    config: CivicwatchConfig,
    database: Database,
    metrics: IngestMetrics,
    router: Router,
    verifier: CameraVerifier,
    *,
    consume: bool = True,
) -> tuple[IngestService, list[IngestConsumer]]:
    """The store and one broker consumer per ingest worker (none unless ``consume``); new
    cases go to the router."""
    settings = config.server
    # The registry half of the config: CivicwatchConfig is a SiteRegistry.
    service = IngestService(
        database.session_factory,
        database.evidence_store,
        config,
        metrics,
        route_cases=router.dispatch_new_cases,
        # One plate-confidence floor: merges by plate and repeat-offender links use the
        # exemptions' floor, which the gateways also get in their rule documents.
        settings=settings.ingest.model_copy(
            update={"plate_confidence_floor": settings.exemptions.plate_confidence_floor}
        ),
    )
    ingest = resolve_ingest(settings.ingest, settings.database_url)  # ids and group on the broker
    consumers = [
        IngestConsumer(
            config.broker,
            ingest,
            service,
            config,
            metrics,
            client_id,
            on_verification_result=verifier.apply_result,
            plate_confidence_floor=settings.exemptions.plate_confidence_floor,
        )
        for client_id in (worker_client_ids(ingest) if consume else [])
    ]
    return service, consumers


def _resident_status(
    session_factory: SessionFactory, settings: ServerSettings
) -> tuple[ResidentStatusPump | None, dict[str, Delivery] | None]:
    """The residents' status messages (server.residents.status_webhook_url): their pump and
    the sender's delivery for them; (None, None) when no gateway is named."""
    url = settings.residents.status_webhook_url
    if url is None:
        return None, None
    pump = ResidentStatusPump(session_factory, str(url), str(settings.notifications.public_url))
    return pump, {
        RESIDENT_DEPARTMENT: ResidentGateway(session_factory, str(url)).deliver,
        # the warning stage's owner channel goes out through the same messaging gateway
        OWNER_DEPARTMENT: OwnerGateway(session_factory, str(url)).deliver,
    }


def _owner_warnings(
    session_factory: SessionFactory, settings: ServerSettings
) -> OwnerWarningPump | None:
    """Messages to a warned car's registered owner (the warning stage's ``owner`` channel),
    through server.residents.status_webhook_url; None when no gateway is named."""
    url = settings.residents.status_webhook_url
    if url is None:
        return None
    floor = settings.exemptions.plate_confidence_floor
    return OwnerWarningPump(session_factory, str(url), floor)


def _retention(
    database: Database, settings: ServerSettings, registry: CollectorRegistry
) -> EvidenceRetention:
    """The evidence-retention job: closed cases' evidence removed after the period."""
    return EvidenceRetention(
        database.session_factory,
        database.engine,
        database.evidence_store,
        settings.retention.evidence_days,
        metrics=RetentionMetrics(registry),
        case_batch=settings.retention.case_batch,
        packs=settings.ingest.evidence_backend == "local",
    )


def _scheduler(
    settings: ServerSettings,
    notifications: Notifications,
    verifier: CameraVerifier,
    sla_sweep: SlaSweep,
    training: TrainingDataExporter,
    reports: ReportService,
    leadership: SweepLeadership,
    resident_status: ResidentStatusPump | None = None,
    publish_rules: Callable[[], object] | None = None,
    owner_warnings: OwnerWarningPump | None = None,
    warning_timeouts: WarningTimeouts | None = None,
    collect_evidence_packs: Callable[[], object] | None = None,
    retention: EvidenceRetention | None = None,
) -> BackgroundScheduler:
    """The periodic jobs: notification pump and sender, camera verification, SLA sweep,
    training data, and the analysis reports (each due one made once, then sent to the
    departments' webhooks through the outbox)."""
    scheduler = BackgroundScheduler(timezone="UTC")
    poll_seconds = settings.notifications.poll_seconds

    def make_reports() -> int:
        return reports.run_schedule(
            lambda made: enqueue_report(
                reports.session_factory, settings.notifications, notice_of(made)
            )
        )

    jobs: list[tuple[Callable[[], object], str, float]] = [
        (notifications.notifier.pump_all, "notifications-pump", poll_seconds),
        (notifications.sender.run, "notifications-send", poll_seconds),
        (verifier.run_due, "camera-verification", verifier.settings.job_seconds),
        (
            lambda: sla_sweep.run(utcnow()),
            "sla-sweep",
            settings.api.sla_sweep_seconds or settings.sla.sweep_seconds,
        ),
        (training.pump_all, "training-data", CATCH_UP_SECONDS),
        (make_reports, "analysis-reports", REPORT_CHECK_SECONDS),
    ]
    if collect_evidence_packs is not None:  # packs left by batches that never committed
        jobs.append((collect_evidence_packs, "evidence-packs", PACK_COLLECT_SECONDS))
    if retention is not None:  # closed cases' evidence past server.retention.evidence_days
        jobs.append((retention.run, "evidence-retention", settings.retention.job_seconds))
    if resident_status is not None:  # status messages to residents' gateway, by the outbox
        jobs.append((resident_status.pump_all, "resident-status", poll_seconds))
    if owner_warnings is not None:  # the warning stage's messages to registered owners
        jobs.append((owner_warnings.pump_all, "owner-warnings", poll_seconds))
    if warning_timeouts is not None:  # warned items whose gateway never reported back
        jobs.append(
            (
                lambda: warning_timeouts.run(utcnow()),
                "warning-timeouts",
                settings.api.sla_sweep_seconds or settings.sla.sweep_seconds,
            )
        )
    # Every gateway's signed rule document, by the leader only (not once per API worker): at
    # start, on winning the leadership, and daily, which also restores a retained message a
    # broker lost.
    at_start: set[str] = set()
    if publish_rules is not None:
        jobs.append((publish_rules, "rules-publish", RULES_REPUBLISH_SECONDS))
        at_start.add("rules-publish")
    for job, job_id, seconds in jobs:
        scheduler.add_job(
            leadership.guard(job, job_id),
            "interval",
            seconds=seconds,
            id=job_id,
            max_instances=1,
            coalesce=True,
            # A loaded machine starts the first run late: APScheduler's default 1 s grace
            # would skip it (the rule documents then waited a day for their first push).
            misfire_grace_time=None,
            **({"next_run_time": utcnow()} if job_id in at_start else {}),
        )
    # Every sweep interval a waiting process asks for the leadership (a leader checks it still
    # holds it); one that just won runs every job at once, not an interval later.
    sweep_seconds = settings.api.sla_sweep_seconds or settings.sla.sweep_seconds

    def run_all_now() -> None:
        for _job, job_id, _seconds in jobs:
            scheduler.modify_job(job_id, next_run_time=utcnow())

    leadership.on_elected = run_all_now
    scheduler.add_job(
        leadership.elect,
        "interval",
        seconds=sweep_seconds,
        id="sweep-leader",
        max_instances=1,
        coalesce=True,
    )
    return scheduler


def _app(
    config: CivicwatchConfig,
    database: Database,
    metrics: IngestMetrics,
    workflow: Workflow,
    consumers: list[IngestConsumer],
    router: Router,
    exemptions: Exemptions | None = None,
) -> FastAPI:
    """The HTTP API and consoles; in development, the configured accounts exist first."""
    settings = config.server
    accounts = AccountService(database.session_factory, settings.api.accounts)
    if config.environment == "development":
        created = accounts.ensure_dev_users(settings.api.accounts.dev_users)
        if created:
            log.warning("development accounts created: %s", ", ".join(created))
    return create_app(
        ApiContext(
            session_factory=database.session_factory,
            evidence_store=database.evidence_store,
            settings=settings.api,
            registry=config,
            metrics_registry=metrics.registry,
            workflow=workflow,
            readiness=lambda: ingest_readiness(consumers),
            accounts=accounts,
            intake=IntakeDeps(
                settings=settings.residents,
                registry=config,
                router=router,
                routing=settings.routing,
                evidence_store=database.evidence_store,
            ),
            residents=settings.residents,
            qr_secret=_qr_secret(settings),
            exemptions=exemptions.service if exemptions is not None else None,
            plate_confidence_floor=settings.exemptions.plate_confidence_floor,
        )
    )


def _qr_secret(settings: ServerSettings) -> bytes | None:
    """The QR posters' secret; a named source that is unusable stops the start (QrSecretError),
    none named disables the posters with a warning saying how to enable them."""
    secret = settings.residents.qr_secret(os.environ)
    if secret is None:
        log.warning(QR_DISABLED_MESSAGE)
    return secret


def ingest_readiness(consumers: list[IngestConsumer]) -> list[str]:
    """/readyz's check: every ingest worker connected to the broker, subscribed, and storing."""
    problems = [
        f"ingest {consumer.client_id} is not connected to the broker"
        for consumer in consumers
        if not consumer.ready.is_set()
    ]
    problems += [
        problem for consumer in consumers if (problem := consumer.writer_problem) is not None
    ]
    return problems


def worker_client_ids(settings: IngestSettings) -> list[str]:
    """One stable client id (and so one broker session) per ingest worker; ``settings`` as
    resolve_ingest fills them in."""
    base = settings.client_id
    if base is None:  # a fixed default would let two servers take each other's session
        raise ValueError("ingest has no client id: pass the settings through resolve_ingest")
    if settings.workers == 1:
        return [base]
    return [f"{base}-{number}" for number in range(1, settings.workers + 1)]


def _at(broker: BrokerSettings) -> tuple[str, int]:
    return broker.host, broker.port


def _why_unreachable(broker: BrokerSettings) -> str:
    """What a plain TCP connect to the broker says (paho keeps the reason to itself)."""
    try:
        with socket.create_connection(_at(broker), timeout=3):
            return "the port answers, the MQTT session does not start"
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
