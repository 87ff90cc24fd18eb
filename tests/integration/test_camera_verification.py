"""Verification by camera, the whole loop through a private Mosquitto with the production ACL.

Server side: ingest's real consumer (logged in as ``ingest``), the CameraVerifier and the
Workflow on a real database (SQLite, and PostgreSQL where marked). Edge side: the gateway's
real VerificationChannel (logged in as the gateway) and ZoneVerifier on a real pipeline fed
real vtest.avi frames. The scene is GENERATED: a drawn stack of boxes stands in the fire lane
(tests/unit/edge/scenes.py), or the lane is left as filmed.

A worker resolves a fire-lane case -> the request is published after commit -> the gateway
re-checks its zone -> ingest stores the answer's frame -> the case closes (clear) or reopens.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

import pytest
from sqlalchemy import func, select

from contracts.events import Phase, ViolationKind
from contracts.mqtt import BrokerSettings
from contracts.sites import CameraConfig, ZoneConfig, ZoneKind
from contracts.topics import ROOT, verify_result_topic, verify_topic
from contracts.verification import VerificationRequest as RequestMessage
from contracts.verification import VerificationResult
from dispatch.config import Department, Role, VerificationSettings
from dispatch.verification import CLEAR_REASON, CameraVerifier
from dispatch.workflow import Action, Actor, Command, Workflow
from edge.capture import ReplaySource
from edge.config import EdgeSettings
from edge.detections import Frame
from edge.outbox import Outbox
from edge.pipeline import CameraPipeline, GatewayServices
from edge.redaction import EvidenceSealer
from edge.verification import VerificationChannel, ZoneVerifier, pump, send
from ingest.config import IngestSettings
from ingest.consumer import IngestConsumer
from storage.audit import verify_chain
from storage.database import SessionFactory
from storage.tables import Case, CaseEvidence, CaseState, CaseTransition, Evidence
from storage.tables import VerificationRequest as RequestRow
from tests.conftest import free_port
from tests.factories import (
    CAMERA,
    FIRE_LANE_ZONE,
    GATEWAY,
    OTHER_CAMERA,
    OTHER_GATEWAY,
    OTHER_SITE,
    SITE,
    EventFactory,
    IngestRig,
    make_ingest,
    migrated_database,
)
from tests.integration.test_mosquitto_acl import (
    DEPLOY,
    PASSWORDS,
    Session,
    broker_config,
    running_broker,
    write_password_file,
)
from tests.unit.edge.conftest import T0
from tests.unit.edge.scenes import FIRE_LANE, with_stack
from tests.waiting import wait_for

WAIT_S = 30.0
WARM_UP_FRAMES = 300  # 30 s of clip: the generated stack (from 5 s) has become stationary
DISPATCHER = Actor("dispatcher-1", Role.DISPATCHER)


@pytest.fixture
def broker_port(tmp_path: Path) -> Iterator[int]:
    """Mosquitto with the production config and ACL, and users made by mosquitto_passwd."""
    write_password_file(tmp_path / "passwd")
    port = free_port()
    production = (DEPLOY / "mosquitto.conf").read_text()
    with running_broker(tmp_path, broker_config(production, tmp_path, port), port):
        yield port


def login(port: int, username: str) -> BrokerSettings:
    return BrokerSettings(
        host="127.0.0.1", port=port, username=username, password=PASSWORDS[username]
    )


@dataclass
class Server:
    rig: IngestRig
    verifier: CameraVerifier
    workflow: Workflow
    consumer: IngestConsumer

    @property
    def sessions(self) -> SessionFactory:
        return self.rig.session_factory


@pytest.fixture
def server(database_url: str, tmp_path: Path, broker_port: int) -> Iterator[Server]:
    """Ingest, verifier and workflow wired as build_server wires them."""
    with migrated_database(database_url) as (_engine, sessions):
        rig = make_ingest(sessions, tmp_path / "evidence")
        verifier = CameraVerifier(
            sessions,
            settings=VerificationSettings(deadline_seconds=60),
            evidence_store=rig.evidence_store,  # as the server passes it (the evidence lock)
        )
        workflow = Workflow(on_resolve=verifier.on_resolve)
        verifier.workflow = workflow
        settings = IngestSettings(
            evidence_dir=tmp_path / "evidence", client_id=f"ingest-{uuid.uuid4().hex[:8]}"
        )
        consumer = IngestConsumer(
            login(broker_port, "ingest"),
            settings,
            rig.service,
            rig.registry,
            rig.metrics,
            on_verification_result=verifier.apply_result,
        )
        verifier.publish = consumer.publish
        consumer.start()
        try:
            assert consumer.ready.wait(10), "ingest did not subscribe"
            yield Server(rig, verifier, workflow, consumer)
        finally:
            consumer.stop()


def resolved_fire_lane_case(server: Server) -> int:
    """A fire-lane violation stored by ingest, accepted and resolved by the department."""
    event = EventFactory().event(
        zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING, phase=Phase.OPENED
    )
    server.rig.service.store(event)
    with server.sessions.begin() as session:
        case = session.scalars(select(Case)).one()
        if case.state == CaseState.NEW:
            command = Command(Action.DISPATCH, department=Department.FIRE_RESCUE)
            server.workflow.apply(session, case, command, DISPATCHER)
        assert case.department is not None
        worker = Actor("worker-1", Role.WORKER, Department(case.department))
        server.workflow.apply(session, case, Command(Action.ACCEPT), worker)
        server.workflow.apply(session, case, Command(Action.RESOLVE, "moved the goods"), worker)
        assert case.verification == "requested"
        return case.id


class Gateway:
    """The gateway's verification side on a live-like frame loop over the real clip."""

    def __init__(self, port: int, tmp_path: Path, stack: bool) -> None:
        lane = ZoneConfig(
            id=FIRE_LANE_ZONE, kind=ZoneKind.FIRE_LANE, polygon=FIRE_LANE, dwell_seconds=600
        )
        camera = CameraConfig(id=CAMERA, source="vtest.avi", zones=[lane])
        settings = EdgeSettings(data_dir=tmp_path)
        sealer = EvidenceSealer(None)
        services = GatewayServices(
            model_info=None, outbox=Outbox(tmp_path / "outbox.sqlite"), sealer=sealer
        )
        self.pipeline = CameraPipeline(SITE, GATEWAY, camera, settings, services, fps=10)
        self.verifier = ZoneVerifier(
            SITE, GATEWAY, {CAMERA: self.pipeline}, settings.evidence, sealer
        )
        self.channel = VerificationChannel(login(port, GATEWAY), SITE, GATEWAY, [CAMERA])
        self.stack = stack
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway", daemon=True)

    def frames(self, clip: Path) -> Iterator[Frame]:
        """Real frames; GENERATED: the stack of boxes stands on the road from 5 s when asked."""
        for frame in ReplaySource(clip, start=T0, loop=3):
            if self.stack and frame.index % 795 >= 50:
                yield Frame(with_stack(frame.image), frame.index, frame.timestamp)
            else:
                yield frame

    def start(self, clip: Path) -> None:
        self._frames = self.frames(clip)
        for frame in islice(self._frames, WARM_UP_FRAMES):
            self.pipeline.process(frame, None)
        self.channel.start()
        assert self.channel.ready.wait(10), "the gateway did not subscribe"
        self._thread.start()

    def _run(self) -> None:
        for frame in self._frames:  # about 25 frames a second, like a busy camera
            if self._stop.is_set():
                return
            self.pipeline.process(frame, None)
            self.answers += send(self.channel, self.verifier.observe(CAMERA, frame))
            self.answers += pump(self.channel, self.verifier)
            time.sleep(0.04)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.channel.stop()


