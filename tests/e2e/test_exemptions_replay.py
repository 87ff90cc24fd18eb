"""Exemptions end to end on real footage (issue 13): vtest.avi's parked van and car replayed
through a gateway's live pipeline (the real shared detector, tracker, dwell rules, exemption
gate, signed rule store, outbox, MQTT publisher), a private Mosquitto, `civicwatch server`
(ingest, API, signing and pushing rule documents) on SQLite and on PostgreSQL.

The one faked part: plate reading. vtest.avi's plates are too small and far to read, so the
replay runs through tests/e2e/replay_with_plates.py, which is `civicwatch replay`'s wiring with
a plate reader double (``KnownPlates``) that gives the van and the car the plates each test
chooses. Each test gives both vehicles plates of its own, so ingest never joins one test's
violation to another's case (it merges by plate).

To keep the module short: one broker and one server per database, the first 15 s of the clip
(cut once, re-encoded as MJPEG: the 10 s dwell and two updates; its 15-25 s, with pedestrians
on the kerb, cost the detector most), a 10 s dwell, an update every 2 s of clip time; a
family-bay stay holds the clip's last frame so it runs past one minute. The revoke runs on the
first 25 s: it needs the replay still running for seconds after the van is held.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import yaml

from civicwatch.config import CivicwatchConfig, load_config
from contracts.exemptions import AllowlistCategory, AllowlistRule, FamilyBayRule, RuleDocument
from contracts.mqtt import MqttSession
from contracts.rule_signing import generate_key_pair, private_key_from_text, sign_document
from contracts.topics import rules_topic, violation_topic
from dispatch.exemption_settings import KEY_ENV_VAR
from dispatch.exemptions import ExemptionService, RulePublisher
from edge.detections import Image
from storage.database import make_engine, make_session_factory
from storage.tables import RuleDocumentVersion, utcnow
from tests.conftest import SHARED_DATA, MosquittoProcess, _postgres_scratch_database
from tests.e2e.harness import DISPATCHER_TOKEN, Deployment
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

VTEST = SHARED_DATA / "clips" / "vtest.avi"
CLIP_SECONDS = 15  # both vehicles stand from the first frame; 10 s of dwell, then updates
LONG_CLIP_SECONDS = 25
DWELL_SECONDS = 10.0
UPDATE_SECONDS = 2.0  # frames ride on updates 1, 2, 4, ... 32: clip 12, 14, 18, 26, 42, 74 s
SITE, GATEWAY, CAMERA, ZONE = "compound-vtest", "gw-vtest", "cam-building", "building-kerb"
REVOKE_WITHIN_S = 5.0


def plates() -> tuple[str, str]:
    """A fresh van plate and car plate for one test (digits from a random number)."""
    digits = f"{uuid.uuid4().int % 100_000:05d}"
    return f"沪A{digits}", f"苏E{digits[::-1]}"


def cut_vtest(
    path: Path, seconds: float, paint: Callable[[float, Image], None] | None = None
) -> Path:
    """vtest.avi's first ``seconds`` as MJPEG, each frame first given to ``paint`` (clip time,
    image) when there is one."""
    source = cv2.VideoCapture(str(VTEST))
    fps = source.get(cv2.CAP_PROP_FPS) or 10.0
    size = (int(source.get(cv2.CAP_PROP_FRAME_WIDTH)), int(source.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    try:
        for index in range(round(seconds * fps)):
            ok, read = source.read()
            assert ok, "vtest.avi is shorter than expected"
            image = np.asarray(read, dtype=np.uint8)
            if paint is not None:
                paint(index / fps, image)
            writer.write(image)
    finally:
        writer.release()
        source.release()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vtest.avi's first CLIP_SECONDS: the van and car parked, pedestrians passing."""
    return cut_vtest(tmp_path_factory.mktemp("clip") / "vtest-15s.avi", CLIP_SECONDS)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vtest.avi's first LONG_CLIP_SECONDS."""
    return cut_vtest(tmp_path_factory.mktemp("clip") / "vtest-25s.avi", LONG_CLIP_SECONDS)


