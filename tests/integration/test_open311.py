"""Open311 GeoReport v2 over the real app, a real database and really ingested cases.

The cases come from generated events (tests.factories.EventFactory: small generated JPEGs, with
generated "redacted" copies standing in for the face blur) stored through the real ingest path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from contracts.events import Phase, ViolationKind
from contracts.sites import SiteRegistry
from dispatch.config import ApiSettings, ApiToken, Department, Role
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.workflow import Action, Actor, Command, Workflow
from storage.database import SessionFactory
from storage.tables import Case
from tests.factories import (
    API_TOKENS,
    FIRE_LANE_ZONE,
    OTHER_CAMERA,
    OTHER_GATEWAY,
    OTHER_SITE,
    SITE,
    T0,
    EventFactory,
    make_ingest,
    migrated_database,
)
from tests.unit.ingest.helpers import with_redacted_copies

TOKENS = {
    **API_TOKENS,
    "fire": ApiToken(
        name="fire-chief",
        token=SecretStr("fire-rescue-supervisor"),
        role=Role.SUPERVISOR,
        department=Department.FIRE_RESCUE,
    ),
}
SPEC_FIELDS = {
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
}
SHANGHAI = timedelta(hours=8)


def _auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who].token.get_secret_value()}"}


@dataclass
class Open311:
    client: TestClient
    sessions: SessionFactory
    parking_id: int  # site-a, law enforcement, T0; closed below
    fire_id: int  # site-a, fire rescue, T0 + 1 h
    other_id: int  # site-b, law enforcement, T0 + 2 h

    def get(self, path: str, who: str = "dispatcher", **params: Any) -> Any:
        response = self.client.get(f"/open311/v2/{path}", headers=_auth(who), params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def ids(self, who: str = "dispatcher", **params: Any) -> list[int]:
        return [int(r["service_request_id"]) for r in self.get("requests.json", who, **params)]


ADDRESS = "杭州市西湖区文三路 100 号"
BUILDING = "3 号楼"


def _registry_with_coordinates(registry: SiteRegistry) -> SiteRegistry:
    """Site A with coordinates, a postal address, and the fire lane's building."""
    raw = registry.model_dump()
    for site in raw["sites"]:
        if site["id"] == SITE:
            site.update(lat=30.2741, long=120.1551, address=ADDRESS)
            for gateway in site["gateways"]:
                for camera in gateway["cameras"]:
                    for zone in camera["zones"]:
                        if zone["id"] == FIRE_LANE_ZONE:
                            zone["building"] = BUILDING
    return SiteRegistry.model_validate(raw)  # built afresh: a copy would keep the camera index


def _close_by_verification(sessions: SessionFactory, case_id: int) -> None:
    """The real workflow: the department accepts and resolves, the command centre verifies."""
    workflow = Workflow()
    worker = Actor("officer", Role.WORKER, Department.LAW_ENFORCEMENT)
    dispatcher = Actor("desk", Role.DISPATCHER)
    with sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None
        for action, actor in (
            (Action.ACCEPT, worker),
            (Action.RESOLVE, worker),
            (Action.VERIFY, dispatcher),
        ):
            workflow.apply(session, case, Command(action), actor, T0 + timedelta(hours=3))
        session.commit()


@pytest.fixture
def open311(tmp_path: Path) -> Iterator[Open311]:
    with migrated_database(f"sqlite:///{tmp_path / 'open311.db'}") as (_engine, sessions):
        rig = make_ingest(sessions, tmp_path / "evidence")
        edge = EventFactory()
        parking = with_redacted_copies(edge.event(Phase.OPENED, at=T0))
        fire = edge.event(
            Phase.OPENED,
            zone_id=FIRE_LANE_ZONE,
            kind=ViolationKind.FIRE_LANE_BLOCKING,
            at=T0 + timedelta(hours=1),
        )
        other_edge = EventFactory(
            site_id=OTHER_SITE, gateway_id=OTHER_GATEWAY, camera_id=OTHER_CAMERA, next_seed=50
        )
        other = other_edge.event(Phase.OPENED, at=T0 + timedelta(hours=2))
        for event in (parking, fire, other):
            rig.service.store(event)
        with sessions() as session:
            ids = {case.violation_id: case.id for case in session.query(Case)}
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=rig.evidence_store,
                settings=ApiSettings(tokens=list(TOKENS.values())),
                registry=_registry_with_coordinates(rig.registry),
                metrics_registry=rig.metrics.registry,
                workflow=Workflow(),
            )
        )
        state = Open311(
            TestClient(app),
            sessions,
            ids[parking.violation_id],
            ids[fire.violation_id],
            ids[other.violation_id],
        )
        _close_by_verification(sessions, state.parking_id)
        with state.client:
            yield state


