"""The residents' vehicle registry over HTTP (issue 13 point 5; dispatch/registry.py).

Property management (supervisors, workers) and dispatchers read it whole and change it; admins
and departments' supervisors and workers read it masked; integrations and council members are
refused (403). A CSV import is all-or-nothing: 200 with what was stored, or 422
``csv_rows_invalid`` with ``errors`` (row, column, code, a message in both languages, the cell
made safe to show) and nothing stored; a file that cannot be an import (too large, too many rows,
not UTF-8, empty, a wrong header) is refused by its own code. Every refusal of an import is
counted (``civicwatch_registry_import_refused_total{reason}``), and so is every refused single
change (add, edit, delete), by the same counter with the entry's code as the reason
(``bad_plate``, ``bad_phone``, ``formula``, ``forbidden``, ``plate_registered`` ...).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import Counter
from pydantic import BaseModel

from dispatch.errors import ApiError
from dispatch.http.deps import API_PREFIX, ApiContext, ContextDep, Principal, PrincipalDep
from dispatch.registry import (
    MAX_CSV_BYTES,
    MAX_ERRORS,
    CsvRefusedError,
    RegistryError,
    RegistryService,
    RowError,
    VehicleIn,
    VehicleView,
    export_csv,
    may_edit,
    may_read,
    parse_csv,
    refusal_code,
    view,
)
from dispatch.web.i18n import translator

VEHICLES_PATH = f"{API_PREFIX}/registry/vehicles"


class _CountsRefusedChanges(APIRoute):
    """A single change (POST, PUT, DELETE of an entry) refused, before its handler ran (a bad
    plate, phone or formula cell in the body) or by it (a forbidden role, an unknown entry, a
    plate registered twice), counted with its code like a refused import."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        if not self.path.startswith(VEHICLES_PATH) or (self.methods or set()) <= {"GET", "HEAD"}:
            return handle

        async def counted(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                count_edit_refusal(request, _validation_code(exc))
                raise  # answered as before, by the app's handler
            except ApiError as exc:
                count_edit_refusal(request, exc.code)
                raise

        return counted


def _validation_code(exc: RequestValidationError) -> str:
    """The first problem's registry code (the body's field, as the CSV report names it)."""
    for problem in exc.errors():
        loc = [str(part) for part in problem.get("loc", ())]
        if loc[:1] == ["body"]:
            return refusal_code(loc[1] if len(loc) > 1 else "", problem)
    return "invalid_value"  # a bad path or query: not the entry's fault, still refused


router = APIRouter(prefix=API_PREFIX, tags=["registry"], route_class=_CountsRefusedChanges)

VehicleIdPath = Annotated[str, Path(pattern=r"^vehicle-[0-9a-f]{1,40}$")]
SiteQuery = Annotated[str, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
_REFUSALS: dict[int | str, dict[str, str]] = {
    403: {"description": "the caller's role may not read (or change) the registry"},
    404: {"description": "no such site or entry"},
}


class ImportOut(BaseModel):
    site_id: str
    rows: int
    created: int
    updated: int


def service(context: ApiContext) -> RegistryService:
    return RegistryService(context.session_factory, context.registry, context.exemptions)


def _allow(principal: Principal, change: bool) -> None:
    if not (may_edit(principal) if change else may_read(principal)):
        raise ApiError(
            status.HTTP_403_FORBIDDEN,
            "forbidden",
            detail="only property management and dispatchers change the registry"
            if change
            else "this role may not read the vehicle registry",
        )


def _refuse(exc: RegistryError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.params, detail=exc.detail)


def refusals_counter(request: Request) -> Counter:
    """The import refusals counter, one per app (on its metrics registry)."""
    counter: Counter | None = getattr(request.app.state, "registry_import_refused", None)
    if counter is None:
        counter = Counter(
            "civicwatch_registry_import_refused",
            "vehicle registry changes refused (CSV imports and single edits), by reason",
            ["reason"],
            registry=request.app.state.api.metrics_registry,
        )
        request.app.state.registry_import_refused = counter
    return counter


def count_edit_refusal(request: Request, reason: str) -> None:
    refusals_counter(request).labels(reason=reason).inc()


@router.get("/registry/vehicles", responses=_REFUSALS)
def get_vehicles(
    context: ContextDep,
    principal: PrincipalDep,
    site_id: SiteQuery | None = None,
    plate: Annotated[str | None, Query(max_length=16)] = None,
) -> list[VehicleView]:
    """The registry (at most 1000 entries; ``plate`` finds part of one), masked unless the
    caller is property management or a dispatcher."""
    _allow(principal, change=False)
    return [view(row, principal) for row in service(context).entries(site_id, plate)]


@router.post("/registry/vehicles", status_code=status.HTTP_201_CREATED, responses=_REFUSALS)
def post_vehicle(context: ContextDep, principal: PrincipalDep, vehicle: VehicleIn) -> VehicleView:
    """Register a plate; 409 ``plate_registered`` when it is on the site already."""
    _allow(principal, change=True)
    try:
        return view(service(context).create(vehicle, principal.name), principal)
    except RegistryError as exc:
        raise _refuse(exc) from exc


@router.put("/registry/vehicles/{vehicle_id}", responses=_REFUSALS)
def put_vehicle(
    context: ContextDep, principal: PrincipalDep, vehicle_id: VehicleIdPath, vehicle: VehicleIn
) -> VehicleView:
    """Change an entry (its site stays)."""
    _allow(principal, change=True)
    try:
        return view(service(context).update(vehicle_id, vehicle, principal.name), principal)
    except RegistryError as exc:
        raise _refuse(exc) from exc


@router.delete(
    "/registry/vehicles/{vehicle_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_REFUSALS,
)
def delete_vehicle(context: ContextDep, principal: PrincipalDep, vehicle_id: VehicleIdPath) -> None:
    """Take an entry off the registry; the gateways get the new document at once."""
    _allow(principal, change=True)
    try:
        service(context).delete(vehicle_id, principal.name)
    except RegistryError as exc:
        raise _refuse(exc) from exc


@router.post(
    "/registry/import",
    response_model=ImportOut,
    responses={
        **_REFUSALS,
        413: {"description": "csv_too_large or csv_too_many_rows"},
        422: {"description": "csv_rows_invalid (with errors), csv_not_utf8, csv_empty, ..."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def post_import(
    request: Request, context: ContextDep, principal: PrincipalDep, site_id: SiteQuery
) -> ImportOut | JSONResponse:
    """Import a CSV (the body, UTF-8 with or without BOM; header
    ``plate,category,building,unit,owner_name,phone``): all rows or none."""
    _allow(principal, change=True)
    registry = service(context)
    counter = refusals_counter(request)
    try:
        registry.check_site(site_id)
    except RegistryError as exc:
        raise _refuse(exc) from exc
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_CSV_BYTES:
            counter.labels(reason="csv_too_large").inc()
            raise ApiError(
                status.HTTP_413_CONTENT_TOO_LARGE,
                "csv_too_large",
                {"limit": MAX_CSV_BYTES},
                detail="the file is over the limit",
            )
    try:
        parsed = parse_csv(bytes(data), site_id)
    except CsvRefusedError as exc:
        counter.labels(reason=exc.code).inc()
        raise _refuse(exc) from exc
    if parsed.errors:
        counter.labels(reason="csv_rows_invalid").inc()
        return _rows_refused(parsed.errors, parsed.row_count)
    try:
        result = await run_in_threadpool(registry.import_rows, site_id, parsed.rows, principal.name)
    except RegistryError as exc:
        counter.labels(reason=exc.code).inc()
        raise _refuse(exc) from exc
    return ImportOut(
        site_id=site_id, rows=len(parsed.rows), created=result.created, updated=result.updated
    )


def _rows_refused(errors: list[RowError], rows: int) -> JSONResponse:
    params = {"count": len(errors), "rows": rows}
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={
            "detail": translator("en")("error.csv_rows_invalid").format(**params),
            "code": "csv_rows_invalid",
            "params": params,
            "errors": [error.as_json() for error in errors[:MAX_ERRORS]],
        },
    )


@router.get(
    "/registry/export.csv",
    responses={
        **_REFUSALS,
        200: {"content": {"text/csv": {}}, "description": "the site's registry"},
    },
    response_class=Response,
)
def get_export(context: ContextDep, principal: PrincipalDep, site_id: SiteQuery) -> Response:
    """The site's registry as CSV (UTF-8 with BOM; a cell that starts like a spreadsheet
    formula gets a leading ``'``); property management and dispatchers only."""
    _allow(principal, change=True)
    registry = service(context)
    try:
        registry.check_site(site_id)
    except RegistryError as exc:
        raise _refuse(exc) from exc
    return Response(
        export_csv(registry.rows_for_export(site_id)),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="registry-{site_id}.csv"',
            "Cache-Control": "no-store",
        },
    )
