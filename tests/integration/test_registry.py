"""The residents' vehicle registry (issue 13 point 5) on a real database (SQLite and PostgreSQL):
roles and masking, the CSV import's per-row report and every hostile file refused and counted,
the export's formula guard, the audit chain, ``owner_of``, the signed rule documents carrying
plates only (and a real gateway on a real broker exempting a registered plate), the gateways'
versions, and ingest checking with the registry and the configured confidence floor."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from civicwatch.config import CivicwatchConfig, ServerSettings
from civicwatch.server import build_server
from contracts.events import PlateReading, ViolationEvent
from contracts.exemptions import FamilyBayRule, PermitRule, RuleDocument, StayHistory
from contracts.mqtt import make_client
from contracts.rule_signing import (
    PlatesPart,
    generate_key_pair,
    open_document,
    open_site_plates,
    private_key_from_text,
    public_key_from_text,
)
from contracts.sites import SiteRegistry
from contracts.topics import site_plates_topic
from dispatch.config import ApiSettings, ApiToken, Department, Role
from dispatch.exemption_settings import ExemptionSettings
from dispatch.exemptions import (
    ExemptionService,
    RulePublisher,
    SignedDocument,
    verify_exemption_audit,
)
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.registry import (
    MAX_CSV_BYTES,
    MAX_CSV_ROWS,
    Category,
    RegistryError,
    RegistryService,
    VehicleIn,
    csv_safe,
    export_csv,
    owner_of,
)
from dispatch.workflow import Workflow
from edge.outbox import Outbox
from edge.publisher import EdgePublisher
from edge.rule_store import RuleStore
from ingest.config import IngestSettings
from ingest.exemption_check import FLAG_ACTION, ExemptionCheck
from ingest.metrics import IngestMetrics
from storage.database import SessionFactory
from storage.tables import (
    Case,
    CaseTransition,
    ExemptionAudit,
    GatewayStatusRow,
    RegistryVehicle,
    utcnow,
)
from tests.conftest import MosquittoProcess
from tests.factories import (
    API_TOKENS,
    GATEWAY,
    PARKING_ZONE,
    SITE,
    T0,
    EventFactory,
    make_ingest,
    make_registry,
    migrated_database,
    start_from_migrated_template,
)
from tests.waiting import wait_for

TOKENS = {
    **API_TOKENS,
    "pm": ApiToken(
        name="pm-chief",
        token=SecretStr("property-token-00001"),
        role=Role.SUPERVISOR,
        department=Department.PROPERTY_MANAGEMENT,
    ),
    "law_chief": ApiToken(
        name="law-chief",
        token=SecretStr("law-chief-token-0001"),
        role=Role.SUPERVISOR,
        department=Department.LAW_ENFORCEMENT,
    ),
}
PRIVATE, PUBLIC = generate_key_pair()
PLATE = "沪A12345"
NAME = "张三丰"
PHONE = "13812341234"
HEADER = "plate,category,building,unit,owner_name,phone\r\n"
GBK_ROW = "沪A12345,resident,,,张三,13812341234\r\n".encode("gb18030")


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who].token.get_secret_value()}"}


@dataclass
class Rig:
    client: TestClient
    sessions: SessionFactory
    service: ExemptionService
    registry: SiteRegistry
    metrics: Any
    published: list[SignedDocument] = field(default_factory=list)

    def call(self, method: str, url: str, who: str, body: Any = None) -> Any:
        return self.client.request(method, f"/api/v1{url}", headers=auth(who), json=body)

    def register(self, who: str = "pm", **extra: Any) -> Any:
        body = {
            "site_id": SITE,
            "plate": PLATE,
            "category": "resident",
            "building": "3号楼",
            "unit": "2-301",
            "owner_name": NAME,
            "phone": PHONE,
        } | extra
        return self.call("POST", "/registry/vehicles", who, body)

    def upload(self, data: bytes, who: str = "pm", site: str = SITE) -> Any:
        return self.client.post(
            f"/api/v1/registry/import?site_id={site}",
            headers=auth(who) | {"Content-Type": "text/csv"},
            content=data,
        )

    def refused(self, reason: str) -> float:
        value = self.metrics.get_sample_value(
            "civicwatch_registry_import_refused_total", {"reason": reason}
        )
        return value or 0.0

    def rows(self) -> list[RegistryVehicle]:
        with self.sessions() as session:
            return list(session.scalars(select(RegistryVehicle)))


@pytest.fixture
def rig(database_url: str, tmp_path: Path) -> Iterator[Rig]:
    registry = make_registry()
    with migrated_database(database_url) as (_engine, sessions):
        ingest = make_ingest(sessions, tmp_path / "evidence")
        published: list[SignedDocument] = []
        service = ExemptionService(
            sessions, registry, private_key_from_text(PRIVATE), on_change=published.extend
        )
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=ingest.evidence_store,
                settings=ApiSettings(tokens=list(TOKENS.values())),
                registry=registry,
                metrics_registry=ingest.metrics.registry,
                workflow=Workflow(),
                exemptions=service,
            )
        )
        with TestClient(app) as client:
            yield Rig(client, sessions, service, registry, ingest.metrics.registry, published)


def documents(rig: Rig) -> list[tuple[str, RuleDocument]]:
    """Each published rules payload as sent, with the site's plates it names as sent on the
    site's plates topic (their text, inflated from the frame), and what a gateway runs."""
    key = public_key_from_text(PUBLIC)
    plates: dict[str, tuple[str, PlatesPart]] = {}
    for signed in rig.published:
        if signed.topic == site_plates_topic(SITE):
            part = open_site_plates(signed.payload, key, SITE)
            plates[part.sha256] = (part.text, part)  # as the frame carries it, inflated
    out = []
    for signed in rig.published:
        if signed.topic != site_plates_topic(SITE):
            named = json.loads(json.loads(signed.payload)["document"])["site_plates"]["sha256"]
            text, part = plates[named]
            opened = open_document(signed.payload, key, part)
            out.append((signed.payload.decode() + text, opened.document))
    return out