@pytest.fixture
def gateway_factory(
    broker_port: int, tmp_path: Path, shared_data: Path
) -> Iterator[Callable[[bool], Gateway]]:
    started: list[Gateway] = []

    def start(stack: bool) -> Gateway:
        gateway = Gateway(broker_port, tmp_path / f"gateway-{len(started)}", stack)
        gateway.start(shared_data / "clips" / "vtest.avi")
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


def case_state(server: Server, case_id: int) -> tuple[str, str | None]:
    with server.sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case.state, case.verification


def test_a_clear_zone_closes_the_case(
    server: Server, gateway_factory: Callable[[bool], Gateway]
) -> None:
    """GENERATED scene: no stack in the lane; people walk through but none stays."""
    gateway = gateway_factory(False)
    case_id = resolved_fire_lane_case(server)
    assert server.verifier.run_due() == (1, 0), "published after the commit"
    wait_for(lambda: case_state(server, case_id)[0] != CaseState.RESOLVED, WAIT_S, "the answer")

    assert case_state(server, case_id) == (CaseState.CLOSED, "clear")
    with server.sessions() as session:
        last = session.scalars(
            select(CaseTransition)
            .where(CaseTransition.case_id == case_id)
            .order_by(CaseTransition.seq.desc())
        ).first()
        assert last is not None
        assert (last.action, last.actor, last.reason) == (
            "verify",
            f"camera:{CAMERA}",
            CLEAR_REASON,
        )
        assert last.detail["frames_checked"] == 5
        attached = session.scalars(
            select(CaseEvidence).where(
                CaseEvidence.case_id == case_id, CaseEvidence.label == "verification"
            )
        ).one()
        assert last.detail["evidence"] == attached.sha256
        assert session.get(Evidence, attached.sha256) is not None
        request = session.scalars(select(RequestRow)).one()
        assert request.clear is True
        assert request.published_at is not None
        assert request.answered_at is not None
        assert verify_chain(session).intact
    assert server.rig.evidence_store.read(attached.sha256)[:2] == b"\xff\xd8", "a JPEG, filed"
    assert server.verifier.outcome_count("clear") == 1
    assert gateway.answers == 1


