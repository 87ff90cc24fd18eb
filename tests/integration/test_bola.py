"""OWASP API1 (broken object level authorisation): a department never reaches another's objects.

The server is the real one (civicwatch.server.build_server) served by uvicorn on a free port,
over a real SQLite database filled through the real ingest path: law enforcement's and fire
rescue's cases, with evidence (originals and redacted copies, generated JPEGs), plates, notes,
a case transferred from one department to the other, notifications and camera re-check requests.

The routes are not listed here: every route of the app is enumerated (``app.routes``, mounted
sub-apps included), so a route another module adds later is probed without editing this file.
A path parameter is filled from OBJECT_PARAMS (how to find another department's value) or
NOT_OBJECT_PARAMS (why it names nothing a department owns); a route with a parameter in
neither fails the test, naming the route. Request bodies and required query parameters are
generated from the route's OpenAPI operation, so each probe reaches the handler.

For every such route and method, a fire-rescue object asked for by a law-enforcement worker or
supervisor (session cookie, or a config token) is 404, and changes nothing. Every list, feed and
page without a path parameter is read by them, the live feed included, and must not name a
fire-rescue case. The dispatcher, admin and integration read both departments alike; the
integration token may change nothing (403).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIWebSocketRoute, iter_route_contexts
from pydantic import SecretStr
from sqlalchemy import delete, func, select
from starlette.routing import BaseRoute, Mount, WebSocketRoute

from civicwatch.config import CivicwatchConfig, ServerSettings
from civicwatch.server import Server, build_server
from civicwatch.serving import BackgroundApi
from contracts.events import Phase, ViolationKind
from dispatch.config import (
    AccountSettings,
    ApiSettings,
    ApiToken,
    Department,
    DevUser,
    Role,
)
from dispatch.residents import consultation
from dispatch.residents.intake import ReportSubmission, submit_report
from dispatch.workflow import Action, Actor, Command, Workflow
from ingest.config import IngestSettings
from storage.tables import (
    Case,
    CaseEvidence,
    CaseTransition,
    Consultation,
    ConsultationPost,
    ConsultationVote,
    Notification,
    ReportLimitHit,
    ResidentReport,
    User,
    VerificationRequest,
    utcnow,
)
from tests.conftest import free_port
from tests.factories import (
    CAMERA,
    FIRE_LANE_ZONE,
    OTHER_SITE,
    SITE,
    EventFactory,
    jpeg_bytes,
    make_registry,
    start_from_migrated_template,
)
from tests.unit.ingest.helpers import with_plate, with_redacted_copies

OWN = Department.LAW_ENFORCEMENT  # the department of the people probing
FOREIGN = Department.FIRE_RESCUE  # whose objects they must not reach
PASSWORD = "bola-probe-passphrase"
CSRF = {"X-Requested-With": "civicwatch"}
IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Reads that the brief says the dispatcher, admin and integration get (200) for both departments.
SHARED_READS = ("/api/v1/cases", "/api/v1/evidence", "/open311/")
# Lists the dispatcher must see the other department's cases in (where the route exists).
CONTROL_LISTS = (
    "/api/v1/cases",
    "/api/v1/feed",
    "/api/v1/notifications",
    "/open311/v2/requests.json",
    "/console/fragments/cases",
    "/console/fragments/sla",
)


@dataclass
class Objects:
    """One department's objects in the database."""

    case_ids: list[int] = field(default_factory=list)
    violation_ids: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)  # originals and redacted copies
    plates: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # note reasons on its cases
    notification_ids: list[int] = field(default_factory=list)
    verification_ids: list[str] = field(default_factory=list)

    def markers(self) -> list[str]:
        """Strings that appear only where one of these objects is shown."""
        return self.violation_ids + self.evidence + self.plates + self.notes