def test_services_one_per_violation_kind_in_chinese(open311: Open311) -> None:
    services = open311.get("services.json", who="integration")
    assert [s["service_code"] for s in services] == [kind.value for kind in ViolationKind]
    names = {s["service_code"]: s["service_name"] for s in services}
    # The cameras' kinds (residents' categories are services too, named in their own tests).
    assert (
        names.items()
        >= {
            "illegal_parking": "违法停车",
            "fire_lane_blocking": "占用消防通道",
            "illegal_structure": "违法建设",
        }.items()
    )
    for service in services:
        assert set(service) == {
            "service_code",
            "service_name",
            "description",
            "metadata",
            "type",
            "keywords",
            "group",
        }
        assert service["metadata"] is False
        assert service["type"] == "realtime"
        assert service["description"]
        assert service["keywords"]
        assert service["group"]


def test_requests_newest_first_with_every_spec_field(open311: Open311) -> None:
    requests = open311.get("requests.json", who="integration")
    assert [int(r["service_request_id"]) for r in requests] == [
        open311.other_id,
        open311.fire_id,
        open311.parking_id,
    ]
    for request in requests:
        assert set(request) == SPEC_FIELDS
        assert request["zipcode"] is None
    fire = requests[1]
    assert fire["status"] == "open"
    assert fire["status_notes"] == "已派遣"
    assert fire["service_code"] == "fire_lane_blocking"
    assert fire["service_name"] == "占用消防通道"
    assert fire["agency_responsible"] == "消防救援"
    assert fire["service_notice"] == "大事派单，优先级：紧急"
    assert fire["address_id"] == f"{SITE}/{FIRE_LANE_ZONE}"
    assert fire["address"] == f"{ADDRESS} {BUILDING} {FIRE_LANE_ZONE}"
    assert (fire["lat"], fire["long"]) == (30.2741, 120.1551)
    assert requests[0]["lat"] is None  # site-b has no coordinates
    # W3C datetimes in the site's time zone (Asia/Shanghai), naming their offset.
    requested = datetime.fromisoformat(fire["requested_datetime"])
    assert requested.utcoffset() == SHANGHAI
    assert requested == T0 + timedelta(hours=1)
    with open311.sessions() as session:
        case = session.get(Case, open311.fire_id)
        assert case is not None
        assert case.sla_due_at is not None
        assert datetime.fromisoformat(fire["expected_datetime"]) == case.sla_due_at
        assert datetime.fromisoformat(fire["updated_datetime"]) == case.updated_at
    assert fire["media_url"] is None  # the fire-lane event carried no redacted copy


def test_closed_case_and_its_redacted_media(open311: Open311) -> None:
    (parking,) = open311.get(f"requests/{open311.parking_id}.json", who="integration")
    assert parking["status"] == "closed"
    assert parking["status_notes"] == "已结案"
    assert parking["agency_responsible"] == "综合行政执法"
    media = parking["media_url"]
    assert media.startswith("http://testserver/api/v1/evidence/")
    image = open311.client.get(media, headers=_auth("integration"))
    assert image.status_code == 200
    assert image.headers["X-Evidence-Copy"] == "redacted"
    assert image.content[:2] == b"\xff\xd8"  # a JPEG


def test_filters(open311: Open311) -> None:
    assert open311.ids(service_code="fire_lane_blocking") == [open311.fire_id]
    assert open311.ids(service_code="illegal_parking,fire_lane_blocking") == [
        open311.other_id,
        open311.fire_id,
        open311.parking_id,
    ]
    assert open311.ids(status="closed") == [open311.parking_id]
    assert open311.ids(status="open") == [open311.other_id, open311.fire_id]
    assert open311.ids(status="open,closed") == [
        open311.other_id,
        open311.fire_id,
        open311.parking_id,
    ]
    # T0 + 1 h is 17:00 in Shanghai: the same instant written two ways.
    assert open311.ids(start_date="2026-05-04T09:00:00Z") == [open311.other_id, open311.fire_id]
    assert open311.ids(start_date="2026-05-04T17:00:00+08:00", end_date="2026-05-04T09:30:00Z") == [
        open311.fire_id
    ]
    assert open311.ids(end_date="2026-05-04") == []
    assert open311.ids(start_date="2026-05-04", end_date="2026-05-05") == [
        open311.other_id,
        open311.fire_id,
        open311.parking_id,
    ]
    # A list of ids wins over every other filter (the spec says so).
    ids = f"{open311.parking_id},{open311.other_id},999999"
    assert open311.ids(service_request_id=ids, status="open") == [
        open311.other_id,
        open311.parking_id,
    ]


