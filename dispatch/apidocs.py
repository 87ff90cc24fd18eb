"""/docs: Swagger UI served from this server, never from a CDN.

A command centre's network is often offline; FastAPI's default page loads Swagger UI from a CDN
and stays blank there. The assets come from the swagger-ui-bundle-v2 wheel, and the page starts
Swagger UI from a script file (static/apidocs.js): the pages' Content-Security-Policy allows
scripts from this origin only, never inline ones.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from dispatch.errors import ApiProblem

DOCS_URL = "/docs"
# Only what the page uses: the bundle's demo index.html would point a browser at a petstore.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
}


def docs_page(title: str, openapi_url: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)}</title>
<link rel="stylesheet" href="{DOCS_URL}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{escape(openapi_url)}"></div>
<script src="{DOCS_URL}/swagger-ui-bundle.js"></script>
<script src="/static/apidocs.js"></script>
</body>
</html>
"""


def install_api_docs(app: FastAPI) -> None:
    """Serve /docs and its assets; create ``app`` with ``docs_url=None, redoc_url=None``."""
    folder = Path(str(swagger_ui_path))
    openapi_url = app.openapi_url or "/openapi.json"
    page = docs_page(f"{app.title} API · 接口文档", openapi_url)

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(page)

    # One fixed route per asset: no path parameter, so nothing a request names reaches the disk.
    for name, media_type in ASSETS.items():
        app.add_api_route(
            f"{DOCS_URL}/{name}",
            _asset_route(folder / name, media_type),
            methods=["GET"],
            include_in_schema=False,
        )


def _asset_route(path: Path, media_type: str) -> Callable[[], FileResponse]:
    def swagger_asset() -> FileResponse:
        return FileResponse(path, media_type=media_type)

    return swagger_asset


# The live feed is kept out of the routes' own schema (include_in_schema=False: a schema-driven
# client cannot wait for an endless answer); it is documented here as what it is, an event
# stream, which fuzzers skip by its media type.
FEED_PATH = "/api/v1/feed"
FEED_OPERATION: dict[str, Any] = {
    "summary": "Case changes, live (Server-Sent Events)",
    "description": (
        "Case changes as Server-Sent Events (`event: case`, `id` = the audit log's seq), live "
        "and endless. A department's roles get their department's cases only. A reconnecting "
        "client sends `Last-Event-ID` (or `?after=`) and first gets what it missed; "
        "`event: reset` means more was missed than is replayed: reload."
    ),
    "operationId": "case_feed",
    "tags": ["feed"],
    "parameters": [
        {
            "name": "after",
            "in": "query",
            "required": False,
            "description": "replay entries after this seq (audit log order)",
            "schema": {"type": "integer", "minimum": 0},
        },
        {
            "name": "last-event-id",
            "in": "header",
            "required": False,
            "description": "the last event id received: resume after it",
            "schema": {"type": "string"},
        },
    ],
    "responses": {
        "200": {
            "description": "an endless stream of events",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        "401": {"description": "log in, or send a valid bearer token"},
    },
}


def document_streams(document: dict[str, Any]) -> None:
    """Add the live feed to an OpenAPI document, secured like the case list."""
    paths: dict[str, Any] = document.setdefault("paths", {})
    if FEED_PATH in paths:
        return
    operation = dict(FEED_OPERATION)
    security = paths.get("/api/v1/cases", {}).get("get", {}).get("security")
    if security is not None:
        operation["security"] = security
    paths[FEED_PATH] = {"get": operation}


def document_errors(document: dict[str, Any]) -> None:
    """Every refusal has the one error shape (dispatch/errors.py): FastAPI's own 422 schema
    (``detail`` as a list) becomes it, wherever a route refers to it."""
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    problem = ApiProblem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas["HTTPValidationError"] = {**problem, "title": "HTTPValidationError"}


def install_stream_docs(app: FastAPI) -> None:
    """Document the event streams and the error shape in ``app``'s OpenAPI document (after the
    routes are added)."""
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        document = build_openapi()  # cached by FastAPI: adding twice is skipped
        document_streams(document)
        document_errors(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