def test_a_blocked_zone_reopens_the_case_naming_what_is_there(
    server: Server, gateway_factory: Callable[[bool], Gateway]
) -> None:
    """GENERATED scene: the drawn stack of boxes still stands in the lane."""
    gateway_factory(True)
    case_id = resolved_fire_lane_case(server)
    server.verifier.run_due()
    wait_for(lambda: case_state(server, case_id)[0] != CaseState.RESOLVED, WAIT_S, "the answer")

    assert case_state(server, case_id) == (CaseState.DISPATCHED, "not_clear")
    with server.sessions() as session:
        last = session.scalars(
            select(CaseTransition)
            .where(CaseTransition.case_id == case_id)
            .order_by(CaseTransition.seq.desc())
        ).first()
        assert last is not None
        assert (last.action, last.actor) == ("reopen", f"camera:{CAMERA}")
        assert "stationary_object" in last.reason
        assert "of the lane blocked" in last.reason
        assert (
            session.scalar(
                select(func.count())
                .select_from(CaseEvidence)
                .where(CaseEvidence.case_id == case_id, CaseEvidence.label == "verification")
            )
            == 1
        )
        assert verify_chain(session).intact
    assert server.verifier.outcome_count("not_clear") == 1


def test_bad_answers_are_refused_and_store_nothing(server: Server, broker_port: int) -> None:
    """Published by the gateway's own login on its own topic, so only ingest's checks stop them."""
    case_id = resolved_fire_lane_case(server)
    server.verifier.run_due()
    with server.sessions() as session:
        request = session.scalars(select(RequestRow)).one()
        request_id = request.request_id
    gateway = Session(broker_port, GATEWAY, PASSWORDS[GATEWAY])
    try:
        own_topic = verify_result_topic(SITE, GATEWAY, CAMERA)
        good = VerificationResult(
            request_id=request_id,
            site_id=SITE,
            gateway_id=GATEWAY,
            camera_id=CAMERA,
            zone_id=FIRE_LANE_ZONE,
            checked_at=datetime.now(UTC),
            clear=True,
            frames_checked=5,
        )
        forged = good.model_copy(
            update={"site_id": OTHER_SITE, "gateway_id": OTHER_GATEWAY, "camera_id": OTHER_CAMERA}
        )
        for payload in (
            b"{not json",
            b'{"request_id": "x"}',
            good.model_copy(update={"schema_version": "2.0"}).to_wire(),
            forged.to_wire(),
            good.model_copy(update={"zone_id": "no-such-zone"}).to_wire(),
        ):
            assert not gateway.publish(own_topic, payload).is_failure
        unknown = good.model_copy(update={"request_id": uuid.uuid4()})
        assert not gateway.publish(own_topic, unknown.to_wire()).is_failure
        metrics = server.rig.metrics
        wait_for(
            lambda: server.verifier.outcome_count("unknown") == 1, WAIT_S, "the unknown answer"
        )
    finally:
        gateway.close()
    assert metrics.refusal_count("malformed_json") == 1
    assert metrics.refusal_count("invalid") == 1
    assert metrics.refusal_count("schema_version") == 1
    assert metrics.refusal_count("topic_mismatch") == 1
    assert metrics.refusal_count("unknown_zone") == 1
    assert case_state(server, case_id) == (CaseState.RESOLVED, "requested")
    with server.sessions() as session:
        row = session.get(RequestRow, request_id)
        assert row is not None
        assert row.answered_at is None, "nothing stored for a refused answer"
        assert (
            session.scalar(
                select(func.count())
                .select_from(CaseEvidence)
                .where(CaseEvidence.label == "verification")
            )
            == 0
        )