# -- roles and masking ------------------------------------------------------------------------


def test_property_management_edits_others_read_masked_and_integrations_are_refused(
    rig: Rig,
) -> None:
    created = rig.register()
    assert created.status_code == 201, created.text
    entry = created.json()
    assert (entry["owner_name"], entry["phone"], entry["masked"]) == (NAME, PHONE, False)
    assert rig.call("GET", "/registry/vehicles", "dispatcher").json()[0]["phone"] == PHONE
    for who in ("law", "law_chief"):
        seen = rig.call("GET", f"/registry/vehicles?site_id={SITE}", who)
        assert seen.status_code == 200
        assert seen.json()[0]["owner_name"] == "张**"
        assert seen.json()[0]["phone"] == "138****1234"
        assert NAME not in seen.text
        assert PHONE not in seen.text
        assert rig.register(who, plate="沪B54321").status_code == 403
        assert (
            rig.client.get(
                f"/api/v1/registry/export.csv?site_id={SITE}", headers=auth(who)
            ).status_code
            == 403
        )
    assert rig.call("GET", "/registry/vehicles", "integration").status_code == 403
    assert rig.upload(HEADER.encode(), who="law").status_code == 403
    # change and delete, each on the audit chain without the name or the phone
    vehicle_id = entry["id"]
    for key in ("id", "masked", "updated_at", "updated_by"):
        entry.pop(key)
    changed = rig.call(
        "PUT", f"/registry/vehicles/{vehicle_id}", "pm", entry | {"owner_name": "李四"}
    )
    assert changed.status_code == 200, changed.text
    assert rig.register(plate=PLATE).status_code == 409
    assert rig.call("DELETE", f"/registry/vehicles/{changed.json()['id']}", "pm").status_code == 204
    assert rig.rows() == []
    with rig.sessions() as session:
        audit = list(session.scalars(select(ExemptionAudit).order_by(ExemptionAudit.seq)))
        assert [a.action for a in audit] == [
            "registry_created",
            "registry_updated",
            "registry_deleted",
        ]
        assert audit[1].detail["changed"] == ["owner_name"]
        assert verify_exemption_audit(session) == []
        text = json.dumps([a.detail for a in audit], ensure_ascii=False)
        assert NAME not in text
        assert PHONE not in text
        assert "李四" not in text


