"""A filtered case list as a CSV or XLSX file, for the people who report on it in a spreadsheet.

The same parameters as ``GET /api/v1/cases`` (dispatch.case_query), plus ``lang`` for the
column headers and names (zh-CN by default). At most ``EXPORT_CAP`` rows: a longer list is
refused, to be narrowed, rather than cut short without saying so. Times are the site's local
time with its UTC offset. A cell a spreadsheet would run as a formula (starting ``=+-@``, a tab
or a carriage return) is prefixed with ``'``, so an attacker's plate or reason stays text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import StreamingResponse
from openpyxl import Workbook  # type: ignore[import-untyped]  # no stubs shipped
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts.sites import SiteRegistry
from dispatch.case_query import EXPORT_CAP, CaseQuery, count_cases, iter_cases
from dispatch.errors import ApiError, ApiProblem
from dispatch.http.deps import API_PREFIX, ContextDep, Principal, PrincipalDep, SessionDep
from dispatch.web.i18n import Translator, translator
from storage.database import SessionFactory
from storage.tables import Case, CaseEvidence

COLUMNS = (
    "id",
    "kind",
    "state",
    "department",
    "assignee",
    "tier",
    "priority",
    "overdue",
    "sla_due_at",
    "site",
    "camera",
    "zone",
    "location",
    "plate",
    "opened_at",
    "updated_at",
    "evidence_count",
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_TYPE = "text/csv; charset=utf-8"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class ExportQuery(CaseQuery):
    """A list's query and the language of the file; the list is exported from its start."""

    lang: Literal["zh-CN", "en"] = "zh-CN"


def safe_cell(value: object) -> object:
    """Text a spreadsheet shows as text, never runs: formula-like strings get a leading '."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _local(when: datetime | None, zone: ZoneInfo) -> str:
    return when.astimezone(zone).isoformat(timespec="seconds") if when is not None else ""


class _Rows:
    """Turns cases into rows in one language and the sites' local time."""

    def __init__(self, registry: SiteRegistry, words: Translator) -> None:
        self.words = words
        self.zones = {site.id: ZoneInfo(site.timezone) for site in registry.sites}
        self.default_zone = ZoneInfo(registry.sites[0].timezone)

    def header(self) -> list[str]:
        return [self.words(f"api.export.{column}") for column in COLUMNS]

    def row(self, case: Case, evidence_count: int) -> list[object]:
        name = self.words.name
        zone = self.zones.get(case.site_id, self.default_zone)
        values: list[object] = [
            case.id,
            name("kind", case.kind),
            name("state", case.state),
            name("department", case.department),
            case.assignee or "",
            name("tier", case.tier),
            name("priority", case.priority),
            self.words("api.export.yes" if case.overdue else "api.export.no"),
            _local(case.sla_due_at, zone),
            case.site_id,
            case.camera_id,
            case.zone_id,
            case.location or "",
            case.plate_text or "",
            _local(case.opened_at, zone),
            _local(case.updated_at, zone),
            evidence_count,
        ]
        return [safe_cell(value) for value in values]


def _export_rows(
    sessions: SessionFactory,
    principal: Principal,
    query: CaseQuery,
    registry: SiteRegistry,
    rows: _Rows,
) -> Iterator[list[object]]:
    """The rows of every matching case, read in batches in a session of the export's own (a
    streamed answer outlives the request's session)."""
    with sessions() as session:
        batch: list[Case] = []

        def flush() -> Iterator[list[object]]:
            ids = [case.id for case in batch]
            counted = session.execute(
                select(CaseEvidence.case_id, func.count())
                .where(CaseEvidence.case_id.in_(ids))
                .group_by(CaseEvidence.case_id)
            )
            counts: dict[int, int] = {case_id: count for case_id, count in counted}
            for case in batch:
                yield rows.row(case, counts.get(case.id, 0))
            batch.clear()

        for case in iter_cases(session, principal, query, registry, cap=EXPORT_CAP):
            batch.append(case)
            if len(batch) >= 500:
                yield from flush()
        yield from flush()


def _checked(
    query: ExportQuery, session: Session, principal: Principal, registry: SiteRegistry
) -> CaseQuery:
    """The query from the list's start; ApiError when the list is longer than the cap."""
    start = query.model_copy(update={"cursor": None, "offset": 0})
    total = count_cases(session, principal, start, registry)
    if total > EXPORT_CAP:
        raise ApiError(
            status.HTTP_400_BAD_REQUEST, "export_too_large", {"total": total, "limit": EXPORT_CAP}
        )
    return start


router = APIRouter(prefix=API_PREFIX)
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ApiProblem, "description": "unknown parameter, or more rows than the cap"},
    422: {"model": ApiProblem, "description": "invalid input (code invalid_request)"},
}


@router.get(
    "/cases/export.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {CSV_TYPE: {}}, "description": "the list as CSV"}, **_ERRORS},
)
def export_csv(
    query: Annotated[ExportQuery, Query()],
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
) -> StreamingResponse:
    """The filtered list as CSV (UTF-8 with a byte-order mark, for Excel), at most EXPORT_CAP
    rows, streamed."""
    start = _checked(query, session, principal, context.registry)
    rows = _Rows(context.registry, translator(query.lang))

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(rows.header())
        yield "\ufeff" + _take(buffer)
        for row in _export_rows(context.session_factory, principal, start, context.registry, rows):
            writer.writerow(row)
            if buffer.tell() > 64_000:
                yield _take(buffer)
        yield _take(buffer)

    return StreamingResponse(
        lines(),
        media_type=CSV_TYPE,
        headers={"Content-Disposition": 'attachment; filename="cases.csv"'},
    )


def _take(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


@router.get(
    "/cases/export.xlsx",
    response_class=Response,
    responses={200: {"content": {XLSX_TYPE: {}}, "description": "the list as XLSX"}, **_ERRORS},
)
def export_xlsx(
    query: Annotated[ExportQuery, Query()],
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
) -> Response:
    """The filtered list as an Excel workbook (one sheet), at most EXPORT_CAP rows."""
    start = _checked(query, session, principal, context.registry)
    words = translator(query.lang)
    rows = _Rows(context.registry, words)
    book = Workbook(write_only=True)
    sheet = book.create_sheet(words("api.export.sheet"))
    sheet.append(rows.header())
    for row in _export_rows(context.session_factory, principal, start, context.registry, rows):
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return Response(
        out.getvalue(),
        media_type=XLSX_TYPE,
        headers={"Content-Disposition": 'attachment; filename="cases.xlsx"'},
    )