def test_an_unanswered_request_asks_the_dispatcher(server: Server) -> None:
    """No gateway listens: the deadline passes, the dispatcher gets a note to verify by hand,
    and an answer arriving after that changes nothing."""
    case_id = resolved_fire_lane_case(server)
    later = datetime.now(UTC) + timedelta(seconds=61)
    assert server.verifier.run_due(later) == (0, 1), "past its deadline: timed out, not sent"
    assert case_state(server, case_id) == (CaseState.RESOLVED, "unavailable")
    with server.sessions() as session:
        note = session.scalars(
            select(CaseTransition)
            .where(CaseTransition.case_id == case_id)
            .order_by(CaseTransition.seq.desc())
        ).first()
        assert note is not None
        assert note.action == "note"
        assert "verify by hand" in note.reason
        request = session.scalars(select(RequestRow)).one()
    late = VerificationResult(
        request_id=request.request_id,
        site_id=SITE,
        gateway_id=GATEWAY,
        camera_id=CAMERA,
        zone_id=FIRE_LANE_ZONE,
        checked_at=datetime.now(UTC),
        clear=True,
        frames_checked=5,
    )
    server.verifier.apply_result(late)
    assert server.verifier.outcome_count("duplicate") == 1
    assert case_state(server, case_id) == (CaseState.RESOLVED, "unavailable")