# -- what the gateways get --------------------------------------------------------------------


def test_the_published_documents_carry_the_plates_and_no_name_or_phone(rig: Rig) -> None:
    bay = FamilyBayRule(
        id="bay-1",
        site_id=SITE,
        zone_id=PARKING_ZONE,
        valid_from=T0,
        reason="孝心车位",
        issued_at=T0,
        max_minutes=30,
        max_visits_per_day=2,
        family_max_minutes=120,
    )
    rig.service.issue_rule(bay, "pm-chief")
    rig.published.clear()
    assert rig.register().status_code == 201
    assert rig.register(plate="沪C11111", category="family", owner_name="王五").status_code == 201
    assert (
        rig.register(plate="沪D22222", category="service", phone="021-12345678").status_code == 201
    )
    text, document = documents(rig)[-1]
    rules = {rule.id: rule for rule in document.rules}
    assert rules["registry-resident"].plates == [PLATE]  # type: ignore[union-attr]
    assert rules["registry-service"].plates == ["沪D22222"]  # type: ignore[union-attr]
    assert rules["bay-1"].family_plates == ["沪C11111"]  # type: ignore[union-attr]
    for secret in (NAME, PHONE, "王五", "02112345678", "3号楼", "2-301"):
        assert secret not in text


def test_a_plate_registered_through_the_api_is_exempt_at_a_real_gateway(
    database_url: str, tmp_path: Path, mosquitto: MosquittoProcess
) -> None:
    registry = make_registry()
    with migrated_database(database_url) as (_engine, sessions):
        ingest = make_ingest(sessions, tmp_path / "evidence")
        publisher = RulePublisher(mosquitto.settings)
        publisher.start()
        assert publisher.wait_connected(5)
        service = ExemptionService(
            sessions, registry, private_key_from_text(PRIVATE), on_change=publisher.publish
        )
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=ingest.evidence_store,
                settings=ApiSettings(tokens=list(TOKENS.values())),
                registry=registry,
                metrics_registry=ingest.metrics.registry,
                workflow=Workflow(),
                exemptions=service,
            )
        )
        found = registry.gateway(GATEWAY)
        assert found is not None
        site, config = found
        rules = RuleStore(tmp_path / "rules.json", public_key_from_text(PUBLIC), site, GATEWAY)
        gateway = EdgePublisher(
            mosquitto.settings, SITE, GATEWAY, Outbox(tmp_path / "outbox.sqlite"), 5, rules=rules
        )
        gateway.start()
        zone = config.cameras[0].zone(PARKING_ZONE)
        assert zone is not None

        def exempt() -> bool:
            now = utcnow()
            return rules.decide(PLATE, 0.95, zone, now, StayHistory(now)).exempt

        try:
            with TestClient(app) as client:
                assert not exempt()
                csv = (HEADER + f"{PLATE},resident,1号楼,101,{NAME},{PHONE}\r\n").encode()
                answer = client.post(
                    f"/api/v1/registry/import?site_id={SITE}",
                    headers=auth("pm") | {"Content-Type": "text/csv"},
                    content=csv,
                )
                assert answer.status_code == 200, answer.text
                wait_for(exempt, 5.0)
                # The document and, kept apart by hash, the site's plates it names.
                on_disk = "".join(p.read_text() for p in tmp_path.glob("rules.json*"))
                assert PLATE in on_disk
                assert NAME not in on_disk
                assert PHONE not in on_disk
        finally:
            gateway.stop()
            publisher.stop()


# -- CSV import -------------------------------------------------------------------------------


