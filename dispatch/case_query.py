"""The one query engine for case lists: the API list, the console list, export, bulk selection.

``CaseQuery`` is what a list may be asked (filters, search, sort, page size, cursor), parsed
from query parameters: unknown parameters are refused, multi-valued filters repeat
(``state=new&state=dispatched``). ``find_cases`` answers one page, the total and the next
page's cursor, always within ``visible_cases(principal)``; ``iter_cases`` walks every match
(export) in pages of its own.

Usage from page code::

    query = parse_case_query(request.query_params.multi_items())   # ApiError on bad input
    page = find_cases(session, principal, query, registry)
    page.cases, page.total, page.next_cursor

Pagination is by keyset: the cursor holds the last row's sort key, so a case inserted while
someone pages neither repeats nor shifts a row. The cursor is opaque (base64 JSON with a
checksum); a garbled one, or one made for another sort or other filters, is a 400. It needs no
secret: whatever a cursor says, only visible cases are ever read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Protocol
from zoneinfo import ZoneInfo

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    and_,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    tuple_,
)
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.orm.interfaces import ORMOption

from contracts.events import ViolationKind
from contracts.sites import SiteRegistry
from dispatch.case_counts import CaseCounts
from dispatch.config import Department, Priority, Tier
from dispatch.errors import ApiError, validation_problem
from dispatch.http.deps import visible_cases
from dispatch.workflow import Actor
from storage.tables import Case, CaseState, CaseTransition

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_VALUES = 50  # values of one multi-valued filter
MAX_OFFSET = 2_147_483_647
EXPORT_CAP = 50_000  # rows in one export; a larger list must be narrowed first
_CURSOR_VERSION = 1

Name = Annotated[str, Field(min_length=1, max_length=64)]
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _iso_only(value: object) -> object:
    # pydantic would read a bare number as a Unix time; the API documents ISO 8601 only.
    if isinstance(value, str) and not _ISO_DAY.match(value):
        raise ValueError("an ISO 8601 date (2026-12-01) or date-time with a time zone")
    return value


Moment = Annotated[AwareDatetime | date, BeforeValidator(_iso_only)]


class CaseSort(StrEnum):
    """The list's orders. Each ends with the case number, so equal keys still order one way."""

    DEADLINE = "deadline"  # resolve deadline soonest first, none last (the default)
    NEWEST = "newest"  # most recently registered first
    OLDEST = "oldest"  # first registered first
    UPDATED = "updated"  # most recently changed first


