"""/docs: Swagger UI served from this server, never from a CDN.

A command centre's network is often offline; FastAPI's default page loads Swagger UI from a CDN
and stays blank there. The assets come from the swagger-ui-bundle-v2 wheel, and the page starts
Swagger UI from a script file (static/apidocs.js): the pages' Content-Security-Policy allows
scripts from this origin only, never inline ones.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import FastAPI, HTTPException, status
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

    @app.get(DOCS_URL + "/{name}", include_in_schema=False)
    def swagger_asset(name: str) -> FileResponse:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
        return FileResponse(folder / name, media_type=media_type)