def test_the_acl_keeps_requests_and_answers_to_their_gateway(
    server: Server, broker_port: int
) -> None:
    """Only the server may ask; only the camera's own gateway hears the question and answers."""
    other = Session(broker_port, "gw-b", PASSWORDS["gw-b"])
    own = Session(broker_port, GATEWAY, PASSWORDS[GATEWAY])
    observer = Session(broker_port, "ingest", PASSWORDS["ingest"])
    try:
        observer.subscribe(f"{ROOT}/#")
        other.subscribe(verify_topic(SITE, GATEWAY, CAMERA))
        own.subscribe(verify_topic(SITE, GATEWAY, CAMERA))
        request = RequestMessage(
            request_id=uuid.uuid4(),
            case_id=1,
            site_id=SITE,
            gateway_id=GATEWAY,
            camera_id=CAMERA,
            zone_id=FIRE_LANE_ZONE,
            kind=ViolationKind.FIRE_LANE_BLOCKING,
            requested_at=datetime.now(UTC),
        )
        forged_code = own.publish(verify_topic(SITE, GATEWAY, CAMERA), b"forged request")
        assert forged_code.is_failure, "a gateway may not ask itself (or others) to verify"
        other_code = other.publish(verify_result_topic(SITE, GATEWAY, CAMERA), b"forged answer")
        assert other_code.is_failure, "another gateway may not answer for this one"
        assert server.consumer.publish(verify_topic(SITE, GATEWAY, CAMERA), request.to_wire())
        topic, payload = own.next_message()
        assert topic == verify_topic(SITE, GATEWAY, CAMERA)
        assert RequestMessage.model_validate_json(payload) == request
        other.assert_silent()
    finally:
        for session in (other, own, observer):
            session.close()


def resolved_case(server: Server, zone_id: str, kind: ViolationKind, factory: EventFactory) -> int:
    """One more violation stored by ingest, then accepted and resolved by its department."""
    event = factory.event(zone_id=zone_id, kind=kind, phase=Phase.OPENED)
    server.rig.service.store(event)
    with server.sessions.begin() as session:
        case = session.scalars(select(Case).where(Case.violation_id == event.violation_id)).one()
        if case.state == CaseState.NEW:
            command = Command(Action.DISPATCH, department=Department.FIRE_RESCUE)
            server.workflow.apply(session, case, command, DISPATCHER)
        assert case.department is not None
        worker = Actor("worker-1", Role.WORKER, Department(case.department))
        server.workflow.apply(session, case, Command(Action.ACCEPT), worker)
        server.workflow.apply(session, case, Command(Action.RESOLVE, "done"), worker)
        return case.id


@pytest.mark.slow
def test_a_real_edge_worker_answers_with_its_detector(
    server: Server, broker_port: int, tmp_path: Path, model_path: Path
) -> None:
    """The gateway as deployed: EdgeWorker with the real detector on Ultralytics' bus photo.

    The photo (real, not generated) has a bus at the bottom: the fire lane drawn under it is
    still blocked, the no-parking strip across the empty top of the picture is clear.
    """
    from civicwatch.gateway import build_gateway
    from contracts.sites import GatewayConfig, SiteConfig
    from contracts.status import CameraStatus
    from contracts.topics import camera_status_topic
    from edge.config import DetectorSettings
    from edge.detector import create_detector
    from tests.factories import PARKING_ZONE

    lane = ZoneConfig(
        id=FIRE_LANE_ZONE,
        kind=ZoneKind.FIRE_LANE,
        polygon=[[0, 650], [810, 650], [810, 800], [0, 800]],
        dwell_seconds=600,
    )
    strip = ZoneConfig(
        id=PARKING_ZONE,
        kind=ZoneKind.NO_PARKING,
        polygon=[[0, 0], [810, 0], [810, 150], [0, 150]],
        dwell_seconds=600,
    )
    camera = CameraConfig(
        id=CAMERA, source="pkg://ultralytics/assets/bus.jpg", fps=5, zones=[lane, strip]
    )
    gateway = GatewayConfig(id=GATEWAY, cameras=[camera])
    settings = EdgeSettings(data_dir=tmp_path / "edge", status_interval_seconds=1)
    detector = create_detector(DetectorSettings(model=str(model_path)))
    watcher = Session(broker_port, "ingest", PASSWORDS["ingest"])
    watcher.subscribe(camera_status_topic(SITE, GATEWAY, CAMERA))
    stop = threading.Event()
    worker = threading.Thread(
        target=build_gateway(
            SiteConfig(id=SITE, gateways=[gateway]),
            gateway,
            settings,
            login(broker_port, GATEWAY),
            detector,
        ).run,
        args=(stop,),
    )
    worker.start()
    try:
        # A status with frames read: the worker's clients have been connected a second or more.
        wait_for(
            lambda: any(
                CameraStatus.model_validate_json(payload).frames_read > 0
                for _, payload in drain(watcher)
            ),
            WAIT_S,
            "the camera's first frames",
        )
        factory = EventFactory()
        blocked = resolved_case(server, FIRE_LANE_ZONE, ViolationKind.FIRE_LANE_BLOCKING, factory)
        cleared = resolved_case(server, PARKING_ZONE, ViolationKind.ILLEGAL_PARKING, factory)
        assert server.verifier.run_due() == (2, 0)
        wait_for(
            lambda: all(
                case_state(server, case)[0] != CaseState.RESOLVED for case in (blocked, cleared)
            ),
            WAIT_S,
            "both answers",
        )
    finally:
        stop.set()
        worker.join(timeout=15)
        watcher.close()
    assert not worker.is_alive()
    assert case_state(server, blocked) == (CaseState.DISPATCHED, "not_clear")
    assert case_state(server, cleared) == (CaseState.CLOSED, "clear")
    with server.sessions() as session:
        reopened = session.scalars(
            select(CaseTransition).where(
                CaseTransition.case_id == blocked, CaseTransition.action == "reopen"
            )
        ).one()
        assert "bus" in reopened.reason