@dataclass
class Site:
    """One deployment: broker, server and database, the signing key, and a broker listener
    that records every event the gateway publishes."""

    deployment: Deployment
    broker: MosquittoProcess
    private_key: str
    config: CivicwatchConfig
    database_url: str
    published: list[dict[str, Any]] = field(default_factory=list)
    runs: int = 0

    @property
    def rules_file(self) -> Path:
        return self.config.edge.rules_path(GATEWAY)

    def gateway_version(self) -> int | None:
        """The version in the gateway's own disk copy (written before it is used)."""
        try:
            envelope = json.loads(self.rules_file.read_bytes())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return int(json.loads(envelope["document"])["version"])

    def server_version(self) -> int:
        engine = make_engine(self.database_url)
        try:
            with make_session_factory(engine)() as session:
                row = session.get(RuleDocumentVersion, GATEWAY)
                assert row is not None
                return row.version
        finally:
            engine.dispose()

    @contextlib.contextmanager
    def service(self) -> Iterator[ExemptionService]:
        """The server's exemption service, by hand (no API for allowlists and family bays until
        the registry exists): same database, same key, publishing retained to the broker."""
        engine = make_engine(self.database_url)
        publisher = RulePublisher(self.broker.settings)
        publisher.start()
        try:
            assert publisher.wait_connected(10)
            yield ExemptionService(
                make_session_factory(engine),
                self.config,
                private_key_from_text(self.private_key),
                on_change=publisher.publish,
            )
        finally:
            publisher.stop()
            engine.dispose()

    def api(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.deployment.base_url}/api/v1{path}",
            headers={"Authorization": f"Bearer {DISPATCHER_TOKEN}"},
            json=body,
            timeout=30,
        )

    def cases_of(self, plate: str) -> list[dict[str, Any]]:
        cases = self.api("GET", "/cases?limit=200").json()
        return [case for case in cases if case.get("plate_text") == plate]

    def start_replay(self, van: str, car: str, clip: Path, hold: float = 0) -> Replay:
        self.runs += 1
        log = self.deployment.workdir / f"replay-{self.runs}.log"
        command = [sys.executable, "-m", "tests.e2e.replay_with_plates"]
        process = subprocess.Popen(
            [
                *command,
                "--config",
                str(self.deployment.config_path),
                "--camera",
                CAMERA,
                "--source",
                str(clip),
                "--van-plate",
                van,
                "--car-plate",
                car,
                "--hold-last",
                str(hold),
            ],
            stdout=subprocess.PIPE,
            stderr=log.open("ab"),
            env=self.deployment.env,
        )
        return Replay(process, log, len(self.published))

    def events_of(self, replay: Replay) -> list[dict[str, Any]]:
        return self.published[replay.events_from :]


@dataclass
class Replay:
    process: subprocess.Popen[bytes]
    log: Path
    events_from: int  # the broker listener's count when it started

    def finish(self) -> dict[str, Any]:
        out, _ = self.process.communicate(timeout=600)
        assert self.process.returncode == 0, self.tail()
        summary: dict[str, Any] = json.loads(out)
        return summary

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_in_log(self, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(errors="replace"):
            assert self.process.poll() is None, f"replay ended before {text!r}: {self.tail()}"
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} not in the replay's log after {timeout}s")
            time.sleep(0.05)


def _deployment_config(site: Deployment, public_key: str) -> None:
    """vtest.yaml as the harness writes it, plus the gateway's public key and a 2 s update."""
    document = yaml.safe_load(site.config_path.read_text())
    document["edge"]["rules_public_key"] = public_key
    document["edge"]["evidence"] = {"update_interval_seconds": UPDATE_SECONDS}
    site.config_path.write_text(yaml.safe_dump(document, allow_unicode=True))


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp(f"exemptions-{request.param}")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{workdir / 'civicwatch.db'}"
        else:
            url = stack.enter_context(contextlib.contextmanager(_postgres_scratch_database)())
        broker = MosquittoProcess(workdir / "broker")
        broker.start()
        stack.callback(broker.stop)
        private, public = generate_key_pair()
        deployment = Deployment(
            workdir, "vtest.yaml", broker.port, url, dwell_seconds=DWELL_SECONDS
        )
        _deployment_config(deployment, public)
        deployment.env[KEY_ENV_VAR] = private
        site = Site(deployment, broker, private, load_config(deployment.config_path), url)
        listener = MqttSession(
            broker.settings,
            f"listener-{uuid.uuid4().hex[:8]}",
            subscriptions=lambda: [(violation_topic(SITE, GATEWAY, CAMERA), 1)],
            on_message=lambda m: site.published.append(json.loads(m.payload)),
        )
        listener.start()
        stack.callback(listener.stop)
        assert listener.connected.wait(10)
        stack.callback(deployment.stop_server)  # first: also a server that never became ready
        deployment.start_server()
        # The sweep's leader publishes every gateway's document at start.
        wait_for(lambda: _retained_version(broker) is not None, 30, "the first rule document")
        yield site


