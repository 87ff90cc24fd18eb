"""Notifications to departments on real parts: a real HTTP receiver that checks the signature,
a private Mosquitto, a real database, cases from the real ingest path and the real workflow.

Cases come from generated events (tests.factories.EventFactory, small generated JPEGs). A fixed
clock drives the retry schedule; the receivers run in threads on free ports.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from pydantic import HttpUrl, SecretStr
from sqlalchemy import select

from civicwatch.config import CivicwatchConfig, ServerSettings
from civicwatch.server import build_server
from contracts.events import Phase, ViolationKind
from contracts.mqtt import make_client
from dispatch.config import ApiSettings, Department, Role
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.notification_settings import (
    MqttNotificationSettings,
    NotificationEvent,
    NotificationSettings,
    RetrySettings,
    WebhookSettings,
)
from dispatch.notifications.metrics import NotificationMetrics
from dispatch.notifications.publisher import MqttPublisher
from dispatch.notifications.pump import Notifier
from dispatch.notifications.sender import NotificationSender, canonical_body
from dispatch.workflow import Action, Actor, Command, Workflow, system_actor
from ingest.config import IngestSettings
from storage.database import SessionFactory, make_engine, make_session_factory
from storage.tables import Case, CaseTransition, Notification, utcnow
from tests.conftest import MosquittoProcess, free_port, wait_for_port
from tests.factories import (
    API_TOKENS,
    FIRE_LANE_ZONE,
    T0,
    EventFactory,
    IngestRig,
    make_ingest,
    make_registry,
    migrated_database,
    start_from_migrated_template,
)

LAW_SECRET = "law-enforcement-webhook-secret"
FIRE_SECRET = "fire-rescue-webhook-secret-01"
DISPATCHER = Actor("desk", Role.DISPATCHER)


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool

    @property
    def payload(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


@dataclass
class Receiver:
    """A department's webhook endpoint: checks each signature the way docs/notifications.md
    tells receivers to, answers with the next scripted status (then 200)."""

    secret: str
    port: int = field(default_factory=free_port)
    script: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/civicwatch"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                timestamp = self.headers["X-Civicwatch-Timestamp"]
                mac = hmac.new(
                    receiver.secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
                )
                expected = "sha256=" + mac.hexdigest()
                given = self.headers["X-Civicwatch-Signature"] or ""
                receiver.received.append(
                    Received(
                        self.path,
                        dict(self.headers.items()),
                        body,
                        hmac.compare_digest(expected, given),
                    )
                )
                answer = receiver.script.pop(0) if receiver.script else 200
                self.send_response(answer)
                self.end_headers()
                self.wfile.write(b"receiver says %d" % answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def events(self) -> list[str]:
        return [item.headers["X-Civicwatch-Event"] for item in self.received]


@dataclass
class Rig:
    sessions: SessionFactory
    ingest: IngestRig
    clock: FixedClock
    settings: NotificationSettings
    notifier: Notifier
    sender: NotificationSender
    metrics: NotificationMetrics
    edge: EventFactory = field(default_factory=EventFactory)

    def parking_case(self) -> int:
        return self._store(self.edge.event(Phase.OPENED))

    def fire_case(self) -> int:
        return self._store(
            self.edge.event(
                Phase.OPENED, zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING
            )
        )

    def _store(self, event: Any) -> int:
        self.ingest.service.store(event)
        with self.sessions() as session:
            case_id = session.scalar(select(Case.id).where(Case.violation_id == event.violation_id))
        assert case_id is not None
        return case_id

    def act(self, case_id: int, command: Command, actor: Actor = DISPATCHER) -> None:
        with self.sessions() as session:
            case = session.get(Case, case_id)
            assert case is not None
            Workflow().apply(session, case, command, actor, self.clock())
            session.commit()

    def rows(self) -> list[Notification]:
        with self.sessions() as session:
            return list(session.scalars(select(Notification).order_by(Notification.id)))

    def row(self, notification_id: int) -> Notification:
        with self.sessions() as session:
            row = session.get(Notification, notification_id)
            assert row is not None
            return row


def _settings(
    webhooks: list[WebhookSettings], mqtt_on: bool = False, max_attempts: int = 10
) -> NotificationSettings:
    return NotificationSettings(
        webhooks=webhooks,
        mqtt=MqttNotificationSettings(enabled=mqtt_on),
        retry=RetrySettings(base_seconds=10, factor=2, max_seconds=3600, max_attempts=max_attempts),
        timeout_seconds=2,
        public_url=HttpUrl("https://civicwatch.example.org"),
    )


def _hook(department: Department, url: str, secret: str) -> WebhookSettings:
    return WebhookSettings(department=department, url=HttpUrl(url), secret=SecretStr(secret))


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Any]:
    made: list[NotificationSender] = []
    with migrated_database(f"sqlite:///{tmp_path / 'notify.db'}") as (_engine, sessions):

        def build(settings: NotificationSettings, publisher: MqttPublisher | None = None) -> Rig:
            clock = FixedClock(T0)
            metrics = NotificationMetrics()
            sender = NotificationSender(
                sessions, settings, publisher, metrics, clock, rng=random.Random(7)
            )
            made.append(sender)
            rig = Rig(
                sessions,
                make_ingest(sessions, tmp_path / "evidence"),
                clock,
                settings,
                Notifier(sessions, settings, clock),
                sender,
                metrics,
            )
            assert rig.notifier.pump() == 0  # places the cursor at the (empty) head
            return rig

        yield build
        for sender in made:
            sender.close()


@pytest.fixture
def receivers() -> Iterator[dict[Department, Receiver]]:
    started = {
        Department.LAW_ENFORCEMENT: Receiver(LAW_SECRET).start(),
        Department.FIRE_RESCUE: Receiver(FIRE_SECRET).start(),
    }
    yield started
    for receiver in started.values():
        receiver.stop()


def _webhooks(receivers: dict[Department, Receiver]) -> list[WebhookSettings]:
    return [_hook(dept, r.url, r.secret) for dept, r in receivers.items()]


def test_dispatch_transfer_and_escalation_each_deliver_once_signed(
    make_rig: Any, receivers: dict[Department, Receiver]
) -> None:
    rig: Rig = make_rig(_settings(_webhooks(receivers)))
    law, fire = receivers[Department.LAW_ENFORCEMENT], receivers[Department.FIRE_RESCUE]

    case_id = rig.parking_case()  # ingest registers it and routes it to law enforcement
    assert rig.notifier.pump() == 1
    assert rig.sender.run().delivered == 1
    assert law.events() == ["case.dispatched"]
    assert fire.events() == []
    delivery = law.received[0]
    assert delivery.signature_ok
    assert delivery.path == "/hooks/civicwatch"
    assert delivery.headers["X-Civicwatch-Timestamp"] == str(int(T0.timestamp()))
    payload = delivery.payload
    (row,) = rig.rows()
    assert delivery.headers["X-Civicwatch-Delivery"] == str(row.id) == str(payload["delivery_id"])
    assert payload["event"] == "case.dispatched"
    assert payload["case"]["id"] == case_id
    assert payload["case"]["kind"] == "illegal_parking"
    assert payload["case"]["state"] == "dispatched"
    assert payload["case"]["department"] == "law_enforcement"
    assert payload["case"]["priority"] == "normal"
    assert payload["case"]["deadlines"]["resolve"] is not None
    assert payload["case"]["location"]["zone_id"] == "gate-no-parking"
    assert payload["links"] == {
        "api": f"https://civicwatch.example.org/api/v1/cases/{case_id}",
        "console": f"https://civicwatch.example.org/console/cases/{case_id}",
        "worker": f"https://civicwatch.example.org/worker/cases/{case_id}",
    }
    with rig.sessions() as session:
        dispatch_seq = session.scalar(
            select(CaseTransition.seq).where(
                CaseTransition.case_id == case_id, CaseTransition.action == "dispatch"
            )
        )
    assert payload["audit_seq"] == dispatch_seq
    assert delivery.body == canonical_body(payload)  # what was signed is what arrived

    # A transfer tells both departments; a working note tells nobody.
    rig.act(case_id, Command(Action.TRANSFER, "fire lane, not parking", Department.FIRE_RESCUE))
    rig.act(case_id, Command(Action.NOTE, "called the owner"))
    assert rig.notifier.pump() == 2
    assert rig.sender.run().delivered == 2
    assert law.events() == ["case.dispatched", "case.transferred_out"]
    assert fire.events() == ["case.transferred_in"]
    transfer_in = fire.received[0].payload
    assert transfer_in["case"]["department"] == "fire_rescue"
    assert transfer_in["case"]["previous_department"] == "law_enforcement"
    assert transfer_in["reason"] == "fire lane, not parking"

    rig.act(
        case_id,
        Command(
            Action.ESCALATE,
            "resolve deadline passed",
            detail={"level": 1, "deadline": "resolve", "to": "supervisor"},
        ),
        system_actor("sla-sweep"),
    )
    assert rig.notifier.pump() == 1
    rig.sender.run()
    assert fire.events() == ["case.transferred_in", "case.escalated"]
    assert fire.received[1].payload["case"]["escalation_level"] == 1
    assert fire.received[1].payload["escalation"] == {
        "level": 1,
        "deadline": "resolve",
        "to": "supervisor",
    }
    assert all(item.signature_ok for item in law.received + fire.received)

    # Nothing left: running again delivers nothing twice.
    assert rig.notifier.pump() == 0
    assert rig.sender.run().delivered == 0
    assert len(law.received) == 2
    assert len(fire.received) == 2
    assert {row.status for row in rig.rows()} == {"delivered"}


def test_a_webhook_gets_only_the_events_it_asked_for(
    make_rig: Any, receivers: dict[Department, Receiver]
) -> None:
    law = receivers[Department.LAW_ENFORCEMENT]
    hook = WebhookSettings(
        department=Department.LAW_ENFORCEMENT,
        url=HttpUrl(law.url),
        secret=SecretStr(LAW_SECRET),
        events=[NotificationEvent.TRANSFERRED_OUT],
    )
    rig: Rig = make_rig(_settings([hook]))
    case_id = rig.parking_case()
    assert rig.notifier.pump() == 0  # dispatched: not asked for
    rig.act(case_id, Command(Action.TRANSFER, "wrong department", Department.FIRE_RESCUE))
    assert rig.notifier.pump() == 1
    rig.sender.run()
    assert law.events() == ["case.transferred_out"]


def test_receiver_failing_twice_then_ok_is_delivered_on_the_third_attempt(
    make_rig: Any, receivers: dict[Department, Receiver]
) -> None:
    law = receivers[Department.LAW_ENFORCEMENT]
    law.script = [500, 500]
    rig: Rig = make_rig(_settings(_webhooks(receivers)))
    rig.parking_case()
    rig.notifier.pump()
    (row,) = rig.rows()

    report = rig.sender.run()
    assert (report.delivered, report.retried) == (0, 1)
    first = rig.row(row.id)
    assert (first.status, first.attempts) == ("pending", 1)
    assert first.last_error.startswith("HTTP 500")
    # Exponential backoff with jitter: the first wait is 5-10 s (base 10 s, half of it jitter).
    assert timedelta(seconds=5) <= first.next_attempt_at - T0 <= timedelta(seconds=10)

    assert rig.sender.run().retried == 0  # not due yet at the same instant
    assert len(law.received) == 1

    rig.clock.now = first.next_attempt_at
    rig.sender.run()
    second = rig.row(row.id)
    assert (second.status, second.attempts) == ("pending", 2)
    wait = second.next_attempt_at - first.next_attempt_at
    assert timedelta(seconds=10) <= wait <= timedelta(seconds=20)  # doubled

    rig.clock.now = second.next_attempt_at
    assert rig.sender.run().delivered == 1
    third = rig.row(row.id)
    assert (third.status, third.attempts, third.last_error) == ("delivered", 3, "")
    assert third.delivered_at == second.next_attempt_at
    assert len(law.received) == 3
    assert {item.headers["X-Civicwatch-Delivery"] for item in law.received} == {str(row.id)}
    assert all(item.signature_ok for item in law.received)
    deliveries = rig.metrics.deliveries
    assert deliveries.labels("webhook", "retry")._value.get() == 2
    assert deliveries.labels("webhook", "delivered")._value.get() == 1


TOKENS = {
    **API_TOKENS,
    "law": API_TOKENS["law"].model_copy(update={"role": Role.SUPERVISOR}),
}


def _auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who].token.get_secret_value()}"}


def test_dead_url_fails_after_max_attempts_then_a_retry_delivers(make_rig: Any) -> None:
    dead = Receiver(LAW_SECRET)  # its port is free: nothing listens until it is started
    rig: Rig = make_rig(
        _settings([_hook(Department.LAW_ENFORCEMENT, dead.url, LAW_SECRET)], max_attempts=3)
    )
    rig.parking_case()
    rig.notifier.pump()
    (row,) = rig.rows()
    for _ in range(3):
        rig.sender.run()
        rig.clock.now = rig.row(row.id).next_attempt_at
    failed = rig.row(row.id)
    assert (failed.status, failed.attempts) == ("failed", 3)
    assert "ConnectError" in failed.last_error
    assert rig.metrics.deliveries.labels("webhook", "failed")._value.get() == 1
    rig.clock.now += timedelta(days=1)
    assert rig.sender.run().delivered == 0  # failed rows wait for a person

    app = create_app(
        ApiContext(
            session_factory=rig.sessions,
            evidence_store=rig.ingest.evidence_store,
            settings=ApiSettings(tokens=list(TOKENS.values())),
            registry=rig.ingest.registry,
            metrics_registry=rig.ingest.metrics.registry,
            workflow=Workflow(),
        )
    )
    with TestClient(app) as client:
        metrics = client.get("/metrics").text
        assert (
            'civicwatch_notifications_outstanding{channel="webhook",status="failed"} 1.0' in metrics
        )
        listed = client.get(
            "/api/v1/notifications", params={"status": "failed"}, headers=_auth("dispatcher")
        )
        assert [item["id"] for item in listed.json()] == [row.id]
        assert listed.json()[0]["last_error"] == failed.last_error
        assert [
            i["id"] for i in client.get("/api/v1/notifications", headers=_auth("law")).json()
        ] == [row.id]
        # Another department's notification: not listed, not found, not retryable.
        assert client.get("/api/v1/notifications", headers=_auth("fire")).json() == []
        assert (
            client.get(f"/api/v1/notifications/{row.id}", headers=_auth("fire")).status_code == 404
        )
        assert (
            client.post(f"/api/v1/notifications/{row.id}/retry", headers=_auth("fire")).status_code
            == 404
        )
        assert client.get("/api/v1/notifications", headers=_auth("integration")).status_code == 403
        assert (
            client.post(f"/api/v1/notifications/{row.id}/retry", headers=_auth("law")).status_code
            == 403
        )
        assert (
            client.post(
                "/api/v1/notifications/999999/retry", headers=_auth("dispatcher")
            ).status_code
            == 404
        )

        retried = client.post(f"/api/v1/notifications/{row.id}/retry", headers=_auth("dispatcher"))
        assert retried.status_code == 200, retried.text
        assert (retried.json()["status"], retried.json()["attempts"]) == ("pending", 0)
        again = client.post(f"/api/v1/notifications/{row.id}/retry", headers=_auth("dispatcher"))
        assert again.status_code == 409

    dead.start()  # the department's endpoint is back
    try:
        rig.clock.now = utcnow() + timedelta(seconds=1)  # the API set it due at the real now
        assert rig.sender.run().delivered == 1
        assert dead.events() == ["case.dispatched"]
        assert dead.received[0].signature_ok
        assert rig.row(row.id).status == "delivered"
    finally:
        dead.stop()


class Subscriber:
    def __init__(self, broker: MosquittoProcess) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._subscribed = threading.Event()
        self._client = make_client(broker.settings, "department-listener")
        self._client.on_message = lambda _c, _u, message: self.messages.put(message)
        self._client.on_subscribe = lambda *_args: self._subscribed.set()
        self._client.on_connect = lambda client, *_args: client.subscribe(
            "civicwatch/v1/dispatch/+/cases", qos=1
        )
        self._client.connect(broker.settings.host, broker.settings.port)
        self._client.loop_start()
        assert self._subscribed.wait(10)

    def next(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=10)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def test_per_department_mqtt_topic_gets_the_message(
    make_rig: Any, mosquitto: MosquittoProcess
) -> None:
    publisher = MqttPublisher(mosquitto.settings, "civicwatch-notifications-test")
    publisher.start()
    subscriber = Subscriber(mosquitto)
    try:
        assert publisher.connected.wait(10)
        rig: Rig = make_rig(_settings([], mqtt_on=True), publisher)
        case_id = rig.fire_case()
        assert rig.notifier.pump() == 1
        (row,) = rig.rows()
        assert (row.channel, row.target) == ("mqtt", "civicwatch/v1/dispatch/fire_rescue/cases")
        assert rig.sender.run().delivered == 1  # after the broker's PUBACK
        message = subscriber.next()
        assert message.topic == "civicwatch/v1/dispatch/fire_rescue/cases"
        payload = json.loads(message.payload)
        assert payload["event"] == "case.dispatched"
        assert payload["case"]["id"] == case_id
        assert payload["case"]["department"] == "fire_rescue"
        assert payload["case"]["priority"] == "urgent"
        assert payload["delivery_id"] == row.id

        # Broker gone: the attempt fails and is retried once it is back.
        mosquitto.stop()
        publisher_lost = threading.Event()
        for _ in range(100):
            if not publisher.connected.is_set():
                publisher_lost.set()
                break
            threading.Event().wait(0.05)
        assert publisher_lost.is_set()
        rig.act(case_id, Command(Action.PARK, "waiting for the tow truck"))
        assert rig.notifier.pump() == 1
        assert rig.sender.run().retried == 1
        parked = rig.rows()[-1]
        assert "not connected" in rig.row(parked.id).last_error
        mosquitto.start()
        assert publisher.connected.wait(30)
        subscriber.stop()
        subscriber = Subscriber(mosquitto)
        rig.clock.now = rig.row(parked.id).next_attempt_at
        assert rig.sender.run().delivered == 1
        message = subscriber.next()
        assert json.loads(message.payload)["event"] == "case.parked"
    finally:
        subscriber.stop()
        publisher.stop()


def test_first_run_starts_at_the_head_and_a_restart_neither_repeats_nor_skips(
    database_url: str, tmp_path: Path
) -> None:
    settings = _settings([], mqtt_on=True)
    with migrated_database(database_url) as (_engine, sessions):
        ingest = make_ingest(sessions, tmp_path / "evidence")
        edge = EventFactory()
        ingest.service.store(edge.event(Phase.OPENED))  # history before notifications existed
        first = Notifier(sessions, settings)
        assert first.pump() == 0  # places the cursor at the head: old history is not sent
        assert first.pump() == 0
        for _ in range(3):
            ingest.service.store(edge.event(Phase.OPENED))
        # Each case writes register + dispatch: 6 entries. The first process handles 3, "dies".
        Notifier(sessions, settings, batch_size=3).pump()

    restarted = make_engine(database_url)  # a new process: its own engine and notifier
    try:
        sessions = make_session_factory(restarted)
        second = Notifier(sessions, settings)
        assert second.pump_all() >= 1
        assert second.pump_all() == 0
        with sessions() as session:
            rows = list(session.scalars(select(Notification)))
            dispatch_seqs = list(
                session.scalars(
                    select(CaseTransition.seq)
                    .where(CaseTransition.action == "dispatch")
                    .order_by(CaseTransition.seq)
                )
            )
        notified = sorted(row.payload["audit_seq"] for row in rows)
        assert notified == dispatch_seqs[1:]  # every later dispatch exactly once, not the first
        assert {row.event_type for row in rows} == {"case.dispatched"}
    finally:
        restarted.dispose()


def test_backoff_doubles_up_to_its_cap(make_rig: Any) -> None:
    rig: Rig = make_rig(_settings([]))
    for attempts, low, high in ((1, 5, 10), (2, 10, 20), (3, 20, 40), (9, 1280, 2560)):
        wait = rig.sender.backoff(attempts).total_seconds()
        assert low <= wait <= high, attempts
    for attempts in (10, 20, 200):  # capped at max_seconds (3600), half of it jitter
        assert 1800 <= rig.sender.backoff(attempts).total_seconds() <= 3600


def test_the_composed_server_notifies_departments_of_a_case_from_mqtt(
    tmp_path: Path, mosquitto: MosquittoProcess, receivers: dict[Department, Receiver]
) -> None:
    """build_server wires pump, sender and the MQTT client: an event published by a gateway
    reaches the department's webhook and its topic without anybody calling them."""
    law = receivers[Department.LAW_ENFORCEMENT]
    config = CivicwatchConfig(
        sites=make_registry().sites,
        broker=mosquitto.settings,
        server=ServerSettings(
            database_url=f"sqlite:///{tmp_path / 'server.db'}",
            ingest=IngestSettings(client_id="ingest-notify-test", evidence_dir=tmp_path / "ev"),
            notifications=_settings(_webhooks(receivers), mqtt_on=True).model_copy(
                update={"poll_seconds": 0.2}
            ),
        ),
    )
    start_from_migrated_template(config.server.database_url)
    server = build_server(config)
    subscriber = Subscriber(mosquitto)
    server.start()
    try:
        assert server.consumer.ready.wait(10)
        factory = EventFactory()
        event = factory.event()
        edge = make_client(mosquitto.settings, "edge-notify-test")
        edge.connect(mosquitto.settings.host, mosquitto.settings.port)
        edge.loop_start()
        try:
            edge.publish(factory.topic, event.to_wire(), qos=1).wait_for_publish(10)
        finally:
            edge.disconnect()
            edge.loop_stop()
        message = subscriber.next()
        assert message.topic == "civicwatch/v1/dispatch/law_enforcement/cases"
        assert json.loads(message.payload)["event"] == "case.dispatched"
        deadline = time.monotonic() + 10
        while not law.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert law.events() == ["case.dispatched"]
        assert law.received[0].signature_ok
    finally:
        server.stop()
        subscriber.stop()
    assert receivers[Department.FIRE_RESCUE].received == []