class CaseQuery(BaseModel):
    """A case list's question. Bare dates (``2026-12-01``) are days in the sites' time zone;
    ``opened_to``/``updated_to`` dates include that whole day."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: list[CaseState] = Field(default_factory=list, max_length=MAX_VALUES)
    kind: list[ViolationKind] = Field(default_factory=list, max_length=MAX_VALUES)
    department: list[Department] = Field(default_factory=list, max_length=MAX_VALUES)
    site: list[Name] = Field(default_factory=list, max_length=MAX_VALUES)
    camera: list[Name] = Field(default_factory=list, max_length=MAX_VALUES)
    assignee: list[Name] = Field(
        default_factory=list, max_length=MAX_VALUES, description="usernames; `none`: unassigned"
    )
    tier: list[Tier] = Field(default_factory=list, max_length=MAX_VALUES)
    priority: list[Priority] = Field(default_factory=list, max_length=MAX_VALUES)
    # Earlier names of two filters, still accepted.
    site_id: list[Name] = Field(
        default_factory=list, max_length=MAX_VALUES, description="deprecated: use site"
    )
    camera_id: list[Name] = Field(
        default_factory=list, max_length=MAX_VALUES, description="deprecated: use camera"
    )
    overdue: bool | None = None
    opened_from: Moment | None = None
    opened_to: Moment | None = None
    updated_from: Moment | None = None
    updated_to: Moment | None = None
    q: str | None = Field(
        default=None,
        max_length=100,
        description="case number (#12 or 12), plate, place (site, camera, zone, building) or "
        "text of the reasons and notes",
    )
    sort: CaseSort = CaseSort.DEADLINE
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(
        default=None, max_length=512, description="the next page: from the Link header"
    )
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET, description="deprecated: use cursor")

    def filters_digest(self) -> str:
        """What a cursor is bound to: everything but the page size and position."""
        asked = self.model_dump(mode="json", exclude={"limit", "cursor", "offset"})
        canonical = json.dumps(asked, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_case_query(items: Iterable[tuple[str, str]]) -> CaseQuery:
    """A CaseQuery from query parameters (``request.query_params.multi_items()``); ApiError
    ``unknown_parameter`` (400) or ``invalid_request`` (422) when the input is refused.
    ``lang`` is left to the page (the language the answer is in)."""
    multi = {name for name, info in CaseQuery.model_fields.items() if _is_list(info.annotation)}
    raw: dict[str, Any] = {}
    for name, value in items:
        if name == "lang":
            continue
        if name in multi:
            raw.setdefault(name, []).append(value)
        elif name in raw:
            raise ApiError(400, "repeated_parameter", {"name": name})
        else:
            raw[name] = value
    try:
        return CaseQuery.model_validate(raw)
    except ValidationError as exc:
        errors = [{**error, "loc": ("query", *error["loc"])} for error in exc.errors()]
        answer = validation_problem(errors)
        body = json.loads(bytes(answer.body))
        raise ApiError(answer.status_code, body["code"], body["params"]) from exc


def _is_list(annotation: object) -> bool:
    return getattr(annotation, "__origin__", None) is list


@dataclass(frozen=True)
class CasePage:
    """One page of a case list: its cases in order, how many match in all, and the cursor of
    the page after it (None on the last page)."""

    cases: list[Case]
    total: int
    next_cursor: str | None


def find_cases(
    session: Session,
    principal: Actor,
    query: CaseQuery,
    registry: SiteRegistry,
    options: Sequence[ORMOption] = (),
    counts: CaseCounts | None = None,
) -> CasePage:
    """One page of the cases ``principal`` may see that match ``query`` (loaded with
    ``options``), the total count (kept in ``counts`` between case changes, if given), and the
    next cursor. ApiError 400 for a bad cursor."""
    where = conditions(principal, query, registry)
    total = _total(session, principal, query, where, counts)
    statement = _page(query, select(Case).where(*where)).options(*options)
    cases = list(session.scalars(statement))
    more = len(cases) > query.limit
    cases = cases[: query.limit]
    cursor = encode_cursor(query, cases[-1]) if more and cases else None
    return CasePage(cases=cases, total=total, next_cursor=cursor)


@dataclass(frozen=True)
class CaseRowPage:
    """One page of a case list as plain rows of the columns asked (no ORM objects): what a
    list that shows a few columns reads, at a fraction of the CPU of whole cases."""

    rows: list[Row[Any]]
    total: int
    next_cursor: str | None
    keys: tuple[str, ...] = ()  # the rows' column names, in order


# The columns a cursor is made from: a row page always selects them.
_KEY_COLUMNS = (Case.id, Case.sla_due_at, Case.created_at, Case.updated_at)


def find_case_rows(
    session: Session,
    principal: Actor,
    query: CaseQuery,
    registry: SiteRegistry,
    columns: Sequence[ColumnElement[Any] | InstrumentedAttribute[Any]],
    counts: CaseCounts | None = None,
) -> CaseRowPage:
    """``find_cases`` for only ``columns`` (Case columns or labelled expressions over Case):
    the same matches, order, total and cursor. The sort key's columns are added when absent."""
    where = conditions(principal, query, registry)
    total = _total(session, principal, query, where, counts)
    chosen: list[ColumnElement[Any] | InstrumentedAttribute[Any]] = list(columns)
    names = {column.key for column in chosen}
    chosen += [column for column in _KEY_COLUMNS if column.key not in names]
    # The page's ids first (an index walk that reads only the index when it can), then its
    # rows and their derived columns (subqueries) for those ids alone: a column computed in
    # the paging query itself is computed for every row an offset skips, too.
    page_ids = _page(query, select(Case.id).where(*where)).subquery("page")
    statement = select(*chosen).join(page_ids, page_ids.c.id == Case.id)
    # Through the session's connection: plain rows straight from the cursor (an ORM execute
    # wraps each column row once more, ~0.5 ms a page of 100). Unflushed changes are flushed
    # first, as an ORM query's autoflush would.
    if session.autoflush:
        session.flush()
    result = session.connection().execute(statement.order_by(*_order(query.sort)))
    keys = tuple(result.keys())
    rows = list(result.all())  # one fetchall, not a fetchone per row
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    cursor = encode_cursor(query, rows[-1]) if more and rows else None
    return CaseRowPage(rows=rows, total=total, next_cursor=cursor, keys=keys)


def _total(
    session: Session,
    principal: Actor,
    query: CaseQuery,
    where: Sequence[ColumnElement[bool]],
    counts: CaseCounts | None,
) -> int:
    if counts is not None:
        return counts.total(session, principal, query, where)
    return session.scalar(select(func.count()).select_from(Case).where(*where)) or 0


def _page(query: CaseQuery, statement: Select[Any]) -> Select[Any]:
    """``statement`` from ``query``'s position, in its order, one row more than a page (the
    extra row says whether a next page exists)."""
    if query.cursor is not None:
        statement = statement.where(_after(query, decode_cursor(query, query.cursor)))
    statement = statement.order_by(*_order(query.sort))
    if query.offset:
        statement = statement.offset(query.offset)
    return statement.limit(query.limit + 1)


