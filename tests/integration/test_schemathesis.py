"""Schemathesis against the app's own OpenAPI document, in process, with every check enabled.

The app is the one the composition root builds (civicwatch.server.build_server: every route
and part), started on a real private Mosquitto so it is ready. Its real SQLite database holds
cases that the server's own ingest stored from generated events (tests/factories.py:
solid-colour JPEGs, with redacted copies, on both registered sites), plus camera and gateway
status. Generated path ids are mapped onto those cases and evidence hashes, so the fuzzer
reaches real rows and not only 404s. Every Schemathesis phase runs (examples, coverage,
fuzzing, stateful links), once as a dispatcher (sees everything) and once as a department
worker (sees one department). Deterministic: a fixed seed and ``deterministic`` generation;
``MAX_EXAMPLES`` keeps both runs to about a minute on two cores.

New routes are picked up as they appear in the OpenAPI document; only endless event streams
are left out (an in-process client would wait forever for their end).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from schemathesis.config import SchemathesisConfig
from schemathesis.engine.events import (
    EngineEvent,
    FatalError,
    FuzzScenarioFinished,
    NonFatalError,
    ScenarioFinished,
)
from schemathesis.hooks import HookContext
from sqlalchemy import select

from civicwatch.config import CivicwatchConfig, ServerSettings
from civicwatch.server import Server, build_server
from contracts.acks import AckOutcome
from contracts.events import Phase, ViolationKind
from contracts.sites import SiteRegistry
from contracts.status import CameraHealth, CameraProblem, CameraStatus, GatewayState, GatewayStatus
from dispatch.config import ApiSettings, ApiToken, Department, Role
from ingest.config import IngestSettings
from ingest.handler import ViolationHandler
from storage.tables import Case as CaseRow
from storage.tables import CaseEvidence
from tests.conftest import MosquittoProcess
from tests.factories import (
    CAMERA,
    FIRE_LANE_ZONE,
    GATEWAY,
    OTHER_CAMERA,
    OTHER_GATEWAY,
    OTHER_SITE,
    SITE,
    T0,
    EventFactory,
    make_registry,
)
from tests.unit.ingest.helpers import with_redacted_copies

SEED = 20260505
MAX_EXAMPLES = 20
TOKENS = {
    "dispatcher": ApiToken(
        name="desk", token=SecretStr("schemathesis-dispatcher-01"), role=Role.DISPATCHER
    ),
    "worker": ApiToken(
        name="officer",
        token=SecretStr("schemathesis-worker-0001"),
        role=Role.WORKER,
        department=Department.LAW_ENFORCEMENT,
    ),
}
# Endless streams (the live feed): an in-process client would wait for their end forever.
STREAM_MEDIA_TYPE = "text/event-stream"
KNOWN_STREAMS = {"/api/v1/feed"}
# Schema-valid input that a rule beyond the schema may refuse with a documented 4xx: an action's
# required reason or target (422), an after-photo that is not an image (415/422), Open311's
# free-form GeoReport parameters (its spec answers bad values with 400).
# A case list's cursor is opaque: a generated one is refused as garbled (400). A response
# template's name and body refuse control characters (422). A permit must end after it starts
# (422), on a site and zone the registry knows (404).
BUSINESS_RULES = [
    r"^/api/v1/templates",
    r"^/api/v1/cases(/export\.(csv|xlsx))?$",
    r"^/api/v1/cases/\{case_id\}/evidence$",
    r"^/api/v1/cases/\{case_id\}/actions$",
    r"^/api/v1/cases/\{case_id\}/attachments$",
    r"^/open311/",
    r"^/api/v1/exemptions/permits",
    # a warning stage too: it ends after it starts (422), on a known site and zone (404)
    r"^/api/v1/exemptions/warning-stages",
    # the registry: a phone must be one (normalise_phone), a name no formula, a CSV body a
    # well-formed import (422 with its row report; 413 over the limits)
    r"^/api/v1/registry/",
    # a day outside 2000-2100 is refused (422); a date's bounds do not reach the JSON schema
    r"^/api/v1/rates$",
]
ACCEPTED_BY_RULE = ["2xx", "3xx", "400", "401", "403", "404", "409", "413", "415", "422", "429"]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Fixture:
    """The seeded database's ids, which generated path parameters are mapped onto."""

    def __init__(self, case_ids: list[int], evidence: list[str]) -> None:
        self.case_ids = case_ids
        self.evidence = evidence

    def aim(self, path_parameters: dict[str, Any] | None) -> dict[str, Any] | None:
        """Point generated ids at real rows (deterministically, from the generated value)."""
        if path_parameters is None:
            return None
        aimed = dict(path_parameters)
        for name, value in path_parameters.items():
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                # Some ids beyond the seeded ones stay, so 404s are exercised too.
                if value % 4:
                    aimed[name] = self.case_ids[value % len(self.case_ids)]
            elif isinstance(value, str) and _SHA256.match(value):
                digest = int(hashlib.sha256(value.encode()).hexdigest()[:8], 16)
                if digest % 4:
                    aimed[name] = self.evidence[digest % len(self.evidence)]
        return aimed