def drain(session: Session) -> list[tuple[str, bytes]]:
    """What the session received so far, without waiting."""
    taken = []
    while not session.received.empty():
        taken.append(session.received.get_nowait())
    return taken


def test_a_dead_camera_answers_at_once_and_the_dispatcher_verifies_by_hand(
    server: Server, broker_port: int, tmp_path: Path
) -> None:
    """The gateway's verifier knows the camera is offline: it answers "camera unavailable"
    without looking, and the server neither closes nor reopens the case."""
    case_id = resolved_fire_lane_case(server)
    lane = ZoneConfig(
        id=FIRE_LANE_ZONE, kind=ZoneKind.FIRE_LANE, polygon=FIRE_LANE, dwell_seconds=600
    )
    camera = CameraConfig(id=CAMERA, source="rtsp://camera.invalid/stream", zones=[lane])
    settings = EdgeSettings(data_dir=tmp_path)
    services = GatewayServices(
        model_info=None, outbox=Outbox(tmp_path / "outbox.sqlite"), sealer=EvidenceSealer(None)
    )
    pipeline = CameraPipeline(SITE, GATEWAY, camera, settings, services, fps=10)
    verifier = ZoneVerifier(
        SITE, GATEWAY, {CAMERA: pipeline}, settings.evidence, available=lambda _camera: False
    )
    channel = VerificationChannel(login(broker_port, GATEWAY), SITE, GATEWAY, [CAMERA])
    channel.start()
    try:
        assert channel.ready.wait(10)
        server.verifier.run_due()
        answered = 0

        def answer() -> bool:
            nonlocal answered
            answered += pump(channel, verifier)
            return answered == 1

        wait_for(answer, WAIT_S, "the gateway's answer")
        wait_for(
            lambda: case_state(server, case_id)[1] != "requested", WAIT_S, "the server to apply it"
        )
    finally:
        channel.stop()
    assert case_state(server, case_id) == (CaseState.RESOLVED, "unavailable")
    with server.sessions() as session:
        note = session.scalars(
            select(CaseTransition)
            .where(CaseTransition.case_id == case_id)
            .order_by(CaseTransition.seq.desc())
        ).first()
        assert note is not None
        assert note.action == "note"
        assert "camera unavailable" in note.reason
        assert "verify by hand" in note.reason
    assert server.verifier.outcome_count("unavailable") == 1