def test_a_good_file_with_a_bom_is_imported_and_imported_again_changes_only_what_differs(
    rig: Rig,
) -> None:
    body = (
        HEADER
        + f"{PLATE},resident,3号楼,2-301,{NAME},+86 138-1234-1234\r\n"
        + "沪B54321,family,,,李四,0571 8888 7777\r\n"
    )
    answer = rig.upload(("\ufeff" + body).encode())
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"site_id": SITE, "rows": 2, "created": 2, "updated": 0}
    assert {r.phone for r in rig.rows()} == {PHONE, "057188887777"}
    again = rig.upload(body.replace("李四", "李四四").encode())  # no BOM this time
    assert again.json() == {"site_id": SITE, "rows": 2, "created": 0, "updated": 1}
    contact = owner_of(rig.sessions, SITE, "沪B54321")
    assert contact is not None
    assert contact.owner_name == "李四四"
    assert owner_of(rig.sessions, SITE, "沪Z99999") is None
    assert owner_of(rig.sessions, "site-b", PLATE) is None


def test_bad_rows_are_reported_by_row_column_and_reason_in_both_languages_and_nothing_is_stored(
    rig: Rig,
) -> None:
    body = (
        HEADER
        + f"{PLATE},resident,1号楼,101,{NAME},{PHONE}\r\n"  # row 2: good
        + "ABC123,resident,1号楼,101,王五,13900000000\r\n"  # row 3: bad plate
        + f"{PLATE},family,1号楼,102,赵六,13900000001\r\n"  # row 4: duplicate plate
        + "沪B00001,visitor,1号楼,103,钱七,13900000002\r\n"  # row 5: bad category
        + "沪B00002,resident,1号楼,104,\"=cmd|' /C calc'!A0\",13900000003\r\n"  # row 6: formula
        + "沪B00003,resident,1号楼,105,孙八,12345\r\n"  # row 7: bad phone
        + "沪B00004,resident,1号楼\r\n"  # row 8: 3 columns
        + "沪B00005,resident,1号楼,106,,13900000004\r\n"  # row 9: no name
    )
    answer = rig.upload(body.encode())
    assert answer.status_code == 422
    report = answer.json()
    assert report["code"] == "csv_rows_invalid"
    assert report["params"] == {"count": 7, "rows": 8}
    found = [(e["row"], e["column"], e["code"]) for e in report["errors"]]
    assert found == [
        (3, "plate", "bad_plate"),
        (4, "plate", "duplicate_plate"),
        (5, "category", "bad_category"),
        (6, "owner_name", "formula"),
        (7, "phone", "bad_phone"),
        (8, "", "wrong_column_count"),
        (9, "owner_name", "missing_value"),
    ]
    formula = report["errors"][3]
    assert formula["value"].startswith("'=")  # shown, never as a live formula
    assert "=cmd" not in answer.text.replace("'=cmd", "")
    assert formula["message"]["en"].startswith("Must not start with")
    assert formula["message"]["zh-CN"].startswith("不能以")
    assert rig.rows() == []
    assert rig.refused("csv_rows_invalid") == 1


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 422, "csv_empty"),
        (b"\xef\xbb\xbf\r\n\r\n", 422, "csv_empty"),
        (HEADER.encode(), 422, "csv_empty"),
        ("车牌,类别\r\n沪A12345,resident\r\n".encode(), 422, "csv_bad_header"),
        (b"plate,category,building,unit,owner_name,phone,extra\r\n", 422, "csv_bad_header"),
        (
            HEADER.encode() + "沪A12345,resident,,,张三,13812341234\r\n".encode("gb18030"),
            422,
            "csv_not_utf8",
        ),
        (HEADER.encode() + b"\x00\x00\x00", 422, "csv_not_utf8"),
        (b"a" * (MAX_CSV_BYTES + 1), 413, "csv_too_large"),
        (
            (HEADER + "沪A12345,resident,,,张三,13812341234\r\n" * (MAX_CSV_ROWS + 1)).encode(),
            413,
            "csv_too_many_rows",
        ),
    ],
    ids=[
        "empty",
        "bom-only",
        "header-only",
        "chinese-header",
        "extra-column",
        "gbk",
        "nul",
        "oversize",
        "too-many-rows",
    ],
)
def test_a_file_that_cannot_be_an_import_is_refused_with_its_reason_and_counted(
    rig: Rig, data: bytes, status: int, code: str
) -> None:
    answer = rig.upload(data)
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code
    assert rig.refused(code) == 1
    assert rig.rows() == []