def count_cases(
    session: Session, principal: Actor, query: CaseQuery, registry: SiteRegistry
) -> int:
    where = conditions(principal, query, registry)
    return session.scalar(select(func.count()).select_from(Case).where(*where)) or 0


def iter_cases(
    session: Session,
    principal: Actor,
    query: CaseQuery,
    registry: SiteRegistry,
    cap: int = EXPORT_CAP,
    batch: int = 1000,
    options: Sequence[ORMOption] = (),
) -> Iterator[Case]:
    """Every match from ``query``'s position on, at most ``cap``, read ``batch`` at a time
    (keyset pages: no long-held cursor, bounded memory)."""
    left = cap
    page_query = query.model_copy(update={"limit": min(batch, MAX_LIMIT * 10)})
    where = conditions(principal, page_query, registry)
    cursor = query.cursor
    while left > 0:
        statement = select(Case).where(*where)
        if cursor is not None:
            statement = statement.where(_after(page_query, decode_cursor(page_query, cursor)))
        size = min(batch, left)
        statement = statement.order_by(*_order(query.sort)).options(*options).limit(size)
        cases = list(session.scalars(statement))
        yield from cases
        left -= len(cases)
        if len(cases) < size:
            return
        cursor = encode_cursor(page_query, cases[-1])
        session.expunge_all()  # a long export keeps one batch in memory, not all of them


# --- filters ------------------------------------------------------------------------------------


def conditions(
    principal: Actor, query: CaseQuery, registry: SiteRegistry
) -> list[ColumnElement[bool]]:
    """The WHERE conditions of ``query`` for ``principal``: visibility always comes first."""
    where: list[ColumnElement[bool]] = [visible_cases(principal)]
    filters: tuple[tuple[InstrumentedAttribute[Any], Sequence[object]], ...] = (
        (Case.state, query.state),
        (Case.kind, query.kind),
        (Case.department, query.department),
        (Case.site_id, [*query.site, *query.site_id]),
        (Case.camera_id, [*query.camera, *query.camera_id]),
        (Case.tier, query.tier),
        (Case.priority, query.priority),
    )
    for column, values in filters:
        if values:
            where.append(column.in_([str(value) for value in values]))
    if query.assignee:
        named = [name for name in query.assignee if name != "none"]
        either = [Case.assignee.in_(named)] if named else []
        if "none" in query.assignee:
            either.append(Case.assignee.is_(None))
        where.append(or_(*either))
    if query.overdue is not None:
        where.append(Case.overdue.is_(query.overdue))
    zone = _zone_info(registry)
    ranges: tuple[tuple[InstrumentedAttribute[datetime], datetime | date | None, Any], ...] = (
        (Case.opened_at, query.opened_from, query.opened_to),
        (Case.updated_at, query.updated_from, query.updated_to),
    )
    for stamp_column, start, end in ranges:
        column = stamp_column
        if start is not None:
            where.append(column >= _instant(start, zone, end_of_day=False))
        if end is not None:
            bound = _instant(end, zone, end_of_day=True)
            # a bare day runs up to the next midnight; an instant is included itself
            where.append(column <= bound if isinstance(end, datetime) else column < bound)
    if query.q is not None and query.q.strip():
        where.append(search(query.q.strip(), registry))
    return where


def _zone_info(registry: SiteRegistry) -> ZoneInfo:
    return ZoneInfo(registry.sites[0].timezone)


def _instant(value: datetime | date, zone: ZoneInfo, end_of_day: bool) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    day = value + timedelta(days=1) if end_of_day else value
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


_CASE_NUMBER = re.compile(r"^#?\s*(\d{1,9})$")


def search(text: str, registry: SiteRegistry) -> ColumnElement[bool]:
    """``#12``: case 12 only. Otherwise any of: the case number, the plate (substring, any
    case), the place (site, camera or zone id; a site, camera or zone name, a zone's location
    or building in the registry) or the text of the case's reasons and notes."""
    number = _CASE_NUMBER.match(text)
    if number and text.startswith("#"):
        return Case.id == int(number.group(1))
    needle = text.casefold()
    either: list[ColumnElement[bool]] = []
    if number:
        either.append(Case.id == int(number.group(1)))
    for column in (Case.plate_text, Case.site_id, Case.camera_id, Case.zone_id, Case.location):
        either.append(func.lower(column).contains(needle, autoescape=True))
    either.extend(_places_named(needle, registry))
    either.append(
        exists(
            select(CaseTransition.id).where(
                CaseTransition.case_id == Case.id,
                func.lower(CaseTransition.reason).contains(needle, autoescape=True),
            )
        )
    )
    return or_(*either)