def test_paging_extension(open311: Open311) -> None:
    everything = open311.ids()
    assert open311.ids(limit=2) == everything[:2]
    assert open311.ids(limit=2, page=2) == everything[2:]
    assert open311.ids(limit=2, page=3) == []


def test_department_sees_only_its_own_requests(open311: Open311) -> None:
    assert open311.ids(who="law") == [open311.other_id, open311.parking_id]
    assert open311.ids(who="fire") == [open311.fire_id]
    ids = f"{open311.parking_id},{open311.fire_id}"
    assert open311.ids(who="law", service_request_id=ids) == [open311.parking_id]
    # Another department's request is exactly as "not found" as one that does not exist.
    foreign = open311.client.get(
        f"/open311/v2/requests/{open311.fire_id}.json", headers=_auth("law")
    )
    missing = open311.client.get("/open311/v2/requests/999999.json", headers=_auth("law"))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == [
        {"code": 404, "description": f"service request {open311.fire_id} not found"}
    ]
    assert missing.json()[0]["description"] == "service request 999999 not found"
    assert open311.get(f"requests/{open311.fire_id}.json", who="fire")[0]["status"] == "open"


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"start_date": "yesterday"}, "start_date: not a W3C datetime"),
        ({"end_date": "2026-05-04T08:00:00"}, "end_date: give a time zone"),
        ({"start_date": "2026-05-05", "end_date": "2026-05-04"}, "start_date is after end_date"),
        ({"status": "pending"}, "status: open, closed"),
        ({"service_code": "littering"}, "service_code: unknown littering"),
        ({"service_request_id": "1,x"}, "service_request_id: at most 1000 numeric ids"),
        ({"limit": "1001"}, "limit"),
        ({"page": "0"}, "page"),
    ],
)
def test_bad_parameters_are_open311_errors(
    open311: Open311, params: dict[str, str], problem: str
) -> None:
    response = open311.client.get(
        "/open311/v2/requests.json", headers=_auth("dispatcher"), params=params
    )
    assert response.status_code == 400
    (error,) = response.json()
    assert error["code"] == 400
    assert problem in error["description"]


def test_services_and_their_definitions_are_public_as_the_spec_keeps_them(
    open311: Open311,
) -> None:
    services = open311.client.get("/open311/v2/services.json")
    assert services.status_code == 200
    codes = [service["service_code"] for service in services.json()]
    assert codes == [kind.value for kind in ViolationKind]
    definition = open311.client.get(f"/open311/v2/services/{codes[0]}.json")
    assert definition.json() == {"service_code": codes[0], "attributes": []}
    unknown = open311.client.get("/open311/v2/services/no_such_service.json")
    assert unknown.status_code == 404
    assert unknown.json()[0]["code"] == 404


def test_errors_unknown_ids_and_authentication(open311: Open311) -> None:
    for path in ("requests.json", f"requests/{open311.fire_id}.json"):
        response = open311.client.get(f"/open311/v2/{path}")
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()[0]["code"] == 401
    for bad_id in ("999999", "abc", "-1", "1" * 30):
        response = open311.client.get(
            f"/open311/v2/requests/{bad_id}.json", headers=_auth("dispatcher")
        )
        assert response.status_code == 404, bad_id
        assert response.json() == [
            {"code": 404, "description": f"service request {bad_id} not found"}
        ]


def test_xml_is_refused_with_an_open311_error(open311: Open311) -> None:
    for path in ("services.xml", "requests.xml", f"requests/{open311.fire_id}.xml"):
        response = open311.client.get(f"/open311/v2/{path}", headers=_auth("integration"))
        assert response.status_code == 404
        (error,) = response.json()
        assert error["code"] == 404
        assert "only JSON" in error["description"]


def test_integration_tokens_read_every_department(open311: Open311) -> None:
    assert sorted(open311.ids(who="integration")) == sorted(
        [open311.parking_id, open311.fire_id, open311.other_id]
    )
    assert datetime.fromisoformat(
        open311.get(f"requests/{open311.other_id}.json", who="integration")[0]["requested_datetime"]
    ) == T0 + timedelta(hours=2)
    assert T0.tzinfo is UTC
