"""Open311 GeoReport v2, so municipal systems can read the cases and file residents' reports.

GET /open311/v2/services.json, /open311/v2/requests.json and
/open311/v2/requests/{service_request_id}.json, with the fields the spec names
(https://wiki.open311.org/GeoReport_v2). The service list and service definitions are public, as
the spec keeps them; the requests need a bearer token (an integration token or any signed-in
role): a department's roles see only their department's cases, and another department's request
is "not found". ``address`` is the site's postal address, the zone's building and the zone;
``lat``/``long`` the site's coordinates (WGS-84) where the config gives them. Errors are the
spec's list of ``{code, description}``. Only JSON is served: the ``.xml`` forms answer 404
saying so.

POST /open311/v2/requests.json files a report through the residents' intake
(dispatch.residents.intake.submit_report, channel ``open311``): the integration's ``api_key``
(``civicwatch integrations add``) instead of a bearer token; the site, building and unit in the
attributes ``attribute[site_id]``, ``attribute[building]``, ``attribute[unit]``. The answer's
``service_request_id`` is the report's tracking code, which GET requests/{id}.json also takes.
Nothing fetches ``media_url``: it is kept as a line of the description, as is
``address_string``. ``first_name``, ``last_name``, ``email``, ``device_id`` and ``account_id`` are
accepted and not stored (no column holds them); ``account_id`` is echoed back.

Extension: ``requests.json`` pages with ``page`` (from 1) and ``limit`` (at most 1000, the
spec's cap). Without a date range every case is searched (newest first), not just 90 days.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from sqlalchemy import Select, select
from sqlalchemy.orm import selectinload
from starlette.exceptions import HTTPException

from contracts.events import ViolationKind
from contracts.sites import SiteConfig, SiteRegistry, ZoneConfig
from dispatch.config import Department, Priority, Tier
from dispatch.http.deps import ContextDep, Principal, PrincipalDep, SessionDep, visible_cases
from dispatch.kinds import DISPATCH_KINDS, ServiceListing
from dispatch.residents.codes import normalise_tracking_code
from dispatch.residents.intake import Channel, ReportRefused, ReportSubmission
from dispatch.residents.integrations import verify_key
from dispatch.residents.refusals import INVALID_FORM, count_refusal, submit_counted
from dispatch.web.i18n import pick_language, translator
from storage.tables import Case, CaseState, ResidentReport

OPEN311_PREFIX = "/open311/v2"
MAX_REQUESTS = 1000  # the spec's cap on one answer


SERVICES: dict[ViolationKind, ServiceListing] = {
    kind: registered.service for kind, registered in DISPATCH_KINDS.items()
}
AGENCIES: dict[str, str] = {
    Department.LAW_ENFORCEMENT: "综合行政执法",
    Department.PUBLIC_SECURITY: "公安",
    Department.FIRE_RESCUE: "消防救援",
    Department.PROPERTY_MANAGEMENT: "物业管理",
}
STATE_NOTES: dict[str, str] = {
    CaseState.NEW: "待派遣",
    CaseState.DISPATCHED: "已派遣",
    CaseState.ACCEPTED: "已受理",
    CaseState.RESOLVED: "已办结待核查",
    CaseState.CLOSED: "已结案",
    CaseState.RETURNED: "已退回",
    CaseState.PARKED: "挂账",
    CaseState.MERGED: "已合并",
}
PRIORITIES: dict[str, str] = {
    Priority.URGENT: "紧急",
    Priority.HIGH: "高",
    Priority.NORMAL: "普通",
    Priority.LOW: "低",
}
TIERS: dict[str, str] = {Tier.DEPARTMENT: "大事派单", Tier.COMMUNITY: "小事协商"}
# Merged duplicates are closed too: the case they repeat carries on.
CLOSED_STATES = frozenset({CaseState.CLOSED.value, CaseState.MERGED.value})


class Open311Error(BaseModel):
    code: int
    description: str


class Open311Created(BaseModel):
    service_request_id: str
    service_notice: str
    account_id: str | None


class Open311Service(BaseModel):
    service_code: str
    service_name: str
    description: str
    metadata: bool
    type: Literal["realtime", "batch", "blackbox"]
    keywords: str
    group: str


class Open311Request(BaseModel):
    service_request_id: str
    status: Literal["open", "closed"]
    status_notes: str | None
    service_name: str
    service_code: str
    description: str | None
    agency_responsible: str | None
    service_notice: str | None
    requested_datetime: datetime
    updated_datetime: datetime | None
    expected_datetime: datetime | None
    address: str | None
    address_id: str | None
    zipcode: str | None
    lat: float | None
    long: float | None
    media_url: str | None


_ERRORS: dict[int | str, dict[str, Any]] = {
    status.HTTP_400_BAD_REQUEST: {"model": list[Open311Error], "description": "bad parameter"},
    status.HTTP_401_UNAUTHORIZED: {"model": list[Open311Error], "description": "no valid token"},
    status.HTTP_404_NOT_FOUND: {"model": list[Open311Error], "description": "not found"},
}
_POST_ERRORS: dict[int | str, dict[str, Any]] = {
    status.HTTP_400_BAD_REQUEST: {"model": list[Open311Error], "description": "bad field"},
    status.HTTP_403_FORBIDDEN: {"model": list[Open311Error], "description": "bad api_key"},
    status.HTTP_404_NOT_FOUND: {"model": list[Open311Error], "description": "unknown service"},
    status.HTTP_429_TOO_MANY_REQUESTS: {
        "model": list[Open311Error],
        "description": "too many reports; see Retry-After",
    },
}


def error_response(
    code: int, description: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The spec's error shape: a list of ``{code, description}``."""
    body = [Open311Error(code=code, description=description).model_dump()]
    return JSONResponse(body, status_code=code, headers=headers)