def _seed(server: Server, registry: SiteRegistry) -> Fixture:
    handler = ViolationHandler(server.service, registry, server.metrics, 1024 * 1024)
    edge = EventFactory()
    events = [
        with_redacted_copies(edge.event(Phase.OPENED)),
        with_redacted_copies(
            edge.event(Phase.OPENED, zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING)
        ),
        edge.event(Phase.OPENED),
    ]
    other = EventFactory(
        site_id=OTHER_SITE, gateway_id=OTHER_GATEWAY, camera_id=OTHER_CAMERA, next_seed=500
    )
    events.append(other.event(Phase.OPENED))
    for event in events:
        topic = edge.topic if event.camera_id == CAMERA else other.topic
        ack = handler.handle(topic, event.to_wire())
        assert ack is not None
        assert ack.outcome is AckOutcome.STORED, ack
    server.service.record_camera_status(
        CameraStatus(
            site_id=SITE,
            gateway_id=GATEWAY,
            camera_id=CAMERA,
            health=CameraHealth.DEGRADED,
            at=T0,
            problems=[CameraProblem.BLURRED],
        )
    )
    server.service.record_gateway_status(
        GatewayStatus(site_id=SITE, gateway_id=GATEWAY, state=GatewayState.ONLINE, at=T0)
    )
    with server.session_factory() as session:
        case_ids = list(session.scalars(select(CaseRow.id).order_by(CaseRow.id)))
        links = session.scalars(select(CaseEvidence)).all()
        evidence = sorted(
            {row.sha256 for row in links}
            | {row.redacted_sha256 for row in links if row.redacted_sha256}
        )
    assert len(case_ids) >= 3, case_ids
    return Fixture(case_ids, evidence)


def _streams(document: dict[str, Any]) -> set[str]:
    found = set(KNOWN_STREAMS)
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for response in operation.get("responses", {}).values():
                if STREAM_MEDIA_TYPE in (response.get("content") or {}):
                    found.add(path)
    return found


def _config(tmp_path: Path, broker: MosquittoProcess) -> CivicwatchConfig:
    return CivicwatchConfig(
        sites=make_registry().sites,
        broker=broker.settings,
        server=ServerSettings(
            database_url=f"sqlite:///{tmp_path / 'fuzz.db'}",
            ingest=IngestSettings(evidence_dir=tmp_path / "evidence"),
            api=ApiSettings(tokens=list(TOKENS.values())),
        ),
    )


def _bearer_auth(document: dict[str, Any], token: str) -> dict[str, Any]:
    """Schemathesis auth settings for every bearer scheme the document declares, so its auth
    checks know which credentials are the real ones."""
    schemes = document.get("components", {}).get("securitySchemes", {})
    return {
        name: {"bearer": token}
        for name, scheme in schemes.items()
        if scheme.get("type") == "http" and scheme.get("scheme", "").lower() == "bearer"
    }


def _run(role: str, tmp_path: Path, broker: MosquittoProcess) -> list[str]:
    """One whole Schemathesis run (every phase, every check) as ``role``; the failures found.

    The app is the one the composition root builds (every route, every part), started on a
    real broker so it is ready; the seed events go straight into the server's ingest service.
    """
    config = _config(tmp_path, broker)
    server = build_server(config)
    server.start()
    try:
        assert server.consumer.ready.wait(10), "ingest did not connect to the broker"
        fixture = _seed(server, config)
        token = TOKENS[role].token.get_secret_value()
        document = TestClient(server.app).get("/openapi.json").json()
        auth = _bearer_auth(document, token)
        assert auth, "the OpenAPI document declares no bearer scheme"
        settings = SchemathesisConfig.from_dict(
            {
                "seed": SEED,
                "auth": {"openapi": auth},
                "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
                "checks": {"enabled": True},
                "workers": 1,
                "operations": [
                    {
                        "include-path-regex": path,
                        "checks": {
                            "positive_data_acceptance": {"expected-statuses": ACCEPTED_BY_RULE}
                        },
                    }
                    for path in BUSINESS_RULES
                ],
            }
        )
        document_schema = schemathesis.openapi.from_asgi(
            "/openapi.json", server.app, config=settings
        )
        schema = document_schema.exclude(path=sorted(_streams(document_schema.raw_schema)))

        @schema.hook
        def map_path_parameters(
            _context: HookContext, path_parameters: dict[str, Any] | None
        ) -> dict[str, Any] | None:
            return fixture.aim(path_parameters)

        return _failures(schemathesis.engine.from_schema(schema).execute())
    finally:
        server.stop()


def _failures(events: Iterable[EngineEvent]) -> list[str]:
    failures: list[str] = []
    operations: set[str] = set()
    for event in events:
        if isinstance(event, ScenarioFinished | FuzzScenarioFinished):
            operations.add(event.recorder.label)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.failure_info is not None:
                        failure = check.failure_info.failure
                        failures.append(
                            f"{event.recorder.label}: {check.name}: {failure.title}\n"
                            f"{failure.message}\n{check.failure_info.code_sample}"
                        )
        elif isinstance(event, NonFatalError):
            failures.append(f"{event.label}: error: {event.info.format()}")
        elif isinstance(event, FatalError):
            failures.append(f"fatal: {event.exception!r}")
    assert operations, "Schemathesis tested no operation"
    return sorted(set(failures))


def test_api_as_dispatcher(tmp_path: Path, mosquitto: MosquittoProcess) -> None:
    failures = _run("dispatcher", tmp_path, mosquitto)
    assert not failures, "\n\n".join(failures)


def test_api_as_department_worker(tmp_path: Path, mosquitto: MosquittoProcess) -> None:
    failures = _run("worker", tmp_path, mosquitto)
    assert not failures, "\n\n".join(failures)
