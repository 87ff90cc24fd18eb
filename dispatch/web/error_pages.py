"""Error pages: a browser gets a readable page in its language with a way back, not JSON.

``dispatch.errors`` answers every refusal in the API's one JSON shape and, for a path outside
/api/, first asks ``app.state.page_error_handler``: that is :func:`page_error` here. It answers
HTML only to a request that asks for HTML (a browser opening a page: ``Accept: text/html``);
scripts, ``fetch`` calls and API clients keep the JSON shape. An unexpected exception becomes a
500 page (or the JSON ``server_error``) instead of the server's plain-text default.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request, Response, status
from starlette.exceptions import HTTPException

from dispatch.errors import STATUS_CODES, ApiError, problem
from dispatch.http.paths import API_PREFIX
from dispatch.web.rendering import render

# Statuses with a title and text of their own in the catalogue (panel.error_title_<status>).
_WORDED = frozenset({400, 403, 404, 405, 500})


def wants_html(request: Request) -> bool:
    """A browser opening a page: HTML accepted, and ranked before JSON (never on /api/)."""
    if request.url.path.startswith(f"{API_PREFIX}/"):
        return False
    accept = request.headers.get("accept", "").lower()
    html = accept.find("text/html")
    if html < 0:
        return False
    json = accept.find("application/json")
    return json < 0 or html < json


def _json(exc: HTTPException) -> Response:
    """The API's one shape, as dispatch.errors answers it where no page handler is set."""
    headers = dict(exc.headers) if exc.headers else None
    if isinstance(exc, ApiError):
        return problem(exc.status_code, exc.code, exc.detail, exc.params, headers=headers)
    if isinstance(exc.detail, Mapping) and isinstance(exc.detail.get("code"), str):
        return problem(exc.status_code, exc.detail["code"], exc.detail, headers=headers)
    code = STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
    return problem(exc.status_code, code, str(exc.detail), headers=headers)


def error_page(request: Request, status_code: int) -> Response:
    """The page for ``status_code``: what happened, in the page's language, and a way back.

    It never shows the exception's text: that is English, and may say more than a page should
    (which department owns a case the reader may not see)."""
    key = str(status_code) if status_code in _WORDED else "other"
    return render(request, "error.html", None, status_code=status_code, status=status_code, key=key)


def page_error(request: Request, exc: Exception) -> Response:
    """``app.state.page_error_handler``: HTML for a browser, the JSON shape for anyone else."""
    assert isinstance(exc, HTTPException)
    if not wants_html(request):
        return _json(exc)
    return error_page(request, exc.status_code)


def _server_error(request: Request, exc: Exception) -> Response:
    # Starlette still re-raises the exception after this answer, so the server logs it.
    del exc
    if wants_html(request):
        return error_page(request, status.HTTP_500_INTERNAL_SERVER_ERROR)
    return problem(
        status.HTTP_500_INTERNAL_SERVER_ERROR,
        STATUS_CODES[status.HTTP_500_INTERNAL_SERVER_ERROR],
        "internal server error",
    )


def install_error_pages(app: FastAPI) -> None:
    """HTML error pages for browsers; after dispatch.errors.install_error_handlers."""
    app.state.page_error_handler = page_error
    app.add_exception_handler(Exception, _server_error)
