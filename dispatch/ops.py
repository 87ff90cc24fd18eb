"""Operations: camera health metrics, readiness, and one log line (plus timing) per HTTP request.

``install_operations`` wires it into an app; the collectors read the database at scrape time, so
the figures are right after a restart and agree between server processes. It also documents
the answers every route can give (401, 404, 400) in the OpenAPI document and turns ids beyond
what the database holds into 422s instead of server errors.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.exc import DataError
from starlette.datastructures import MutableHeaders
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.sites import SiteRegistry
from contracts.status import CameraHealth, CameraProblem, GatewayState
from dispatch.logcontext import current_request_id
from storage.database import SessionFactory
from storage.tables import CameraStatusRow, GatewayStatusRow

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is kept only if it is short and plain, so it cannot forge or break a log line.
_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNKNOWN_HEALTH = "unknown"  # registered, but no status ever stored

# What keeps the server from being ready, one line each; an empty list means ready.
ReadinessCheck = Callable[[], list[str]]


def always_ready() -> list[str]:
    """The readiness check of an app with no background parts (tests, API-only processes)."""
    return []


class CameraHealthCollector(Collector):
    """Registered cameras by last reported health, and by current picture problem.

    A camera that never reported counts as ``unknown``; one whose gateway's last will says it is
    offline counts as ``offline`` whatever it said last, since it can no longer say otherwise.
    """

    def __init__(self, session_factory: SessionFactory, registry: SiteRegistry) -> None:
        self._sessions = session_factory
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        with self._sessions() as session:
            cameras = {row.camera_id: row for row in session.scalars(select(CameraStatusRow))}
            gateways = {
                row.gateway_id: row.state for row in session.scalars(select(GatewayStatusRow))
            }
        health_counts = dict.fromkeys([*(h.value for h in CameraHealth), UNKNOWN_HEALTH], 0)
        problem_counts = dict.fromkeys((p.value for p in CameraProblem), 0)
        for site in self._registry.sites:
            for gateway in site.gateways:
                gateway_offline = gateways.get(gateway.id) == GatewayState.OFFLINE.value
                for camera in gateway.cameras:
                    row = cameras.get(camera.id)
                    if gateway_offline:
                        health = CameraHealth.OFFLINE.value
                    else:
                        health = row.health if row is not None else UNKNOWN_HEALTH
                    health_counts[health] = health_counts.get(health, 0) + 1
                    for problem in row.problems if row is not None else []:
                        problem_counts[problem] = problem_counts.get(problem, 0) + 1
        cameras_gauge = GaugeMetricFamily(
            "civicwatch_cameras", "Registered cameras by last reported health", labels=["health"]
        )
        for health, count in health_counts.items():
            cameras_gauge.add_metric([health], count)
        problems_gauge = GaugeMetricFamily(
            "civicwatch_camera_problems",
            "Registered cameras with each picture problem (a camera may have several)",
            labels=["problem"],
        )
        for problem, count in problem_counts.items():
            problems_gauge.add_metric([problem], count)
        yield cameras_gauge
        yield problems_gauge


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/v1/cases/{case_id}``), never the raw path with
    ids in it; ``<unmatched>`` when no route matched, so a scan cannot flood log labels."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else "<unmatched>"


class RequestLogMiddleware:
    """Pure ASGI middleware (streaming responses such as SSE pass through untouched).

    Gives each request an id (the caller's ``X-Request-ID`` when acceptable, else a new one),
    returns it in ``X-Request-ID``, makes it visible to every log line written while serving
    the request, and when the response ends logs method, path template, status and duration and
    observes the duration histogram.
    """

    def __init__(self, app: ASGIApp, duration: Histogram) -> None:
        self.app = app
        self._duration = duration

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = current_request_id.set(request_id)
        started = time.perf_counter()
        status_code = 500  # what the client sees if the app fails before it answers

        async def send_with_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                if status_code == 405:
                    headers["Allow"] = ", ".join(_allowed_methods(scope))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            template = route_template(scope)
            self._duration.labels(scope["method"], template, str(status_code)).observe(elapsed)
            log.info(
                "%s %s %d %.1f ms",
                scope["method"],
                template,
                status_code,
                elapsed * 1000,
                extra={
                    "method": scope["method"],
                    "path": template,
                    "status": status_code,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            current_request_id.reset(token)


def _allowed_methods(scope: Scope) -> list[str]:
    # Starlette names only the first route that matched the path; a path served by several
    # routes (GET and POST /users) allows all of theirs. Ask every route, method by method.
    routes = getattr(scope.get("app"), "routes", [])
    allowed = []
    for method in ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT"):
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in routes):
            allowed.append(method)
    return allowed


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            presented = bytes(value).decode("latin-1")
            if _ACCEPTABLE_REQUEST_ID.match(presented):
                return presented
            break
    return uuid.uuid4().hex


def document_common_responses(document: dict[str, Any]) -> None:
    """Document, in an OpenAPI document, the answers every route can give besides its own:
    401 where a credential is required, 404 where the path names a record, 400 where a body is
    parsed (malformed JSON). Idempotent."""
    common = {
        "401": "no valid credential (bearer token or session)",
        "404": "no such record, or not one the caller may see",
        "400": "the body could not be parsed",
    }
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            applies = {
                "401": bool(operation.get("security", document.get("security"))),
                "404": "{" in path,
                "400": "requestBody" in operation,
            }
            for code, description in common.items():
                if applies[code]:
                    operation["responses"].setdefault(code, {"description": description})


def _out_of_range(_request: Request, _exc: Exception) -> Response:
    # An id or offset beyond what the database column holds (SQLite: OverflowError, PostgreSQL:
    # DataError): the client's input, so a validation error, not a server failure.
    issue = {"loc": ["request"], "msg": "a value is out of range", "type": "value_error"}
    return JSONResponse({"detail": [issue]}, status_code=422)


def install_operations(
    app: FastAPI, session_factory: SessionFactory, registry: SiteRegistry, scrape: CollectorRegistry
) -> None:
    """Add the camera health gauges and the request histogram to ``scrape`` (the app's own
    /metrics registry), the request-logging middleware and the out-of-range error handler to
    ``app``, and the common responses to its OpenAPI document."""
    app.add_exception_handler(OverflowError, _out_of_range)
    app.add_exception_handler(DataError, _out_of_range)
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        document = build_openapi()  # cached by FastAPI until the routes change
        document_common_responses(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
    scrape.register(CameraHealthCollector(session_factory, registry))
    duration = Histogram(
        "civicwatch_http_request_seconds",
        "HTTP requests by method, path template and status",
        ["method", "path", "status"],
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
        registry=scrape,
    )
    app.add_middleware(RequestLogMiddleware, duration=duration)