def test_the_export_guards_every_cell_against_formulas(rig: Rig) -> None:
    assert rig.register().status_code == 201
    with rig.sessions.begin() as session:  # an entry from before the input checks
        row = session.scalars(select(RegistryVehicle)).one()
        row.owner_name = '=HYPERLINK("http://x")'
        row.unit = "@SUM(A1)"
    answer = rig.client.get(f"/api/v1/registry/export.csv?site_id={SITE}", headers=auth("pm"))
    assert answer.status_code == 200
    assert answer.content.startswith("\ufeff".encode())
    text = answer.content.decode("utf-8-sig")
    assert "'=HYPERLINK" in text
    assert "'@SUM(A1)" in text
    assert ",=" not in text
    assert ",@" not in text
    assert csv_safe("+1") == "'+1"
    assert csv_safe("沪A") == "沪A"
    assert export_csv([]).decode("utf-8-sig").startswith("site_id,plate,")


# -- gateways' versions -----------------------------------------------------------------------


def test_a_gateway_running_an_older_document_is_behind(rig: Rig) -> None:
    assert rig.register().status_code == 201
    latest = rig.published[-1].version
    with rig.sessions.begin() as session:
        session.add(
            GatewayStatusRow(
                gateway_id=GATEWAY,
                site_id=SITE,
                state="online",
                received_at=utcnow(),
                rules_version=latest - 1,
            )
        )
    answer = rig.call("GET", "/exemptions/gateways", "pm")
    assert answer.status_code == 200
    mine = next(g for g in answer.json() if g["gateway_id"] == GATEWAY)
    assert (mine["latest_version"], mine["running_version"], mine["behind"]) == (
        latest,
        latest - 1,
        True,
    )
    with rig.sessions.begin() as session:
        session.get_one(GatewayStatusRow, GATEWAY).rules_version = latest
    mine = next(
        g
        for g in rig.call("GET", "/exemptions/gateways", "pm").json()
        if g["gateway_id"] == GATEWAY
    )
    assert mine["behind"] is False
    assert rig.call("GET", "/exemptions/gateways", "law").status_code == 403


# -- ingest checks with the registry and the configured floor -------------------------------


def _event(plate: str, confidence: float) -> ViolationEvent:
    event = EventFactory().event()
    return event.model_copy(update={"plate": PlateReading(text=plate, confidence=confidence)})


def test_ingest_decides_with_the_registry_and_the_configured_confidence_floor(rig: Rig) -> None:
    rig.service.issue_rule(
        PermitRule(
            id="permit-1",
            site_id=SITE,
            zone_id=PARKING_ZONE,
            plate="沪B54321",
            valid_from=T0 - timedelta(hours=1),
            valid_to=T0 + timedelta(hours=1),
            reason="moving day",
            issued_at=T0,
        ),
        "pm-chief",
    )
    ingest_metrics = IngestMetrics()
    # 0.6 is under the default floor (0.8) and over the configured one (0.5)
    default = ExemptionCheck(rig.sessions, rig.registry, ingest_metrics)
    configured = ExemptionCheck(rig.sessions, rig.registry, ingest_metrics, 0.5)
    decision = configured.decide(_event("沪B54321", 0.6))
    assert decision is not None
    assert decision.exempt
    decision = default.decide(_event("沪B54321", 0.6))
    assert decision is not None
    assert not decision.exempt
    assert rig.register().status_code == 201
    registered = ExemptionCheck(rig.sessions, rig.registry, ingest_metrics)
    decision = registered.decide(_event(PLATE, 0.95))
    assert decision is not None
    assert decision.exempt
    assert decision.rule_id == "registry-resident"


