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

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

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