# path parameter -> every value of that kind a department owns. A new route whose parameter
# names a case, evidence, notification, camera re-check or Open311 request needs a line here.
OBJECT_PARAMS: dict[str, Callable[[Objects], list[str]]] = {
    "case_id": lambda objects: [str(i) for i in objects.case_ids],
    "sha256": lambda objects: objects.evidence,
    "service_request_id": lambda objects: [str(i) for i in objects.case_ids],  # Open311 = case id
    "notification_id": lambda objects: [str(i) for i in objects.notification_ids],
    "request_id": lambda objects: objects.verification_ids,  # a camera re-check
    "verification_id": lambda objects: objects.verification_ids,
}
# path parameter -> (why no department owns what it names, the value to use)
NOT_OBJECT_PARAMS: dict[str, tuple[str, str]] = {
    "username": ("an account: admin-only routes, not a department's", "bola-worker"),
    "site_id": ("a site (its plan image): every department works on every site", SITE),
    "camera_id": ("a camera (its dot on the plan): every department sees every camera", CAMERA),
    "service_code": ("an Open311 service: public, as the spec keeps it", "illegal_parking"),
    # A person's own object, not a department's: its owner checks are its module's tests'.
    "view_id": ("a saved view: one person's, never a department's", "1"),
    "report_id": ("a joint analysis report: every department's meeting reads it", "1"),
    # Department names are a fixed list every role knows: its people are refused (403) to whoever
    # may not assign its cases, checked in test_routes_over_many_cases_or_a_department below.
    "department": ("a department's name, not an object of one", OWN.value),
    "template_id": (
        "a response template: only admins change one (403 to all others); reading is the list",
        "1",
    ),
    "path": ("a static file of the web pages", "app.css"),
    # A resident's tracking code: the secret that is the only access to the resident's pages,
    # which show no internal note or phone; tests/integration/test_report_page.py checks them.
    "code": ("a resident's tracking code: public pages keyed by an unguessable code", "ABCDEFGHJK"),
    # 小事协商 belongs to a site's council and property management, never to a camera
    # department: test_consultations_reach_only_their_site_and_property_management probes every
    # route naming one (other site's council, other departments, integration: 404 or 403).
    "consultation_id": ("a consultation: a site's council's and property management's", "1"),
    "proposal_id": ("a proposal in a consultation (as consultation_id)", "1"),
    # Permits (issue 13) are property management's and the command centre's only: every camera
    # department's role is refused them (403) before any lookup; their own tests check roles.
    "rule_id": ("a temporary permit: property management's, no camera department's", "permit-1"),
    # The vehicle registry (issue 13): property management's and the command centre's;
    # test_the_registry_shows_names_and_phones_only_to_who_needs_them probes its routes.
    "vehicle_id": ("a registry entry: property management's, no camera department's", "vehicle-1"),
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    params: tuple[str, ...]
    websocket: bool = False

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


_CONVERTOR = re.compile(r":[^}]*}")


def enumerate_endpoints(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[Endpoint]:
    """Every method of every route: included routers' and mounted sub-apps' routes too."""
    for context in iter_route_contexts(routes):
        route = context.original_route
        if isinstance(route, Mount):
            yield from enumerate_endpoints(route.routes, prefix + route.path)
            continue
        # {case_id:int} routes only digits; the OpenAPI document (and a name) says {case_id}.
        path = _CONVERTOR.sub("}", prefix + (context.path or ""))
        params = tuple(_PARAM.findall(path))
        if isinstance(route, WebSocketRoute | APIWebSocketRoute):
            yield Endpoint("WEBSOCKET", path, params, websocket=True)
            continue
        for method in sorted((context.methods or set()) - IGNORED_METHODS):
            yield Endpoint(method, path, params)


def unknown_params(endpoints: list[Endpoint]) -> list[str]:
    """A line for each route parameter this test cannot fill: each one fails the test."""
    problems = []
    for endpoint in endpoints:
        for param in endpoint.params:
            if param not in OBJECT_PARAMS and param not in NOT_OBJECT_PARAMS:
                problems.append(
                    f"{endpoint.name}: path parameter {{{param}}} is unknown to test_bola: add it "
                    "to OBJECT_PARAMS (how to find another department's value) or to "
                    "NOT_OBJECT_PARAMS (why it names nothing a department owns)"
                )
        if endpoint.websocket and any(p in OBJECT_PARAMS for p in endpoint.params):
            problems.append(f"{endpoint.name}: test_bola cannot probe a websocket's object yet")
    return problems


def _fill(path: str, values: dict[str, str]) -> str:
    return _PARAM.sub(lambda match: values[match.group(1)], path)


# Fields whose generated value must satisfy more than the schema says.
FIELD_VALUES: dict[str, Any] = {
    "password": "another bola passphrase",
    "reason": "bola probe",
    "username": "bola-probe-user",
}


class RequestMaker:
    """Builds a request that passes validation from a route's OpenAPI operation."""

    def __init__(self, openapi: dict[str, Any]) -> None:
        self._paths: dict[str, Any] = openapi.get("paths", {})
        self._schemas: dict[str, Any] = openapi.get("components", {}).get("schemas", {})

    def operation(self, endpoint: Endpoint) -> dict[str, Any]:
        found: dict[str, Any] = self._paths.get(endpoint.path, {}).get(endpoint.method.lower(), {})
        return found

    def kwargs(self, endpoint: Endpoint) -> dict[str, Any]:
        operation = self.operation(endpoint)
        result: dict[str, Any] = {}
        query = {
            p["name"]: self.example(p.get("schema", {}), p["name"])
            for p in operation.get("parameters", [])
            if p.get("in") == "query" and p.get("required")
        }
        if query:
            result["params"] = query
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            result["json"] = self.example(content["application/json"].get("schema", {}))
        elif "multipart/form-data" in content or "application/x-www-form-urlencoded" in content:
            media = (
                content.get("multipart/form-data") or content["application/x-www-form-urlencoded"]
            )
            schema = self._resolve(media.get("schema", {}))
            files, data = {}, {}
            for name in schema.get("required", list(schema.get("properties", {}))):
                prop = self._resolve(schema.get("properties", {}).get(name, {}))
                if self._is_binary(prop):
                    files[name] = ("probe.jpg", jpeg_bytes(99), "image/jpeg")
                else:
                    data[name] = str(self.example(prop, name))
            if files:
                result["files"] = files
            result["data"] = data
        return result

    def query_params(self, endpoint: Endpoint) -> set[str]:
        return {
            p["name"]
            for p in self.operation(endpoint).get("parameters", [])
            if p.get("in") == "query"
        }

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self._schemas[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def _is_binary(self, schema: dict[str, Any]) -> bool:
        if schema.get("format") == "binary" or "contentMediaType" in schema:
            return True
        if schema.get("type") == "array":
            return self._is_binary(self._resolve(schema.get("items", {})))
        return any(self._is_binary(self._resolve(s)) for s in schema.get("anyOf", []))

    def example(self, schema: dict[str, Any], name: str = "") -> Any:
        schema = self._resolve(schema)
        if name in FIELD_VALUES:
            return FIELD_VALUES[name]
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf", "allOf"):
            options = [self._resolve(s) for s in schema.get(key, [])]
            options = [s for s in options if s.get("type") != "null"]
            if options:
                return self.example(options[0], name)
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            props = schema.get("properties", {})
            return {key: self.example(props[key], key) for key in schema.get("required", [])}
        if kind == "array":
            return [self.example(schema.get("items", {}), name)] * schema.get("minItems", 0)
        if kind == "integer":
            return max(int(schema.get("minimum", 1)), 1)
        if kind == "number":
            return max(float(schema.get("minimum", 1.0)), 1.0)
        if kind == "boolean":
            return False
        formats = {"date-time": utcnow().isoformat(), "uuid": str(uuid.uuid4()), "uri": "http://x"}
        if schema.get("format") in formats:
            return formats[schema["format"]]
        return "x" * max(int(schema.get("minLength", 1)), 1)


@dataclass
class Principal:
    """A signed-in caller: a person's session cookie or a config token."""

    name: str
    role: Role
    headers: dict[str, str]


@dataclass
class World:
    server: Server
    base_url: str
    own: Objects
    foreign: Objects
    scoped: list[Principal]  # law enforcement's worker and supervisor
    broad: list[Principal]  # dispatcher, admin, integration
    http: httpx.Client

    def of(self, department: Department) -> Objects:
        return self.own if department is OWN else self.foreign

    def request(self, who: Principal, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self.http.cookies.clear()  # each caller sends only its own credentials
        headers = {**who.headers, **kwargs.pop("headers", {})}
        return self.http.request(method, url, headers=headers, **kwargs)


TOKENS = [
    ApiToken(name="city-brain", token=SecretStr("integration-token-bola"), role=Role.INTEGRATION),
    ApiToken(
        name="law-script",
        token=SecretStr("law-worker-token-bola"),
        role=Role.WORKER,
        department=OWN,
    ),
]
ACCOUNTS = [
    DevUser(username="bola-worker", password=PASSWORD, role=Role.WORKER, department=OWN),
    DevUser(username="bola-supervisor", password=PASSWORD, role=Role.SUPERVISOR, department=OWN),
    DevUser(username="bola-fire", password=PASSWORD, role=Role.WORKER, department=FOREIGN),
    DevUser(username="bola-dispatcher", password=PASSWORD, role=Role.DISPATCHER),
    DevUser(username="bola-admin", password=PASSWORD, role=Role.ADMIN),
    # the residents' council of each site and property management's worker (小事协商)
    DevUser(username="bola-council", password=PASSWORD, role=Role.COUNCIL, site_id=SITE),
    DevUser(username="bola-council-b", password=PASSWORD, role=Role.COUNCIL, site_id=OTHER_SITE),
    DevUser(
        username="bola-property",
        password=PASSWORD,
        role=Role.WORKER,
        department=Department.PROPERTY_MANAGEMENT,
    ),
]


def _config(tmp_path: Path) -> CivicwatchConfig:
    return CivicwatchConfig(
        environment="development",  # the accounts come from dev_users, as in development
        sites=make_registry().sites,
        server=ServerSettings(
            database_url=f"sqlite:///{tmp_path / 'bola.db'}",
            ingest=IngestSettings(client_id="ingest-bola", evidence_dir=tmp_path / "evidence"),
            api=ApiSettings(tokens=TOKENS, accounts=AccountSettings(dev_users=ACCOUNTS)),
        ),
    )


def _fill_database(server: Server) -> tuple[Objects, Objects]:
    """Both departments' cases through the real ingest path, worked a little, plus the rows
    (notifications, camera re-checks) other parts of the server would write."""
    edge = EventFactory()
    events = {
        OWN: [
            with_plate(with_redacted_copies(edge.event(Phase.OPENED)), "浙A10001"),
            with_plate(with_redacted_copies(edge.event(Phase.OPENED)), "浙A10002"),
        ],
        FOREIGN: [
            with_plate(
                with_redacted_copies(
                    edge.event(
                        Phase.OPENED,
                        zone_id=FIRE_LANE_ZONE,
                        kind=ViolationKind.FIRE_LANE_BLOCKING,
                    )
                ),
                f"浙F2000{number}",
            )
            for number in (1, 2)
        ],
    }
    moved = with_plate(with_redacted_copies(edge.event(Phase.OPENED)), "浙A30003")
    for event in [*events[OWN], *events[FOREIGN], moved]:
        server.service.store(event)
    workflow = Workflow()  # no hooks: the probes, not a camera, are under test
    dispatcher = Actor("bola-dispatcher", Role.DISPATCHER)
    now = utcnow()
    with server.session_factory() as session:

        def case_of(violation_id: uuid.UUID) -> Case:
            return session.scalars(select(Case).where(Case.violation_id == violation_id)).one()

        # Law enforcement's case goes to fire rescue: its history stays, its reach must not.
        transferred = case_of(moved.violation_id)
        assert transferred.department == OWN
        workflow.apply(
            session,
            transferred,
            Command(Action.TRANSFER, reason="a fire lane after all", department=FOREIGN),
            dispatcher,
        )
        fire = Actor("bola-fire", Role.WORKER, FOREIGN)
        worked = case_of(events[FOREIGN][0].violation_id)
        workflow.apply(session, worked, Command(Action.ACCEPT), fire)
        workflow.apply(session, worked, Command(Action.RESOLVE, reason="moved"), fire)
        law = Actor("bola-worker", Role.WORKER, OWN)
        workflow.apply(session, case_of(events[OWN][0].violation_id), Command(Action.ACCEPT), law)
        session.commit()

        objects = {OWN: Objects(), FOREIGN: Objects()}
        for case in session.scalars(select(Case).order_by(Case.id)):
            assert case.department is not None
            mine = objects[Department(case.department)]
            mine.case_ids.append(case.id)
            mine.violation_ids.append(str(case.violation_id))
            assert case.plate_text is not None
            mine.plates.append(case.plate_text)
            note = f"bola-note-{case.department}-{uuid.uuid4().hex[:12]}"
            workflow.apply(session, case, Command(Action.NOTE, reason=note), dispatcher)
            mine.notes.append(note)
            for item in session.scalars(
                select(CaseEvidence).where(CaseEvidence.case_id == case.id)
            ):
                mine.evidence.append(item.sha256)
                if item.redacted_sha256:
                    mine.evidence.append(item.redacted_sha256)
            notification = Notification(
                channel="webhook",
                department=case.department,
                target="http://127.0.0.1:9/hook",
                event_type="case.dispatched",
                case_id=case.id,
                payload={"case_id": case.id},
                status="failed",
                attempts=3,
                next_attempt_at=now,
                last_error="connection refused",
                created_at=now,
            )
            check = VerificationRequest(
                request_id=uuid.uuid4(),
                case_id=case.id,
                site_id=case.site_id,
                gateway_id=case.gateway_id,
                camera_id=case.camera_id,
                zone_id=case.zone_id,
                requested_at=now,
            )
            session.add_all([notification, check])
            session.flush()
            mine.notification_ids.append(notification.id)
            mine.verification_ids.append(str(check.request_id))
        session.commit()
    own, foreign = objects[OWN], objects[FOREIGN]
    # The generated frames are flat colours: a frame can repeat in both departments' cases,
    # and then either may fetch it. Only the other department's own frames must be refused.
    shared = set(own.evidence) & set(foreign.evidence)
    foreign.evidence = [sha for sha in foreign.evidence if sha not in shared]
    own.evidence = [sha for sha in own.evidence if sha not in shared]
    assert len(own.case_ids) == 2
    assert len(foreign.case_ids) == 3
    assert len(foreign.evidence) >= 6  # 3 cases x 2 frames x (original + redacted), less shared
    return own, foreign


def _login(http: httpx.Client, username: str) -> dict[str, str]:
    response = http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    assert "cw_session=" in response.headers["set-cookie"]
    return {"Cookie": f"cw_session={response.json()['token']}", **CSRF}


def _bearer(token: ApiToken) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.token.get_secret_value()}", **CSRF}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    start_from_migrated_template(f"sqlite:///{tmp_path / 'bola.db'}")
    server = build_server(_config(tmp_path))
    with server.session_factory() as session:  # development: dev_users were created at build
        assert session.scalar(select(func.count()).select_from(User)) == len(ACCOUNTS)
    own, foreign = _fill_database(server)
    port = free_port()
    api = BackgroundApi(server.app, "127.0.0.1", port)
    api.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base_url, timeout=httpx.Timeout(20.0, read=3.0)) as http:
            scoped = [
                Principal("worker (session)", Role.WORKER, _login(http, "bola-worker")),
                Principal("supervisor (session)", Role.SUPERVISOR, _login(http, "bola-supervisor")),
                Principal("worker (config token)", Role.WORKER, _bearer(TOKENS[1])),
            ]
            broad = [
                Principal("dispatcher", Role.DISPATCHER, _login(http, "bola-dispatcher")),
                Principal("admin", Role.ADMIN, _login(http, "bola-admin")),
                Principal("integration", Role.INTEGRATION, _bearer(TOKENS[0])),
            ]
            yield World(server, base_url, own, foreign, scoped, broad, http)
    finally:
        api.stop()
        server.stop()


def _snapshot(world: World) -> dict[str, Any]:
    """Everything a probe could change."""
    with world.server.session_factory() as session:
        cases = {
            case.id: (case.state, case.department, case.updated_at, case.duplicate_of)
            for case in session.scalars(select(Case))
        }
        return {
            "cases": cases,
            "transitions": session.scalar(select(func.count()).select_from(CaseTransition)),
            "evidence": session.scalar(select(func.count()).select_from(CaseEvidence)),
            "notifications": sorted(
                (n.id, n.status, n.attempts) for n in session.scalars(select(Notification))
            ),
            "checks": sorted(
                (str(v.request_id), v.answered_at is None)
                for v in session.scalars(select(VerificationRequest))
            ),
            "users": sorted(
                (u.username, u.active, u.password_hash) for u in session.scalars(select(User))
            ),
        }


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)
    covered: list[str] = field(default_factory=list)
    not_object: list[str] = field(default_factory=list)
    serves_nobody: list[str] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.failures.append(message)


def _variants(
    endpoint: Endpoint, world: World, target: Department
) -> Iterator[tuple[str, dict[str, str]]]:
    """(what, path values) with the object parameters naming ``target``'s objects: each of its
    objects in turn, and for a route with several, one foreign object among the caller's own."""
    objects = [p for p in endpoint.params if p in OBJECT_PARAMS]
    neutral = {p: NOT_OBJECT_PARAMS[p][1] for p in endpoint.params if p in NOT_OBJECT_PARAMS}
    own = {p: OBJECT_PARAMS[p](world.own)[0] for p in objects}
    lists = {p: OBJECT_PARAMS[p](world.of(target)) for p in objects}
    for index in range(max(len(values) for values in lists.values())):
        values = {p: lists[p][index % len(lists[p])] for p in objects}
        yield f"{target} objects {values}", {**neutral, **values}
    if len(objects) > 1 and target is not OWN:
        for p in objects:
            yield f"own objects but a {target} {p}", {**neutral, **own, p: lists[p][0]}


def _probe_object_routes(
    world: World, endpoints: list[Endpoint], maker: RequestMaker, report: Report
) -> None:
    for endpoint in endpoints:
        if not any(p in OBJECT_PARAMS for p in endpoint.params) or endpoint.websocket:
            if endpoint.params:
                report.not_object.append(endpoint.name)
            continue
        report.covered.append(endpoint.name)
        kwargs = maker.kwargs(endpoint)
        unsafe = endpoint.method in UNSAFE_METHODS
        serves_nobody = False
        if not unsafe:  # e.g. Open311's .xml forms: 404 for everyone, the dispatcher included
            own_values = next(_variants(endpoint, world, OWN))[1]
            answer = world.request(
                world.broad[0], endpoint.method, _fill(endpoint.path, own_values)
            )
            serves_nobody = answer.status_code == 404
            if serves_nobody:
                report.serves_nobody.append(endpoint.name)
        for who in world.scoped:
            for what, values in _variants(endpoint, world, FOREIGN):
                url = _fill(endpoint.path, values)
                response = world.request(who, endpoint.method, url, **kwargs)
                report.check(
                    response.status_code == 404,
                    f"{endpoint.name} as {who.name} with {what}: {response.status_code} "
                    f"(expected 404) {response.text[:200]!r}",
                )
            if not unsafe and not serves_nobody:  # the control: its own objects are there
                values = next(_variants(endpoint, world, OWN))[1]
                response = world.request(who, endpoint.method, _fill(endpoint.path, values))
                report.check(
                    response.status_code != 404,
                    f"{endpoint.name} as {who.name} with its own {values}: 404, so the 404 for "
                    "the other department proves nothing",
                )
        for who in [] if serves_nobody else world.broad:
            statuses = {}
            for department in (OWN, FOREIGN):
                values = next(_variants(endpoint, world, department))[1]
                if unsafe and who.role is not Role.INTEGRATION:
                    continue  # the dispatcher and admin may change things; not probed here
                response = world.request(
                    who, endpoint.method, _fill(endpoint.path, values), **kwargs
                )
                statuses[department] = response.status_code
                if unsafe:
                    report.check(
                        response.status_code == 403,
                        f"{endpoint.name} as integration on {department}: "
                        f"{response.status_code} (expected 403: integrations only read)",
                    )
                    continue
                expected_200 = endpoint.path.startswith(SHARED_READS) or (
                    who.role is Role.DISPATCHER and endpoint.path.startswith("/api/")
                )
                report.check(
                    response.status_code == 200
                    if expected_200
                    else response.status_code not in (404,) and response.status_code < 500,
                    f"{endpoint.name} as {who.name} on {department}'s {values}: "
                    f"{response.status_code} {response.text[:200]!r}",
                )
            report.check(
                len(set(statuses.values())) <= 1,
                f"{endpoint.name} as {who.name}: departments answered differently {statuses}",
            )


_CASE_URL = re.compile(r"/cases/(\d+)\b")
_ID_KEYS = ("case_id", "service_request_id", "duplicate_of")


def _case_ids_in_json(value: Any, found: set[int]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _ID_KEYS and isinstance(item, int | str) and str(item).isdigit():
                found.add(int(item))
            case_like = "state" in value or "violation_id" in value or "kind" in value
            if key == "id" and case_like and isinstance(item, int):
                found.add(item)
            _case_ids_in_json(item, found)
    elif isinstance(value, list):
        for item in value:
            _case_ids_in_json(item, found)


def case_ids_in(body: str, content_type: str) -> set[int]:
    """Case ids a response names: in case-like JSON objects, SSE data and case URLs."""
    found = {int(number) for number in _CASE_URL.findall(body)}
    documents: list[str] = []
    if "json" in content_type:
        documents.append(body)
    elif "event-stream" in content_type:
        documents += [line[5:].strip() for line in body.splitlines() if line.startswith("data:")]
    for document in documents:
        try:
            _case_ids_in_json(json.loads(document), found)
        except ValueError:
            continue
    return found


def _live_notes(world: World, marker: str) -> dict[Department, str]:
    """A dispatcher's note on one case of each department, written while a feed is open."""
    notes = {}
    with world.server.session_factory() as session:
        for department in (OWN, FOREIGN):
            case = session.get(Case, world.of(department).case_ids[-1])
            assert case is not None
            note = f"{marker}-{department}-{uuid.uuid4().hex[:8]}"
            Workflow().apply(
                session,
                case,
                Command(Action.NOTE, reason=note),
                Actor("bola-dispatcher", Role.DISPATCHER),
            )
            notes[department] = note
        session.commit()
    return notes


def _read(world: World, who: Principal, path: str, params: dict[str, str]) -> tuple[str, str]:
    """The whole body, or for an event stream what arrives in a few seconds, with a note on
    each department's case written while it is open (the stream's live path)."""
    headers = {**who.headers, "Last-Event-ID": "0"}  # a feed replays from the start
    world.http.cookies.clear()
    with world.http.stream("GET", path, params=params, headers=headers) as response:
        content_type = response.headers.get("content-type", "")
        if "event-stream" not in content_type:
            return response.read().decode(errors="replace"), content_type
        notes = _live_notes(world, "bola-live")
        body = ""
        deadline = time.monotonic() + 5.0
        try:
            for chunk in response.iter_text():
                body += chunk
                if notes[OWN] in body or time.monotonic() > deadline:
                    break
        except httpx.ReadTimeout:
            pass
        if notes[OWN] not in body:  # the control: the stream carries the caller's own changes
            body += f"\n[bola: own live note {notes[OWN]} never arrived]"
        return body, content_type


def _probe_lists(
    world: World, endpoints: list[Endpoint], maker: RequestMaker, report: Report
) -> dict[str, set[str]]:
    """Every GET without a path parameter, read by each scoped caller; returns, per route, what
    of the other department the dispatcher sees there (the control)."""
    seen_by_dispatcher: dict[str, set[str]] = {}
    for endpoint in endpoints:
        if endpoint.method != "GET" or endpoint.params or endpoint.websocket:
            continue
        report.lists.append(endpoint.path)
        params = {str(k): str(v) for k, v in maker.kwargs(endpoint).get("params", {}).items()}
        asks = [params]
        query = maker.query_params(endpoint)
        if "department" in query:
            asks.append({**params, "department": FOREIGN.value})
        for name in sorted(query & OBJECT_PARAMS.keys()):  # e.g. Open311's service_request_id
            values = OBJECT_PARAMS[name](world.foreign)
            asks += [{**params, name: values[0]}, {**params, name: ",".join(values)}]
        for who in world.scoped:
            for ask in asks:
                body, content_type = _read(world, who, endpoint.path, ask)
                leaked = [m for m in world.foreign.markers() if m in body]
                if "live note" in body and "never arrived" in body:
                    leaked.append("(the control failed: its own live note never arrived)")
                ids = case_ids_in(body, content_type) & set(world.foreign.case_ids)
                report.check(
                    not leaked and not ids,
                    f"GET {endpoint.path} {ask} as {who.name} shows {FOREIGN}'s "
                    f"case ids {sorted(ids)} / markers {leaked}",
                )
        body, content_type = _read(world, world.broad[0], endpoint.path, params)
        shown = {m for m in world.foreign.markers() if m in body}
        shown |= {
            f"case {i}" for i in case_ids_in(body, content_type) & set(world.foreign.case_ids)
        }
        seen_by_dispatcher[endpoint.path] = shown
    return seen_by_dispatcher


def test_no_department_reaches_another_departments_objects(world: World) -> None:
    app: FastAPI = world.server.app
    endpoints = sorted(set(enumerate_endpoints(app.routes)), key=lambda e: (e.path, e.method))
    assert not unknown_params(endpoints), "\n".join(unknown_params(endpoints))
    maker = RequestMaker(app.openapi())
    report = Report()
    before = _snapshot(world)
    _probe_object_routes(world, endpoints, maker, report)
    after = _snapshot(world)
    for key in before:
        report.check(before[key] == after[key], f"a refused probe changed {key}")
    seen = _probe_lists(world, endpoints, maker, report)

    # The probes must have reached the routes that matter, or they prove nothing.
    for name in (
        "GET /api/v1/cases/{case_id}",
        "POST /api/v1/cases/{case_id}/actions",
        "GET /api/v1/evidence/{sha256}",
    ):
        assert name in report.covered, f"{name} was not probed: {report.covered}"
    # Lists that show the other department's cases to the dispatcher: their check means something.
    for path in CONTROL_LISTS:
        if path in seen or path == "/api/v1/cases":
            assert seen[path], f"the dispatcher's {path} shows nothing of {FOREIGN}"
    print("\nBOLA: object routes probed:\n  " + "\n  ".join(report.covered))
    print(
        "BOLA: routes whose parameters name no department's object:\n  "
        + "\n  ".join(report.not_object)
    )
    print(
        "BOLA: object routes that answer 404 to everyone:\n  " + "\n  ".join(report.serves_nobody)
    )
    print(
        "BOLA: lists and pages read (* = the dispatcher sees the other department there):\n  "
        + "\n  ".join(f"{'*' if seen[p] else ' '} {p}" for p in report.lists)
    )
    assert not report.failures, f"{len(report.failures)} BOLA problems:\n" + "\n".join(
        report.failures
    )


def test_a_route_with_an_unknown_object_parameter_fails_the_test() -> None:
    """The enumeration the BOLA test relies on, on a small app of its own."""
    app = FastAPI()

    @app.get("/api/v1/widgets/{widget_id}")
    def widget(widget_id: int) -> int:
        return widget_id

    @app.post("/api/v1/cases/{case_id}/widgets")
    def case_widget(case_id: int) -> int:
        return case_id

    sub = FastAPI()

    @sub.get("/requests/{service_request_id}.json")
    def mounted(service_request_id: str) -> str:
        return service_request_id

    app.mount("/open311/v2", sub)
    endpoints = list(enumerate_endpoints(app.routes))
    names = {endpoint.name for endpoint in endpoints}
    assert {
        "GET /api/v1/widgets/{widget_id}",
        "POST /api/v1/cases/{case_id}/widgets",
        "GET /open311/v2/requests/{service_request_id}.json",
    } <= names
    [problem] = unknown_params(endpoints)
    assert problem.startswith("GET /api/v1/widgets/{widget_id}: path parameter {widget_id}")


def test_case_ids_are_found_in_json_feeds_and_links() -> None:
    assert case_ids_in('[{"id": 7, "state": "new"}, {"id": 8}]', "application/json") == {7}
    assert case_ids_in('id: 3\ndata: {"case_id": 12}\n\n', "text/event-stream") == {12}
    assert case_ids_in('<a href="/worker/cases/41">', "text/html") == {41}
    assert case_ids_in('[{"service_request_id": "5"}]', "application/json") == {5}


def test_routes_over_many_cases_or_a_department(world: World) -> None:
    """The routes that take many cases at once: bulk names them in its body (no path parameter
    for the probe above to fill), an export is a file, not JSON; and another department's
    people, whom a department's roles may not assign cases to."""
    before = _snapshot(world)
    own, foreign = world.own.case_ids, world.foreign.case_ids
    for who in world.scoped:
        people = world.request(who, "GET", f"/api/v1/departments/{FOREIGN.value}/people")
        assert people.status_code in (403, 404), people.text
        for action in ({"action": "accept"}, {"action": "note", "reason": "bola bulk"}):
            answer = world.request(
                who,
                "POST",
                "/api/v1/cases/bulk",
                json={"case_ids": [*foreign, own[0]], **action},
                headers=CSRF,
            )
            assert answer.status_code == 200, answer.text
            refused = {r["case_id"]: r for r in answer.json() if not r["ok"]}
            for case_id in foreign:
                assert refused[case_id]["code"] == "case_not_found", answer.text
            assert [r["case_id"] for r in answer.json() if r["ok"]] in ([], [own[0]])
        for path in ("/api/v1/cases/export.csv", "/api/v1/cases/export.xlsx"):
            for params in ({}, {"department": FOREIGN.value}, {"q": f"#{foreign[0]}"}):
                answer = world.request(who, "GET", path, params={**params, "lang": "en"})
                assert answer.status_code == 200, answer.text
                body = _export_text(path, answer.content)
                leaked = [m for m in world.foreign.markers() if m in body]
                assert not leaked, f"{path} {params} as {who.name}: {leaked}"
                assert not set(_first_column(path, answer.content)) & set(foreign)
    after = _snapshot(world)
    assert [before["cases"][i] for i in foreign] == [after["cases"][i] for i in foreign]
    dispatcher = world.broad[0]
    whole = world.request(dispatcher, "GET", "/api/v1/cases/export.csv")
    assert set(foreign) <= set(_first_column("/api/v1/cases/export.csv", whole.content))


def _export_text(path: str, content: bytes) -> str:
    if path.endswith(".csv"):
        return content.decode("utf-8-sig")
    from io import BytesIO

    from openpyxl import load_workbook  # type: ignore[import-untyped]

    sheet = load_workbook(BytesIO(content)).active
    return "\n".join(",".join(str(v) for v in row) for row in sheet.iter_rows(values_only=True))


def _first_column(path: str, content: bytes) -> list[int]:
    lines = _export_text(path, content).splitlines()[1:]
    return [int(line.split(",")[0]) for line in lines if line]


# --- the council role and 小事协商 ------------------------------------------------------------


def _consultation_at(world: World, site_id: str, building: str) -> tuple[int, int, int]:
    """A resident's community-tier report at ``site_id``: (case id, consultation id, the id of
    a proposal property management made in it)."""
    intake = world.server.app.state.api.intake
    assert intake is not None
    property_worker = Actor("bola-property", Role.WORKER, Department.PROPERTY_MANAGEMENT)
    with world.server.session_factory() as session:
        receipt = submit_report(
            session,
            ReportSubmission(
                category=ViolationKind.GARBAGE,
                site_id=site_id,
                building=building,
                description=f"bola-consultation-{site_id}",
                client_address=f"bola-{site_id}",
            ),
            deps=intake,
        )
        session.flush()
        consultation_id = session.scalars(
            select(Consultation.id).where(Consultation.case_id == receipt.case_id)
        ).one()
        proposal = consultation.propose(
            session, property_worker, consultation_id, f"bola-proposal-{site_id}", utcnow()
        )
        session.commit()
        return receipt.case_id, consultation_id, proposal.id


def _consultation_rows(world: World) -> tuple[Any, ...]:
    with world.server.session_factory() as session:
        return (
            sorted((c.id, c.state, c.outcome) for c in session.scalars(select(Consultation))),
            sorted((p.id, p.body) for p in session.scalars(select(ConsultationPost))),
            sorted(
                (v.proposal_id, v.voter, v.choice)
                for v in session.scalars(select(ConsultationVote))
            ),
            session.scalar(select(func.count()).select_from(CaseTransition)),
        )


def test_consultations_reach_only_their_site_and_property_management(world: World) -> None:
    """Every route naming a consultation (enumerated, as above): a council member of another
    site, a camera department's people and the integration get 404 (the integration may get 403
    on a change) and change nothing; the site's council, property management and the dispatcher
    read it. A proposal of another consultation is 404 too. The council role reads every list
    and page without a path parameter and sees no camera department's case in any."""
    case_a, consultation_a, proposal_a = _consultation_at(world, SITE, "1号楼")
    _case_b, consultation_b, proposal_b = _consultation_at(world, OTHER_SITE, "1号楼")
    http = world.http
    council = Principal("council (session)", Role.COUNCIL, _login(http, "bola-council"))
    council_b = Principal("other site's council", Role.COUNCIL, _login(http, "bola-council-b"))
    property_worker = Principal("property", Role.WORKER, _login(http, "bola-property"))
    outsiders = [council_b, *world.scoped, world.broad[2]]  # integration last
    app: FastAPI = world.server.app
    endpoints = sorted(set(enumerate_endpoints(app.routes)), key=lambda e: (e.path, e.method))
    named = [e for e in endpoints if "consultation_id" in e.params]
    assert {e.name for e in named} >= {
        "GET /api/v1/consultations/{consultation_id}",
        "POST /api/v1/consultations/{consultation_id}/comments",
        "POST /api/v1/consultations/{consultation_id}/proposals",
        "POST /api/v1/consultations/{consultation_id}/proposals/{proposal_id}/votes",
        "GET /council/{consultation_id}",
    }
    maker = RequestMaker(app.openapi())
    before = _consultation_rows(world)
    failures: list[str] = []
    for endpoint in named:
        kwargs = maker.kwargs(endpoint) if endpoint.path.startswith("/api/") else {}
        if endpoint.name.endswith("/votes"):
            kwargs = {"json": {"choice": "for"}}
        unsafe = endpoint.method in UNSAFE_METHODS
        url = _fill(
            endpoint.path, {"consultation_id": str(consultation_a), "proposal_id": str(proposal_a)}
        )
        for who in outsiders:
            answer = world.request(who, endpoint.method, url, **kwargs)
            allowed = {404, 403} if unsafe and who.role is Role.INTEGRATION else {404}
            if answer.status_code not in allowed:
                failures.append(f"{endpoint.name} as {who.name}: {answer.status_code}")
        if "proposal_id" in endpoint.params:  # own consultation, another site's proposal
            crossed = _fill(
                endpoint.path,
                {"consultation_id": str(consultation_a), "proposal_id": str(proposal_b)},
            )
            answer = world.request(council, endpoint.method, crossed, **kwargs)
            if answer.status_code != 404:
                failures.append(f"{endpoint.name} with {consultation_b}'s proposal: {answer}")
        if not unsafe:
            for who in (council, property_worker, world.broad[0], world.broad[1]):
                answer = world.request(who, endpoint.method, url)
                if answer.status_code != 200:
                    failures.append(f"{endpoint.name} as {who.name}: {answer.status_code}")
    assert not failures, "\n".join(failures)
    assert _consultation_rows(world) == before, "a refused probe changed a consultation"
    # the lists: the other site's council sees nothing of site A's consultation
    for path in ("/api/v1/consultations", "/council"):
        body = world.request(council_b, "GET", path).text
        assert f"bola-consultation-{SITE}" not in body
        assert f'/council/{consultation_a}"' not in body
        assert f'/council/{consultation_b}"' in body or path.startswith("/api/")
    listed = world.request(council, "GET", "/api/v1/consultations").json()
    assert [item["case_id"] for item in listed] == [case_a]
    # every list and page without a path parameter, read by a council member: no camera case
    camera_cases = set(world.own.case_ids) | set(world.foreign.case_ids)
    markers = world.own.markers() + world.foreign.markers()
    for endpoint in endpoints:
        if endpoint.method != "GET" or endpoint.params or endpoint.websocket:
            continue
        params = {str(k): str(v) for k, v in maker.kwargs(endpoint).get("params", {}).items()}
        body, content_type = _read(world, council, endpoint.path, params)
        ids = case_ids_in(body, content_type) & camera_cases
        if endpoint.path == "/api/v1/consultations":  # its items' "id" is a consultation's;
            ids -= {consultation_a}  # their case ids are exactly [case_a], asserted above
        leaked = [m for m in markers if m in body]
        assert not ids, f"GET {endpoint.path} as council: case ids {sorted(ids)}"
        assert not leaked, f"GET {endpoint.path} as council: {leaked}"
    # and a camera case by its id: 404 (or 403) on every route naming a case
    for endpoint in endpoints:
        if endpoint.params != ("case_id",) or endpoint.websocket:
            continue
        kwargs = maker.kwargs(endpoint)
        for case_id in (world.own.case_ids[0], world.foreign.case_ids[0]):
            url = _fill(endpoint.path, {"case_id": str(case_id)})
            answer = world.request(council, endpoint.method, url, **kwargs)
            assert answer.status_code in (403, 404), f"{endpoint.name} as council: {answer}"


# --- the rates, the tracking routes and every role -------------------------------------------


def _everyone(world: World) -> list[Principal]:
    """Every role the server knows: the scoped, the broad, the councils and property management."""
    http = world.http
    return [
        *world.scoped,
        *world.broad,
        Principal("council (session)", Role.COUNCIL, _login(http, "bola-council")),
        Principal("other site's council", Role.COUNCIL, _login(http, "bola-council-b")),
        Principal("property (session)", Role.WORKER, _login(http, "bola-property")),
    ]


def test_the_rates_count_only_the_cases_each_role_may_see(world: World) -> None:
    """/api/v1/rates and /console/rates name departments, not cases, so the list probe above
    cannot see a leak: here each role's rows are exactly the departments of the cases it may
    see (a department's people: their own; a council: its site's community tier; the command
    centre and integrations: all), per department and per site, and the page likewise."""
    _consultation_at(world, SITE, "3号楼")  # a community-tier case: property management's
    everyone = _everyone(world)
    pm = Department.PROPERTY_MANAGEMENT.value
    every = {OWN.value, FOREIGN.value, pm}
    expected: dict[str, set[str]] = {
        **{who.name: {OWN.value} for who in world.scoped},
        **{who.name: every for who in world.broad},
        "council (session)": {pm},
        "other site's council": set(),
        "property (session)": {pm},
    }
    failures: list[str] = []
    for who in everyone:
        for by in ("department", "site"):
            answer = world.request(who, "GET", "/api/v1/rates", params={"period": "week", "by": by})
            if answer.status_code != 200:
                failures.append(f"GET /api/v1/rates by {by} as {who.name}: {answer.status_code}")
                continue
            body = answer.json()
            if by == "department":
                shown = {row["department"] for row in body["rows"]}
                if shown != expected[who.name]:
                    failures.append(f"/api/v1/rates as {who.name}: {sorted(shown)}")
                dispatched = body["total"]["dispatched"]
            elif body["total"]["dispatched"] != dispatched:  # the same cases, grouped by site
                failures.append(f"/api/v1/rates by site as {who.name}: {body['total']}")
        page = world.request(who, "GET", "/console/rates", params={"lang": "en"})
        if who.role in (Role.COUNCIL, Role.INTEGRATION):
            if page.status_code == 200 and "data-department=" in page.text:
                failures.append(f"/console/rates as {who.name} shows rates")
            continue
        shown = set(re.findall(r'data-department="([^"]+)"', page.text))
        if page.status_code != 200 or not shown <= expected[who.name] or not shown:
            failures.append(f"/console/rates as {who.name}: {page.status_code} {sorted(shown)}")
    assert not failures, "\n".join(failures)


def test_the_tracking_routes_give_no_role_more_than_the_code_does(world: World) -> None:
    """/report/t/{code} and its rate and mediate forms are keyed by the resident's code alone:
    every role (and nobody) reads the same public page (never a note), an unknown code is 404
    to all, and a signed-in role's POST without the page's own CSRF cookie changes nothing."""
    case_id, _cid, _pid = _consultation_at(world, SITE, "5号楼")
    note = f"bola-tracking-note-{uuid.uuid4().hex[:8]}"
    with world.server.session_factory() as session:
        case = session.get_one(Case, case_id)
        Workflow().apply(
            session,
            case,
            Command(Action.NOTE, reason=note),
            Actor("bola-dispatcher", Role.DISPATCHER),
        )
        code = session.scalars(
            select(ResidentReport.tracking_code).where(ResidentReport.case_id == case_id)
        ).one()
        session.commit()
    app: FastAPI = world.server.app
    tracking = [
        e
        for e in enumerate_endpoints(app.routes)
        if e.params == ("code",) and e.path.startswith("/report/t/")
    ]
    assert {e.name for e in tracking} >= {
        "GET /report/t/{code}",
        "POST /report/t/{code}/rate",
        "POST /report/t/{code}/mediate",
    }
    anonymous = Principal("nobody", Role.INTEGRATION, {})
    before = _snapshot(world), _consultation_rows(world)
    failures: list[str] = []
    for who in [anonymous, *_everyone(world)]:
        # the lookups count per address (all callers here share 127.0.0.1): a fresh limit each
        with world.server.session_factory() as session:
            session.execute(delete(ReportLimitHit).where(ReportLimitHit.key_kind == "lookup"))
            session.commit()
        for endpoint in tracking:
            if endpoint.method == "GET":
                page = world.request(who, "GET", _fill(endpoint.path, {"code": code}))
                if page.status_code != 200 or note in page.text or "bola-note" in page.text:
                    failures.append(f"{endpoint.name} as {who.name}: {page.status_code}")
                unknown = world.request(who, "GET", _fill(endpoint.path, {"code": "ABCDEFGHJK"}))
                if unknown.status_code != 404:
                    failures.append(f"{endpoint.name} unknown code as {who.name}: {unknown}")
                continue
            data = {"rating": "dissatisfied", "comment": "bola", "csrf": "forged"}
            answer = world.request(
                who, endpoint.method, _fill(endpoint.path, {"code": code}), data=data
            )
            if answer.status_code < 400:
                failures.append(f"{endpoint.name} as {who.name}: {answer.status_code}")
    assert not failures, "\n".join(failures)
    assert (_snapshot(world), _consultation_rows(world)) == before, "a tracking probe changed"


# --- the vehicle registry (issue 13) ---------------------------------------------------------


def test_the_registry_shows_names_and_phones_only_to_who_needs_them(world: World) -> None:
    """Property management and dispatchers read and change the registry whole; admins and the
    camera departments read it masked and change nothing; integrations and councils get none
    of it (403, or their home page); the gateways' versions are no camera department's."""
    from dispatch.registry import Category, RegistryService, VehicleIn

    name, phone = "登记车主", "13912345678"
    entry = RegistryService(
        world.server.session_factory, world.server.app.state.api.registry, None
    ).create(
        VehicleIn(
            site_id=SITE,
            plate="沪K24680",
            category=Category.RESIDENT,
            owner_name=name,
            phone=phone,
        ),
        "bola",
    )
    whole = {Role.DISPATCHER}
    failures: list[str] = []
    for who in _everyone(world):
        may_edit = who.role in whole or who.name.startswith("property")
        reads = world.request(who, "GET", "/api/v1/registry/vehicles")
        page = world.request(who, "GET", "/console/registry", follow_redirects=False)
        export = world.request(who, "GET", f"/api/v1/registry/export.csv?site_id={SITE}")
        gateways = world.request(who, "GET", "/api/v1/exemptions/gateways")
        change = world.request(
            who,
            "PUT",
            f"/api/v1/registry/vehicles/{entry.id}",
            json={
                "site_id": SITE,
                "plate": "沪K24680",
                "category": "resident",
                "owner_name": name,
                "phone": phone,
            },
            headers=CSRF,
        )
        if may_edit:
            ok = (
                reads.status_code == 200
                and name in reads.text
                and phone in reads.text
                and page.status_code == 200
                and export.status_code == 200
                and gateways.status_code == 200
                and change.status_code == 200
            )
        elif who.role in (Role.INTEGRATION, Role.COUNCIL):
            ok = (
                reads.status_code == 403
                and page.status_code == 303
                and export.status_code == 403
                and gateways.status_code == 403
                and change.status_code == 403
            )
        else:  # admins and the camera departments: masked, no changes, no export
            ok = (
                reads.status_code == 200
                and name not in reads.text
                and phone not in reads.text
                and "139****5678" in reads.text
                and page.status_code == 200
                and name not in page.text
                and phone not in page.text
                and export.status_code == 403
                and change.status_code == 403
                and gateways.status_code == (200 if who.role is Role.ADMIN else 403)
            )
        if not ok:
            failures.append(
                f"{who.name}: read {reads.status_code}, page {page.status_code}, export "
                f"{export.status_code}, gateways {gateways.status_code}, change "
                f"{change.status_code}"
            )
    assert not failures, "\n".join(failures)