def _places_named(needle: str, registry: SiteRegistry) -> list[ColumnElement[bool]]:
    """Conditions for the registry's places whose names contain ``needle`` (a casefolded
    substring): the registry is small and in memory, the cases hold only ids."""
    found: list[ColumnElement[bool]] = []
    for site in registry.sites:
        if needle in site.name.casefold() or needle in site.address.casefold():
            found.append(Case.site_id == site.id)
        for gateway in site.gateways:
            for camera in gateway.cameras:
                if needle in camera.name.casefold():
                    found.append(Case.camera_id == camera.id)
                for zone in camera.zones:
                    words = (zone.name, zone.location or "", zone.building or "")
                    if any(needle in word.casefold() for word in words):
                        found.append(and_(Case.camera_id == camera.id, Case.zone_id == zone.id))
    return found


# --- order and keyset ---------------------------------------------------------------------------


def _order(sort: CaseSort) -> tuple[Any, ...]:
    if sort is CaseSort.DEADLINE:  # the expression index ix_cases_due_order, walked in order
        return (Case.sla_due_at.is_(None), Case.sla_due_at, Case.id)
    if sort is CaseSort.NEWEST:
        return (Case.created_at.desc(), Case.id.desc())
    if sort is CaseSort.OLDEST:
        return (Case.created_at, Case.id)
    return (Case.updated_at.desc(), Case.id.desc())


class SortKeyed(Protocol):
    """What a cursor is made from: a Case, or a row holding its sort key's columns."""

    @property
    def id(self) -> int: ...
    @property
    def sla_due_at(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


def _key(sort: CaseSort, case: SortKeyed) -> list[Any]:
    if sort is CaseSort.DEADLINE:
        due = case.sla_due_at
        return [due.isoformat() if due is not None else None, case.id]
    stamp = case.updated_at if sort is CaseSort.UPDATED else case.created_at
    return [stamp.isoformat(), case.id]


def _after(query: CaseQuery, key: tuple[datetime | None, int]) -> ColumnElement[bool]:
    """The rows after ``key`` in ``query``'s order."""
    stamp, case_id = key
    sort = query.sort
    if sort is CaseSort.DEADLINE:
        if stamp is None:  # past the last deadline: the cases without one, by number
            return and_(Case.sla_due_at.is_(None), Case.id > case_id)
        # A row comparison over the index's own expressions: an index range scan. A row
        # without a deadline compares true > false on its first element, so it follows.
        return tuple_(Case.sla_due_at.is_(None), Case.sla_due_at, Case.id) > tuple_(
            false(), _typed(Case.sla_due_at, stamp), case_id
        )
    if stamp is None:
        raise _bad_cursor()
    column = Case.updated_at if sort is CaseSort.UPDATED else Case.created_at
    if sort is CaseSort.OLDEST:
        return tuple_(column, Case.id) > tuple_(_typed(column, stamp), case_id)
    return tuple_(column, Case.id) < tuple_(_typed(column, stamp), case_id)


def _typed(column: Any, value: datetime) -> Any:
    return literal(value, type_=column.type)


def encode_cursor(query: CaseQuery, last: SortKeyed) -> str:
    payload = [_CURSOR_VERSION, str(query.sort), query.filters_digest(), *_key(query.sort, last)]
    body = json.dumps(payload, separators=(",", ":")).encode()
    check = hashlib.sha256(body).digest()[:6]
    return base64.urlsafe_b64encode(check + body).decode().rstrip("=")


def decode_cursor(query: CaseQuery, cursor: str) -> tuple[datetime | None, int]:
    """The sort key a cursor holds; ApiError 400 for a garbled one or one of another list."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        check, body = raw[:6], raw[6:]
        if hashlib.sha256(body).digest()[:6] != check:
            raise _bad_cursor()
        version, sort, digest, stamp, case_id = json.loads(body)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise _bad_cursor() from exc
    if version != _CURSOR_VERSION or not isinstance(case_id, int) or isinstance(case_id, bool):
        raise _bad_cursor()
    if sort != query.sort or digest != query.filters_digest():
        raise ApiError(400, "cursor_mismatch")
    if stamp is None:
        return None, case_id
    try:
        when = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError as exc:
        raise _bad_cursor() from exc
    if when is None or when.tzinfo is None:
        raise _bad_cursor()
    return when, case_id


def _bad_cursor() -> ApiError:
    return ApiError(400, "invalid_cursor")


__all__ = [
    "EXPORT_CAP",
    "MAX_LIMIT",
    "CasePage",
    "CaseQuery",
    "CaseRowPage",
    "CaseSort",
    "count_cases",
    "find_case_rows",
    "find_cases",
    "iter_cases",
    "parse_case_query",
]