def _retained_version(broker: MosquittoProcess) -> int | None:
    """The version of the rule document the broker holds retained for the gateway."""
    got: list[bytes] = []
    arrived = threading.Event()

    def take(message: Any) -> None:
        got.append(bytes(message.payload))
        arrived.set()

    reader = MqttSession(
        broker.settings,
        f"reader-{uuid.uuid4().hex[:8]}",
        subscriptions=lambda: [(rules_topic(SITE, GATEWAY), 1)],
        on_message=take,
    )
    reader.start()
    try:
        if not arrived.wait(2):
            return None
        return int(json.loads(json.loads(got[0])["document"])["version"])
    finally:
        reader.stop()


def _plate(event: dict[str, Any]) -> str | None:
    plate = event.get("plate")
    return plate.get("text") if isinstance(plate, dict) else None


def _opened(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return list(summary["violations"])


def test_an_allowlisted_van_gives_no_case_and_nothing_leaves_the_gateway(
    site: Site, clip: Path
) -> None:
    van, car = plates()
    now = utcnow()
    rule = AllowlistRule(
        id=f"residents-{uuid.uuid4().hex[:8]}",
        site_id=SITE,
        valid_from=now - timedelta(minutes=5),
        reason="住户车辆 residents' cars",
        issued_at=now,
        category=AllowlistCategory.RESIDENT,
        plates=[van],
    )
    with site.service() as service:
        service.issue_rule(rule, "pm-chief")
        try:
            replay = site.start_replay(van, car, clip)
            summary = replay.finish()
        finally:
            service.revoke(rule.id, "pm-chief", "test over")

    [violation] = _opened(summary)  # the car; the van stayed on the gateway
    assert violation["plate"] == car
    assert "exempted=1 " in replay.tail()
    events = site.events_of(replay)
    assert {e["violation_id"] for e in events} == {violation["violation_id"]}, "heard the car"
    assert [e for e in events if _plate(e) == van] == [], "the van's event left the gateway"
    assert site.cases_of(van) == []
    [case] = site.cases_of(car)
    assert case["violation_id"] == violation["violation_id"]


def test_a_family_bay_stay_over_its_minutes_gives_exactly_one_case(site: Site, clip: Path) -> None:
    """孝心车位 on the kerb: any car 1 minute, the van's plate is a resident's family (10 min).
    The car stays ~80 s (15 s of clip, 65 s of its last frame): one case, opened only after its
    minute; the van none."""
    van, car = plates()
    now = utcnow()
    rule = FamilyBayRule(
        id=f"family-bay-{uuid.uuid4().hex[:8]}",
        site_id=SITE,
        zone_id=ZONE,
        valid_from=now - timedelta(minutes=5),
        reason="孝心车位 family bay",
        issued_at=now,
        max_minutes=1,
        max_visits_per_day=3,
        family_plates=[van],
        family_max_minutes=10,
    )
    with site.service() as service:
        service.issue_rule(rule, "pm-chief")
        try:
            replay = site.start_replay(van, car, clip, hold=65)
            summary = replay.finish()
        finally:
            service.revoke(rule.id, "pm-chief", "test over")

    [violation] = _opened(summary)
    assert violation["plate"] == car
    assert violation["dwell_seconds"] > 60, "opened only once the bay's minute had run"
    assert [e for e in site.events_of(replay) if _plate(e) == van] == []
    opened = [e for e in site.events_of(replay) if e.get("phase") == "opened"]
    assert [e["violation_id"] for e in opened] == [violation["violation_id"]]
    [case] = site.cases_of(car)
    assert case["violation_ids"] == [violation["violation_id"]]
    assert site.cases_of(van) == []


def test_a_permit_revoked_in_the_api_takes_effect_at_the_gateway_within_5_s(
    site: Site, long_clip: Path
) -> None:
    van, car = plates()
    now = utcnow()
    issued = site.api(
        "POST",
        "/exemptions/permits",
        {
            "site_id": SITE,
            "zone_id": ZONE,
            "plate": van,
            "valid_from": (now - timedelta(minutes=1)).isoformat(),
            "valid_to": (now + timedelta(hours=2)).isoformat(),
            "reason": "搬家 moving day",
        },
    )
    assert issued.status_code == 201, issued.text
    replay = site.start_replay(van, car, long_clip, hold=55)
    replay.wait_in_log("held at the gateway: exempt")  # the van, by its permit
    assert [e for e in site.events_of(replay) if _plate(e) == van] == []

    asked = time.monotonic()
    revoked = site.api(
        "POST", f"/exemptions/permits/{issued.json()['id']}/revoke", {"reason": "moved out"}
    )
    assert revoked.status_code == 200, revoked.text
    version = site.server_version()  # the revoke's new document, committed before the answer
    wait_for(lambda: (site.gateway_version() or 0) >= version, REVOKE_WITHIN_S, "revoke")
    took = time.monotonic() - asked
    print(f"\nrevoke took effect at the gateway {took:.3f} s after it was asked for")
    assert took < REVOKE_WITHIN_S
    summary = replay.finish()
    assert f"rules version {version} in use" in replay.tail()

    # With the permit gone the van's stay is published, as opened, from the gateway.
    assert sorted(v["plate"] for v in _opened(summary)) == sorted([van, car])
    assert next(e["phase"] for e in site.events_of(replay) if _plate(e) == van) == "opened"
    assert len(site.cases_of(van)) == 1


def test_a_gateway_that_was_offline_catches_up_on_reconnect(site: Site, clip: Path) -> None:
    """The permit is issued while no gateway runs; its disk copy is older and has no permit for
    the van. On connecting it takes the retained document before the van's dwell runs out."""
    van, car = plates()
    before = site.gateway_version()
    now = utcnow()
    issued = site.api(
        "POST",
        "/exemptions/permits",
        {
            "site_id": SITE,
            "plate": van,
            "valid_from": (now - timedelta(minutes=1)).isoformat(),
            "valid_to": (now + timedelta(hours=2)).isoformat(),
            "reason": "维修 repair crew",
        },
    )
    assert issued.status_code == 201, issued.text
    latest = site.server_version()
    assert before is None or before < latest
    try:
        replay = site.start_replay(van, car, clip)
        summary = replay.finish()
    finally:
        site.api("POST", f"/exemptions/permits/{issued.json()['id']}/revoke", {"reason": "done"})
    if before is not None:  # started from its stale disk copy, then took the retained one
        assert f"rules version {before} loaded from" in replay.tail()
    assert f"rules version {latest} in use" in replay.tail()
    assert [v["plate"] for v in _opened(summary)] == [car]
    assert [e for e in site.events_of(replay) if _plate(e) == van] == []
    assert site.cases_of(van) == []


def test_a_forged_rule_document_is_refused_and_the_previous_one_stays(
    site: Site, clip: Path
) -> None:
    """A newer document with no rules, signed with another key, retained on the gateway's
    topic: the gateway refuses it (wrong_key) and keeps the server's, whose permit holds."""
    van, car = plates()
    now = utcnow()
    issued = site.api(
        "POST",
        "/exemptions/permits",
        {
            "site_id": SITE,
            "plate": van,
            "valid_from": (now - timedelta(minutes=1)).isoformat(),
            "valid_to": (now + timedelta(hours=2)).isoformat(),
            "reason": "临时通行 temporary pass",
        },
    )
    assert issued.status_code == 201, issued.text
    genuine = site.server_version()
    forger = MqttSession(site.broker.settings, f"forger-{uuid.uuid4().hex[:8]}")
    forger.start()
    try:
        # The gateway takes the genuine document first (disk copy), then meets the forgery.
        wait_for(lambda: _retained_version(site.broker) == genuine, 10, "the genuine document")
        primer = site.start_replay(van, car, clip)
        primer.wait_in_log(f"rules version {genuine} in use")
        primer.process.kill()
        primer.process.wait()
        assert forger.connected.wait(10)
        forged = RuleDocument(
            site_id=SITE, gateway_id=GATEWAY, version=genuine + 100, issued_at=now, rules=[]
        )
        other, _ = generate_key_pair()
        forger.publish(
            rules_topic(SITE, GATEWAY),
            sign_document(forged, private_key_from_text(other)),
            qos=1,
            retain=True,
        ).wait_for_publish(5)
        assert _retained_version(site.broker) == genuine + 100

        replay = site.start_replay(van, car, clip)
        summary = replay.finish()
        assert site.gateway_version() == genuine, "the forgery never reached the disk"
    finally:
        forger.stop()
        site.api("POST", f"/exemptions/permits/{issued.json()['id']}/revoke", {"reason": "done"})
    assert 'refused={"wrong_key": 1} ' in replay.tail()
    assert [v["plate"] for v in _opened(summary)] == [car], "the van's permit still held"
    assert [e for e in site.events_of(replay) if _plate(e) == van] == []
    assert site.cases_of(van) == []
