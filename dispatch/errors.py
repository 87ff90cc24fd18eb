"""One error shape for every API error, with a stable machine code.

Every refusal the API gives reads ``{"detail": "<English message>", "code": "<snake_code>",
"params": {...}}``; a validation error adds an ``errors`` list (``loc``, ``msg``, ``type``). The
code names a message in both catalogues (``error.<code>`` in ``locales/*/api.yaml`` and, for the
workflow's refusals, ``locales/*/workflow.yaml``) with ``{param}`` placeholders, so a page shows
the refusal in its own language. ``detail`` is that message in English, for logs and scripts.

Open311 answers in the GeoReport spec's own error list (dispatch/open311.py); the account
routes keep ``detail`` = ``{code, message}`` that the password page reads, and gain ``code``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException

from dispatch.http.paths import API_PREFIX
from dispatch.web.i18n import translator
from dispatch.workflow import (
    IllegalTransitionError,
    MissingInputError,
    NotPermittedError,
    WorkflowError,
)

log = logging.getLogger(__name__)

# The codes for refusals raised as plain HTTPExceptions (authentication, framework 404/405...),
# by status. Every other code is named where it is raised.
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "server_error",
    503: "unavailable",
}
# The codes raised by name in the API (case_query, the routes); each has error.<code> in both
# catalogues (tests/unit/dispatch/test_api_errors.py checks).
API_CODES = (
    "case_not_found",
    "unknown_parameter",
    "repeated_parameter",
    "invalid_cursor",
    "cursor_mismatch",
    "export_too_large",
    "workflow_refused",
)
# Workflow refusals without a code of their own (the workflow adds ``code``/``params``).
WORKFLOW_FALLBACK_CODE = "workflow_refused"
WORKFLOW_STATUS: tuple[tuple[type[WorkflowError], int], ...] = (
    (NotPermittedError, status.HTTP_403_FORBIDDEN),
    (IllegalTransitionError, status.HTTP_409_CONFLICT),
    (MissingInputError, status.HTTP_422_UNPROCESSABLE_CONTENT),
)


class ApiProblem(BaseModel):
    """What every API error answers (OpenAPI documents it as the error responses' body)."""

    detail: str | dict[str, Any] = Field(
        description="the refusal in English (the account routes: their {code, message})"
    )
    code: str = Field(description="stable snake_case code; error.<code> in the catalogues")
    params: dict[str, Any] = Field(default_factory=dict, description="the message's placeholders")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="invalid_request only: each invalid input (loc, msg, type)"
    )


class ApiError(HTTPException):
    """A refusal with a stable code; ``params`` fill the message's ``{placeholders}``.

    An HTTPException, so code that catches those (the console's error pages) catches it too;
    ``detail`` is the English message."""

    def __init__(
        self,
        status_code: int,
        code: str,
        params: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
        detail: str | None = None,
    ) -> None:
        self.code = code
        self.params: dict[str, object] = dict(params or {})
        message = detail if detail is not None else english(code, self.params)
        super().__init__(status_code, message, dict(headers) if headers else None)


def english(code: str, params: Mapping[str, object]) -> str:
    """The code's English message; a code without one reads as the code and its params."""
    template = translator("en").messages.get(f"error.{code}")
    if template is None:
        return f"{code} {dict(params)}" if params else code
    try:
        return template.format(**params)
    except (KeyError, IndexError, ValueError):  # a placeholder the params lack: still say it
        return template


def problem(
    status_code: int,
    code: str,
    detail: object,
    params: Mapping[str, object] | None = None,
    errors: Sequence[Mapping[str, object]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail, "code": code, "params": dict(params or {})}
    if errors is not None:
        body["errors"] = list(errors)
    return JSONResponse(jsonable_encoder(body), status_code=status_code, headers=headers)


def _page_handler(request: Request) -> Callable[[Request, Exception], Any] | None:
    """The console's error pages, for a page's refusal: ``app.state.page_error_handler`` when
    the app has one (set by the pages' error handler module), else None (JSON everywhere)."""
    if request.url.path.startswith(f"{API_PREFIX}/"):
        return None
    handler: Callable[[Request, Exception], Any] | None = getattr(
        request.app.state, "page_error_handler", None
    )
    return handler


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    page = _page_handler(request)
    if page is not None:
        answer = page(request, exc)
        return cast(Response, await answer if inspect.isawaitable(answer) else answer)
    headers = dict(exc.headers) if exc.headers else None
    if isinstance(exc, ApiError):
        return problem(exc.status_code, exc.code, exc.detail, exc.params, headers=headers)
    code = STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
    if isinstance(exc.detail, Mapping) and isinstance(exc.detail.get("code"), str):
        # An account refusal: its {code, message} detail stays, as the password page reads it.
        return problem(exc.status_code, exc.detail["code"], exc.detail, headers=headers)
    return problem(exc.status_code, code, str(exc.detail), headers=headers)


def _issue(error: Mapping[str, Any]) -> dict[str, Any]:
    # Only where, what and which kind: never the refused input itself echoed back.
    return {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error["type"]}


def validation_problem(errors: Sequence[Mapping[str, Any]]) -> JSONResponse:
    """422 ``invalid_request``; a query parameter nobody knows is a 400 naming it."""
    issues = [_issue(error) for error in errors]
    unknown = [i for i in issues if i["type"] == "extra_forbidden" and i["loc"][:1] == ["query"]]
    if unknown and len(unknown) == len(issues):
        name = str(unknown[0]["loc"][-1])
        return problem(
            status.HTTP_400_BAD_REQUEST,
            "unknown_parameter",
            english("unknown_parameter", {"name": name}),
            {"name": name},
            errors=issues,
        )
    first = issues[0] if issues else {"loc": [], "msg": ""}
    where = ".".join(str(part) for part in first["loc"])
    params = {"field": where, "problem": first["msg"], "count": len(issues)}
    return problem(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        "invalid_request",
        english("invalid_request", params),
        params,
        errors=issues,
    )


def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return validation_problem(exc.errors())


def _out_of_range(_request: Request, _exc: Exception) -> Response:
    # An id or offset beyond what the database column holds (SQLite: OverflowError, PostgreSQL:
    # DataError): the client's input, so a validation error, not a server failure.
    return validation_problem(
        [{"loc": ["request"], "msg": "a value is out of range", "type": "value_error"}]
    )


def workflow_refusal(exc: WorkflowError) -> ApiError:
    """A workflow refusal as an ApiError: its own code and params when it has them."""
    status_code = next(
        (code for kind, code in WORKFLOW_STATUS if isinstance(exc, kind)),
        getattr(exc, "status_code", status.HTTP_409_CONFLICT),
    )
    code = getattr(exc, "code", None) or WORKFLOW_FALLBACK_CODE
    params = getattr(exc, "params", None) or {}
    # The workflow's own English sentence is the detail (and the fallback message's param).
    return ApiError(status_code, str(code), {**params, "message": str(exc)}, detail=str(exc))


async def _workflow_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WorkflowError)
    return await _http_error(request, workflow_refusal(exc))


def install_error_handlers(app: FastAPI) -> None:
    """Answer every API error in the one shape. Install after dispatch.ops, whose out-of-range
    handler this replaces."""
    app.add_exception_handler(HTTPException, _http_error)  # ApiError too: a subclass
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(WorkflowError, _workflow_error)
    app.add_exception_handler(OverflowError, _out_of_range)
    app.add_exception_handler(DataError, _out_of_range)