class Open311Route(APIRoute):
    """Answers this router's errors (authentication, validation, not found) the Open311 way."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await handle(request)
            except HTTPException as exc:
                if request.method == "POST":  # a report body that could not be parsed at all
                    count_refusal(request, Channel.OPEN311.value, INVALID_FORM)
                headers = dict(exc.headers) if exc.headers else None
                return error_response(exc.status_code, str(exc.detail), headers)
            except RequestValidationError as exc:
                if request.method == "POST":  # a report, refused before it was read
                    count_refusal(request, Channel.OPEN311.value, INVALID_FORM)
                problems = [
                    f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                    for error in exc.errors()
                ]
                return error_response(status.HTTP_400_BAD_REQUEST, "; ".join(problems))

        return handler


router = APIRouter(prefix=OPEN311_PREFIX, tags=["open311"], route_class=Open311Route)


class _BadParameter(HTTPException):
    def __init__(self, detail: str) -> None:
        super().__init__(status.HTTP_400_BAD_REQUEST, detail)


def _not_found(service_request_id: str) -> HTTPException:
    return HTTPException(
        status.HTTP_404_NOT_FOUND, f"service request {service_request_id} not found"
    )


class Open311ServiceDefinition(BaseModel):
    service_code: str
    attributes: list[dict[str, Any]]


@router.get("/services.json", response_model=list[Open311Service], responses=_ERRORS)
def list_services(jurisdiction_id: str | None = None) -> list[Open311Service]:
    """One service per violation kind the cameras detect. Public, as the spec keeps it."""
    return [
        Open311Service(
            service_code=kind.value,
            service_name=service.name,
            description=service.description,
            metadata=False,
            type="realtime",
            keywords=service.keywords,
            group=service.group,
        )
        for kind, service in SERVICES.items()
    ]


@router.get(
    "/services/{service_code}.json", response_model=Open311ServiceDefinition, responses=_ERRORS
)
def service_definition(
    service_code: Annotated[str, Path(max_length=64)], jurisdiction_id: str | None = None
) -> Open311ServiceDefinition:
    """A service's definition: cameras report, nobody files a request, so it asks for no
    attributes (``metadata`` is false in services.json). Public, as the spec keeps it."""
    if service_code not in {kind.value for kind in SERVICES}:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"service {service_code} not found")
    return Open311ServiceDefinition(service_code=service_code, attributes=[])


@router.get("/requests.json", response_model=list[Open311Request], responses=_ERRORS)
def list_requests(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
    service_request_id: Annotated[
        str | None, Query(description="comma list of ids; when given, other filters are ignored")
    ] = None,
    service_code: Annotated[str | None, Query(description="comma list of codes")] = None,
    status_: Annotated[str | None, Query(alias="status", description="open, closed")] = None,
    start_date: Annotated[str | None, Query(description="W3C datetime, inclusive")] = None,
    end_date: Annotated[str | None, Query(description="W3C datetime, inclusive")] = None,
    jurisdiction_id: str | None = None,
    page: Annotated[int, Query(ge=1, le=1_000_000, description="extension: from 1")] = 1,
    limit: Annotated[
        int, Query(ge=1, le=MAX_REQUESTS, description="extension: per page")
    ] = MAX_REQUESTS,
) -> list[Open311Request]:
    """Service requests (cases), newest first."""
    query = _visible(principal)
    if service_request_id is not None:
        query = query.where(Case.id.in_(_ids(service_request_id)))
    else:
        query = _filtered(query, service_code, status_, start_date, end_date)
    query = query.order_by(Case.opened_at.desc(), Case.id.desc())
    query = query.limit(limit).offset((page - 1) * limit)
    return [_request(case, context.registry, _base_url(request)) for case in session.scalars(query)]


@router.get(
    "/requests/{service_request_id}.json",
    response_model=list[Open311Request],
    responses=_ERRORS,
)
def get_request(
    service_request_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
    jurisdiction_id: str | None = None,
) -> list[Open311Request]:
    """One service request, as a one-element list (the spec's shape): a case id, or a report's
    tracking code (what POST answered), which reads as its case (never the reporter's phone)."""
    case_ids: list[int] = []
    if service_request_id.isdigit() and len(service_request_id) <= 18:
        case_ids.append(int(service_request_id))
    code = normalise_tracking_code(service_request_id)
    if code is not None:  # a code of digits only is rare, and still found after the case id
        reported = session.scalar(
            select(ResidentReport.case_id).where(ResidentReport.tracking_code == code)
        )
        case_ids += [reported] if reported is not None else []
    case = None
    for case_id in case_ids:
        case = session.scalars(_visible(principal).where(Case.id == case_id)).one_or_none()
        if case is not None:
            break
    if case is None:
        raise _not_found(service_request_id)
    return [_request(case, context.registry, _base_url(request))]


_ONLY_JSON = "only JSON is served: ask for the .json form of this URL"
_MAX_TEXT = 20_000  # the intake bounds the description more tightly (its config)
_MAX_LINE = 512


_BAD = status.HTTP_400_BAD_REQUEST


def _refused(request: Request, status_code: int, code: str, text: str) -> JSONResponse:
    """A report refused before the intake: counted like the intake's own, answered Open311's way."""
    count_refusal(request, Channel.OPEN311.value, code)
    return error_response(status_code, text)


@router.post(
    "/requests.json",
    response_model=list[Open311Created],
    responses=_POST_ERRORS,
    status_code=status.HTTP_201_CREATED,
)
def create_request(
    request: Request,
    session: SessionDep,
    context: ContextDep,
    api_key: Annotated[str, Form(max_length=256, description="the integration's key")],
    service_code: Annotated[str, Form(max_length=64, description="a code from services.json")],
    lat: Annotated[float | None, Form(ge=-90, le=90)] = None,
    long: Annotated[float | None, Form(ge=-180, le=180)] = None,
    address_string: Annotated[str | None, Form(max_length=_MAX_LINE)] = None,
    address_id: Annotated[str | None, Form(max_length=_MAX_LINE, description="site/zone")] = None,
    description: Annotated[str, Form(max_length=_MAX_TEXT)] = "",
    media_url: Annotated[
        str | None, Form(max_length=2048, description="kept, never fetched")
    ] = None,
    phone: Annotated[str | None, Form(max_length=32)] = None,
    email: Annotated[str | None, Form(max_length=_MAX_LINE, description="not stored")] = None,
    first_name: Annotated[str | None, Form(max_length=_MAX_LINE, description="not stored")] = None,
    last_name: Annotated[str | None, Form(max_length=_MAX_LINE, description="not stored")] = None,
    device_id: Annotated[str | None, Form(max_length=_MAX_LINE, description="not stored")] = None,
    account_id: Annotated[str | None, Form(max_length=_MAX_LINE, description="echoed")] = None,
    site_id: Annotated[str | None, Form(alias="attribute[site_id]", max_length=64)] = None,
    building: Annotated[str | None, Form(alias="attribute[building]", max_length=64)] = None,
    unit: Annotated[str | None, Form(alias="attribute[unit]", max_length=64)] = None,
    consent: Annotated[
        bool, Form(alias="attribute[contact_consent]", description="the caller may be called")
    ] = False,
    jurisdiction_id: Annotated[str | None, Form(max_length=64)] = None,
) -> list[Open311Created] | JSONResponse:
    """A resident's report from another system; answers its tracking code and where it went,
    in the language ``?lang=`` asks (Chinese by default)."""
    language, _chosen = pick_language(request)
    say = translator(language)
    intake = context.intake
    if intake is None:
        return error_response(status.HTTP_404_NOT_FOUND, "residents' reports are not enabled")
    integration = verify_key(session, api_key)
    if integration is None:
        return _refused(
            request, status.HTTP_403_FORBIDDEN, "report_bad_key", say("open311_post.bad_key")
        )
    if service_code not in {kind.value for kind in SERVICES}:
        text = say("open311_post.unknown_service", code=service_code)
        return _refused(request, status.HTTP_404_NOT_FOUND, "report_unknown_service", text)
    if (lat is None) != (long is None):
        return _refused(request, _BAD, "report_half_point", say("open311_post.half_point"))
    if lat is None and not (address_string or "").strip() and not (address_id or "").strip():
        return _refused(request, _BAD, "report_no_location", say("open311_post.no_location"))
    site = (site_id or "").strip() or (address_id or "").partition("/")[0].strip()
    if not site:
        return _refused(request, _BAD, "report_no_site", say("open311_post.no_site"))
    if media_url and not media_url.lower().startswith(("https://", "http://")):
        return _refused(request, _BAD, "report_bad_media_url", say("open311_post.bad_media_url"))
    # No column holds the address text or the media link: they travel as description lines.
    address_text = (address_string or "").strip()
    lines = [description.strip()]
    lines += [f"address: {address_text}"] if address_text else []
    lines += [f"media_url: {media_url}"] if media_url else []
    try:
        submission = ReportSubmission(
            category=ViolationKind(service_code),
            site_id=site,
            building=building,
            unit=unit,
            lat=lat,
            long=long,
            description="\n".join(line for line in lines if line),
            phone=phone,
            contact_consent=consent,
            channel=Channel.OPEN311,
            submitted_by=integration,
            # The limits count per integration: it is one server speaking for many residents.
            client_address=f"open311:{integration}"[:64],
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        return _refused(request, _BAD, INVALID_FORM, problems)
    try:
        receipt = submit_counted(request, session, submission, deps=intake)
    except ReportRefused as exc:
        session.rollback()
        template = say.messages.get(f"error.{exc.code}")
        text = template.format(**exc.params) if template else str(exc.detail)
        limited = exc.status_code == status.HTTP_429_TOO_MANY_REQUESTS
        code = status.HTTP_429_TOO_MANY_REQUESTS if limited else status.HTTP_400_BAD_REQUEST
        return error_response(code, text, dict(exc.headers) if exc.headers else None)
    case = session.get(Case, receipt.case_id)
    session.commit()
    department = say.name("department", case.department if case else None)
    notice = {
        Tier.DEPARTMENT: "open311_post.notice_department",
        Tier.COMMUNITY: "open311_post.notice_community",
        Tier.HOUSEHOLD: "open311_post.notice_household",
    }[receipt.tier]
    if receipt.joined:
        notice = "open311_post.notice_joined"
    return [
        Open311Created(
            service_request_id=receipt.tracking_code,
            service_notice=say(
                notice, code=receipt.tracking_code, case_id=receipt.case_id, department=department
            ),
            account_id=account_id,
        )
    ]


@router.get("/services.xml", responses=_ERRORS, response_model=None)
def services_xml() -> Response:
    return error_response(status.HTTP_404_NOT_FOUND, _ONLY_JSON)


@router.get("/requests.xml", responses=_ERRORS, response_model=None)
def requests_xml() -> Response:
    return error_response(status.HTTP_404_NOT_FOUND, _ONLY_JSON)


@router.get("/requests/{service_request_id}.xml", responses=_ERRORS, response_model=None)
def request_xml(service_request_id: str) -> Response:
    return error_response(status.HTTP_404_NOT_FOUND, _ONLY_JSON)


def _visible(principal: Principal) -> Select[Case]:
    return select(Case).options(selectinload(Case.evidence)).where(visible_cases(principal))


def _filtered(
    query: Select[Case],
    service_code: str | None,
    status_: str | None,
    start_date: str | None,
    end_date: str | None,
) -> Select[Case]:
    if service_code is not None:
        codes = _split(service_code, "service_code")
        unknown = sorted(set(codes) - {kind.value for kind in ViolationKind})
        if unknown:
            raise _BadParameter(f"service_code: unknown {', '.join(unknown)} (see services.json)")
        query = query.where(Case.kind.in_(codes))
    if status_ is not None:
        wanted = set(_split(status_, "status"))
        if not wanted <= {"open", "closed"}:
            raise _BadParameter("status: open, closed or both (comma separated)")
        if wanted == {"open"}:
            query = query.where(Case.state.not_in(CLOSED_STATES))
        elif wanted == {"closed"}:
            query = query.where(Case.state.in_(CLOSED_STATES))
    start = _w3c(start_date, "start_date") if start_date is not None else None
    end = _w3c(end_date, "end_date") if end_date is not None else None
    if start is not None and end is not None and start > end:
        raise _BadParameter("start_date is after end_date")
    if start is not None:
        query = query.where(Case.opened_at >= start)
    if end is not None:
        query = query.where(Case.opened_at <= end)
    return query


def _split(value: str, name: str) -> list[str]:
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts:
        raise _BadParameter(f"{name} is empty")
    return parts


def _ids(value: str) -> list[int]:
    parts = _split(value, "service_request_id")
    if len(parts) > MAX_REQUESTS or not all(p.isdigit() and len(p) <= 18 for p in parts):
        raise _BadParameter(
            f"service_request_id: at most {MAX_REQUESTS} numeric ids, comma separated"
        )
    return [int(part) for part in parts]


def _w3c(value: str, name: str) -> datetime:
    """A W3C datetime (``2026-05-04T08:00:00Z``, ``...+08:00``) or a date (midnight UTC)."""
    try:
        if len(value) == 10:
            return datetime.combine(datetime.fromisoformat(value).date(), time(), UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _BadParameter(f"{name}: not a W3C datetime: {value!r}") from exc
    if parsed.tzinfo is None:
        raise _BadParameter(f"{name}: give a time zone (Z or +08:00): {value!r}")
    return parsed.astimezone(UTC)


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _request(case: Case, registry: SiteRegistry, base_url: str) -> Open311Request:
    service = SERVICES[ViolationKind(case.kind)]
    found = registry.camera(case.camera_id)
    site = found[0] if found else None
    camera = found[2] if found else None
    zone = camera.zone(case.zone_id) if camera else None
    zone_name = (zone.name if zone else "") or case.zone_id
    place = case.location or zone_name
    site_name = (site.name if site else "") or case.site_id
    where = ZoneInfo(site.timezone) if site else UTC
    camera_name = (camera.name if camera else "") or case.camera_id
    redacted = next((item.redacted_sha256 for item in case.evidence if item.redacted_sha256), None)
    return Open311Request(
        service_request_id=str(case.id),
        status="closed" if case.state in CLOSED_STATES else "open",
        status_notes=_status_notes(case),
        service_name=service.name,
        service_code=case.kind,
        # A case no camera saw (a resident's report) names no camera or zone.
        description=f"{service.name}：{camera_name}，{zone_name}"
        if case.camera_id
        else service.name,
        agency_responsible=AGENCIES.get(case.department) if case.department else None,
        service_notice=_service_notice(case),
        requested_datetime=case.opened_at.astimezone(where),
        updated_datetime=case.updated_at.astimezone(where),
        expected_datetime=case.sla_due_at.astimezone(where) if case.sla_due_at else None,
        address=_address(site, zone, site_name, place),
        address_id=f"{case.site_id}/{case.zone_id}" if case.zone_id else case.site_id,
        zipcode=None,
        lat=site.lat if site else None,
        long=site.long if site else None,
        media_url=f"{base_url}/api/v1/evidence/{redacted}" if redacted else None,
    )


def _address(site: SiteConfig | None, zone: ZoneConfig | None, site_name: str, place: str) -> str:
    """Where to go, as people say it: the postal address (else the compound's name), the
    building, the place in it."""
    parts = [(site.address if site else "") or site_name, (zone.building if zone else "") or ""]
    return " ".join(part for part in (*parts, place) if part)


def _status_notes(case: Case) -> str:
    notes = STATE_NOTES.get(case.state, case.state)
    if case.state == CaseState.MERGED and case.duplicate_of is not None:
        notes += f"：与 {case.duplicate_of} 号重复"
    if case.overdue and case.state not in CLOSED_STATES:
        notes += "（已超时）"
    return notes


def _service_notice(case: Case) -> str | None:
    parts: Sequence[str] = [
        part
        for part in (
            TIERS.get(case.tier) if case.tier else None,
            f"优先级：{PRIORITIES[case.priority]}" if case.priority in PRIORITIES else None,
        )
        if part
    ]
    return "，".join(parts) or None