def test_a_file_with_the_chinese_header_and_category_names_is_imported(rig: Rig) -> None:
    body = "车牌,类别,楼栋,单元,车主,电话\r\n沪A12345,亲属,3号楼,2-301,张三丰,13812341234\r\n"
    answer = rig.upload(body.encode())
    assert answer.status_code == 200, answer.text
    assert [(r.plate, r.category) for r in rig.rows()] == [(PLATE, "family")]


@pytest.mark.parametrize(("floor", "flags"), [(0.5, True), (0.8, False)])
def test_the_composed_server_checks_ingested_events_at_the_configured_floor(
    tmp_path: Path, mosquitto: MosquittoProcess, floor: float, flags: bool
) -> None:
    """server.exemptions.plate_confidence_floor reaches ingest's check through the composition
    root: a permitted plate read at 0.6, published to the real broker, is stored, and flagged
    as should-have-been-exempt under a configured floor of 0.5, not under 0.8."""
    key = tmp_path / "rules.key"
    key.write_text(PRIVATE)
    config = CivicwatchConfig(
        sites=make_registry().sites,
        broker=mosquitto.settings,
        server=ServerSettings(
            database_url=f"sqlite:///{tmp_path / 'civicwatch.db'}",
            ingest=IngestSettings(
                client_id=f"ingest-floor-{uuid.uuid4().hex[:8]}",
                evidence_dir=tmp_path / "evidence",
            ),
            exemptions=ExemptionSettings(signing_key_file=key, plate_confidence_floor=floor),
        ),
    )
    start_from_migrated_template(config.server.database_url)
    server = build_server(config)
    server.start()
    try:
        assert server.consumer.ready.wait(10)
        assert server.exemptions is not None
        server.exemptions.service.issue_rule(
            PermitRule(
                id="permit-floor",
                site_id=SITE,
                zone_id=PARKING_ZONE,
                plate=PLATE,
                valid_from=T0 - timedelta(hours=1),
                valid_to=T0 + timedelta(hours=1),
                reason="moving day",
                issued_at=T0,
            ),
            "pm-chief",
        )
        factory = EventFactory()
        event = factory.event().model_copy(
            update={"plate": PlateReading(text=PLATE, confidence=0.6)}
        )
        client = make_client(mosquitto.settings, f"floor-edge-{uuid.uuid4().hex[:8]}")
        client.connect(mosquitto.settings.host, mosquitto.settings.port)
        client.loop_start()
        try:
            client.publish(factory.topic, event.to_wire(), qos=1).wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()

        def flagged() -> bool:
            with server.session_factory() as session:
                found = select(CaseTransition).where(CaseTransition.action == FLAG_ACTION)
                return session.scalars(found).first() is not None

        def stored() -> bool:
            with server.session_factory() as session:
                return session.scalars(select(Case)).first() is not None

        wait_for(stored, 10.0)
        if flags:
            wait_for(flagged, 10.0)
        else:
            time.sleep(1.0)  # the check runs right after the batch is stored
            assert not flagged()
    finally:
        server.stop()


def test_the_same_plate_registered_at_the_same_moment_is_one_entry_and_409s(rig: Rig) -> None:
    """Eight requests race to register one plate: one entry, the others a 409 (never a 500
    from the unique key or the audit chain's next entry)."""
    service = RegistryService(rig.sessions, rig.registry, rig.service)
    vehicle = VehicleIn(
        site_id=SITE, plate=PLATE, category=Category.RESIDENT, owner_name=NAME, phone=PHONE
    )
    barrier = threading.Barrier(8)
    outcomes: list[object] = []

    def register() -> None:
        barrier.wait()
        try:
            outcomes.append(service.create(vehicle, "pm-chief").id)
        except RegistryError as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=register) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o for o in outcomes if isinstance(o, int)) == [409] * 7
    assert len(rig.rows()) == 1
    with rig.sessions() as session:
        assert verify_exemption_audit(session) == []
