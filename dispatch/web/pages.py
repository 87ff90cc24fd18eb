"""The web pages: sign-in, the dispatch console, the worker view; and the after-photo upload.

Server-rendered (Jinja2) with a little vanilla JavaScript from static/. Pages use the API's
principal (the ``cw_session`` cookie once signed in); a page request without one is sent to
/login. Department roles see only their department's cases, here as in the API.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import re
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    HTTPException,
    Request,
    Response,
    status,
)
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts.images import ImageError, image_type_and_size
from contracts.sites import SiteRegistry, ZoneConfig
from dispatch.api import (
    API_PREFIX,
    ApiContext,
    ContextDep,
    Principal,
    PrincipalDep,
    SessionDep,
    list_cameras,
)
from dispatch.auth import IdentifiedDep, PasswordChangeRequired
from dispatch.config import MIN_PASSWORD_LENGTH, Department, Role
from dispatch.schemas import CameraPublic, EvidencePublic
from dispatch.web.feed import FeedHub, feed_router, head_seq, read_entries, scope_of
from dispatch.web.i18n import LANGUAGE_COOKIE, Translator, pick_language, translator
from dispatch.web.redirects import local_target
from dispatch.web.stats import (
    Stats,
    StatsCache,
    StatsCacheDep,
    bar_chart,
    column_chart,
    stats_router,
)
from dispatch.workflow import (
    NEEDS_REASON,
    TRANSITIONS,
    Action,
    Command,
    IllegalTransitionError,
    MissingInputError,
    NotPermittedError,
)
from storage.tables import (
    OPEN_STATES,
    Case,
    CaseEvidence,
    CaseState,
    Evidence,
    utcnow,
)

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent
PASSWORD_PAGE = "/account/password"
AFTER_PHOTO = "after_photo"
DUE_SOON = timedelta(minutes=30)
CONSOLE_ROLES = frozenset({Role.DISPATCHER, Role.ADMIN, Role.SUPERVISOR, Role.INTEGRATION})
WORKER_ROLES = frozenset({Role.WORKER, Role.SUPERVISOR})
# What each page offers, in this order; a button shows only where the workflow would allow it.
CONSOLE_ACTIONS = (
    Action.DISPATCH,
    Action.TRANSFER,
    Action.RETURN,  # a supervisor at the console
    Action.MERGE,
    Action.PARK,
    Action.VERIFY,
    Action.REOPEN,
    Action.CLOSE,
    Action.NOTE,
)
WORKER_ACTIONS = (Action.ACCEPT, Action.RESOLVE, Action.RETURN, Action.NOTE)
# Frames whose pixels are the camera's view: the zone and box are drawn over these only.
_CROPS = frozenset({"closeup", AFTER_PHOTO})


class PageRoute(APIRoute):
    """A page route: no principal means "sign in first", not a 401 body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as exc:
                target = request.url.path
                if request.url.query:
                    target += f"?{request.url.query}"
                if isinstance(exc, PasswordChangeRequired):
                    page = PASSWORD_PAGE
                elif exc.status_code == status.HTTP_401_UNAUTHORIZED:
                    page = "/login"
                else:
                    raise
                return RedirectResponse(
                    f"{page}?next={quote(target, safe='')}", status.HTTP_303_SEE_OTHER
                )

        return page_handler


@dataclass(frozen=True)
class WebState:
    """What the pages share, built once per app by install_web."""

    templates: Jinja2Templates
    attachments_refused: Counter


def _web(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def _context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.api
    return context


# --- rendering ----------------------------------------------------------------------------------


class Clock:
    """Shows UTC times in a site's time zone."""

    def __init__(self, registry: SiteRegistry) -> None:
        self._zones = {site.id: ZoneInfo(site.timezone) for site in registry.sites}
        self.default = ZoneInfo(registry.sites[0].timezone)

    def zone(self, site_id: str | None) -> ZoneInfo:
        return self._zones.get(site_id or "", self.default)

    def local(self, value: datetime | str | None, site_id: str | None = None, fmt: str = "") -> str:
        """``value`` (a UTC datetime or its ISO text) in the site's zone, as text."""
        if value is None:
            return "—"
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.astimezone(self.zone(site_id)).strftime(fmt or "%Y-%m-%d %H:%M")


def render(
    request: Request,
    template: str,
    principal: Principal | None,
    status_code: int = 200,
    **values: Any,
) -> Response:
    """Render a page in the request's language; ``?lang=`` is remembered in a cookie."""
    language, chosen = pick_language(request)
    t = translator(language)
    context = _context(request)
    page = {
        "request": request,
        "t": t,
        "lang": language,
        "principal": principal,
        "clock": Clock(context.registry),
        "now": utcnow(),
        "i18n": {
            **{
                group: t.group(group)
                for group in ("kind", "department", "state", "action", "priority", "ui")
            },
            # The script shows times in each site's zone, as the server does.
            "zones": {site.id: site.timezone for site in context.registry.sites},
        },
        "attachment_megabytes": context.web.attachment_max_bytes // (1024 * 1024),
        **values,
    }
    response = _web(request).templates.TemplateResponse(
        request, template, page, status_code=status_code
    )
    if chosen:
        response.set_cookie(
            LANGUAGE_COOKIE, language, max_age=365 * 24 * 3600, samesite="lax", httponly=False
        )
    response.headers["Cache-Control"] = "no-store"
    return response


def allowed_actions(principal: Principal, case: Case, offered: Sequence[Action]) -> list[Action]:
    """The actions of ``offered`` that ``principal`` may take on ``case`` as it stands."""
    return [
        action
        for action in offered
        if principal.may(action) and CaseState(case.state) in TRANSITIONS[action][0]
    ]


@dataclass(frozen=True)
class Frame:
    """One evidence image with the zone and box to draw over it (in the image's pixels)."""

    url: str
    original_url: str | None
    label: str
    width: int
    height: int
    captured_at: datetime
    zone_points: str | None
    box: tuple[float, float, float, float] | None


def _zone_of(registry: SiteRegistry, case: Case) -> ZoneConfig | None:
    found = registry.camera(case.camera_id)
    return found[2].zone(case.zone_id) if found else None


def evidence_frames(registry: SiteRegistry, case: Case, principal: Principal) -> list[Frame]:
    zone = _zone_of(registry, case)
    points = " ".join(f"{x:g},{y:g}" for x, y in zone.polygon) if zone else None
    box = None
    if None not in (case.box_x1, case.box_y1, case.box_x2, case.box_y2):
        box = (
            float(case.box_x1 or 0),
            float(case.box_y1 or 0),
            float(case.box_x2 or 0),
            float(case.box_y2 or 0),
        )
    frames = []
    for item in case.evidence:
        url = f"{API_PREFIX}/evidence/{item.sha256}"  # the API serves the blurred copy by default
        scene = item.label not in _CROPS
        frames.append(
            Frame(
                url=url,
                original_url=f"{url}?original=true"
                if principal.role is Role.DISPATCHER and item.redacted_sha256
                else None,
                label=item.label,
                width=item.width,
                height=item.height,
                captured_at=item.captured_at,
                zone_points=points if scene else None,
                box=box if scene else None,
            )
        )
    return frames


def _load_case(session: Session, principal: Principal, case_id: int) -> Case:
    case = session.get(
        Case, case_id, options=[selectinload(Case.evidence), selectinload(Case.transitions)]
    )
    if case is None or not principal.sees(case):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"case {case_id} not found")
    return case


def _visible(principal: Principal) -> Any:
    """A select of the cases ``principal`` may see."""
    query = select(Case)
    department = scope_of(principal)
    if department is not None:
        query = query.where(Case.department == department)
    return query


def open_cases_by_deadline(session: Session, principal: Principal, limit: int = 50) -> list[Case]:
    """The SLA board: open cases, nearest resolve deadline first."""
    query = (
        _visible(principal)
        .where(Case.state.in_([state.value for state in OPEN_STATES]))
        .order_by(Case.sla_due_at.is_(None), Case.sla_due_at, Case.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def recent_cases(session: Session, principal: Principal, limit: int = 50) -> list[Case]:
    query = _visible(principal).order_by(Case.updated_at.desc(), Case.id.desc()).limit(limit)
    return list(session.scalars(query))


def worker_queue(session: Session, principal: Principal) -> list[Case]:
    """A department's cases still to work (dispatched, accepted, or resolved and waiting for a
    check), nearest deadline first."""
    states = [CaseState.DISPATCHED, CaseState.ACCEPTED, CaseState.RESOLVED]
    query = (
        _visible(principal)
        .where(Case.state.in_([state.value for state in states]))
        .order_by(Case.sla_due_at.is_(None), Case.sla_due_at, Case.id)
        .limit(200)
    )
    return list(session.scalars(query))


def deadline_class(case: Case, now: datetime) -> str:
    if case.sla_due_at is None or case.state not in OPEN_STATES:
        return ""
    if case.overdue or case.sla_due_at <= now:
        return "overdue"
    if case.sla_due_at - now <= DUE_SOON:
        return "due-soon"
    return ""


def minutes_to(deadline: datetime | None, now: datetime) -> int | None:
    if deadline is None:
        return None
    return int((deadline - now).total_seconds() // 60)


# --- charts and the site plan ---------------------------------------------------------------------


def charts(stats: Stats, t: Translator) -> dict[str, Any]:
    local_days = [(f"{d.day.month}/{d.day.day}", d.cases) for d in stats.days]
    empty = t("ui.no_data")
    series = (t("ui.median"), t("ui.p90"))
    return {
        "per_day": column_chart(local_days, empty=empty),
        "per_department": bar_chart(
            [(t.name("department", k), [v]) for k, v in sorted(stats.per_department.items())],
            empty=empty,
        ),
        "per_kind": bar_chart(
            [(t.name("kind", k), [v]) for k, v in sorted(stats.per_kind.items())], empty=empty
        ),
        "close_by_kind": bar_chart(
            [
                (t.name("kind", c.key), [c.median_minutes, c.p90_minutes])
                for c in stats.close_time_by_kind
            ],
            series=series,
            empty=empty,
        ),
        "close_by_department": bar_chart(
            [
                (t.name("department", c.key), [c.median_minutes, c.p90_minutes])
                for c in stats.close_time_by_department
            ],
            series=series,
            empty=empty,
        ),
    }


@dataclass(frozen=True)
class PlanDot:
    camera: CameraPublic
    x: float
    y: float


@dataclass(frozen=True)
class SitePlan:
    site_id: str
    name: str
    image_url: str | None
    dots: list[PlanDot]
    unplaced: list[CameraPublic]


PLAN_WIDTH = 1000
PLAN_HEIGHT = 600


def site_plans(registry: SiteRegistry, cameras: list[CameraPublic]) -> list[SitePlan]:
    """Each site's plan: cameras with a plan position as dots, the rest listed beside it."""
    plans = []
    for site in registry.sites:
        dots: list[PlanDot] = []
        unplaced: list[CameraPublic] = []
        for camera in cameras:
            if camera.site_id != site.id:
                continue
            found = registry.camera(camera.camera_id)
            position = found[2].plan_position if found else None
            if position is None:
                unplaced.append(camera)
            else:
                dots.append(PlanDot(camera, position.x * PLAN_WIDTH, position.y * PLAN_HEIGHT))
        plans.append(
            SitePlan(
                site_id=site.id,
                name=site.name or site.id,
                image_url=f"/console/plans/{site.id}" if site.plan_image else None,
                dots=dots,
                unplaced=unplaced,
            )
        )
    return plans


# --- routes ---------------------------------------------------------------------------------------

pages = APIRouter(route_class=PageRoute, include_in_schema=False)


def _home_of(principal: Principal) -> str:
    return "/worker" if principal.role is Role.WORKER else "/console"


@pages.get("/")
def home(principal: PrincipalDep) -> RedirectResponse:
    return RedirectResponse(_home_of(principal), status.HTTP_303_SEE_OTHER)


@pages.get("/login")
def login_page(request: Request) -> Response:
    # Only a path on this site; the script resolves it against the origin once more.
    return render(
        request, "login.html", None, next_target=local_target(request.query_params.get("next"))
    )


@pages.get(PASSWORD_PAGE)
def password_page(request: Request, identified: IdentifiedDep) -> Response:
    """Change one's own password; the only page open while the account must change it."""
    if identified.account is None:  # a config token has no password
        return RedirectResponse(_home_of(identified.actor), status.HTTP_303_SEE_OTHER)
    return render(
        request,
        "password.html",
        identified.actor,
        must_change=identified.account.must_change_password,
        next_target=local_target(request.query_params.get("next")),
        min_length=MIN_PASSWORD_LENGTH,
    )


@pages.get("/console")
def console(
    request: Request, session: SessionDep, principal: PrincipalDep, stats_cache: StatsCacheDep
) -> Response:
    """The dispatch console: live feed, cases, SLA board, camera plan, charts."""
    if principal.role not in CONSOLE_ROLES:
        return RedirectResponse(_home_of(principal), status.HTTP_303_SEE_OTHER)
    context = _context(request)
    # The feed resumes after this seq: read before the page's lists, so no change falls between.
    seq = head_seq(context.session_factory)
    language, _ = pick_language(request)
    t = translator(language)
    cameras = list_cameras(session, principal, context)
    stats = stats_cache.get(session, scope_of(principal), context.registry.sites[0].timezone)
    feed = read_entries(
        context.session_factory, max(0, seq - 30), 30, department=scope_of(principal)
    )
    return render(
        request,
        "console.html",
        principal,
        cases=recent_cases(session, principal),
        board=open_cases_by_deadline(session, principal),
        plans=site_plans(context.registry, cameras),
        plan_size=(PLAN_WIDTH, PLAN_HEIGHT),
        charts=charts(stats, t),
        feed=[event.data for event in reversed(feed)],
        feed_seq=seq,
        deadline_class=deadline_class,
        minutes_to=minutes_to,
    )


@pages.get("/console/fragments/cases")
def cases_fragment(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    return render(
        request,
        "_cases.html",
        principal,
        cases=recent_cases(session, principal),
        deadline_class=deadline_class,
    )


@pages.get("/console/fragments/sla")
def sla_fragment(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    return render(
        request,
        "_sla.html",
        principal,
        board=open_cases_by_deadline(session, principal),
        deadline_class=deadline_class,
        minutes_to=minutes_to,
    )


def _panel_values(request: Request, case: Case, principal: Principal) -> dict[str, Any]:
    context = _context(request)
    return {
        "case": case,
        "frames": evidence_frames(context.registry, case, principal),
        "actions": allowed_actions(principal, case, CONSOLE_ACTIONS),
        "needs_reason": NEEDS_REASON,
        "departments": list(Department),
        "deadline_class": deadline_class,
        "minutes_to": minutes_to,
    }


@pages.get("/console/cases/{case_id}")
def console_case(
    case_id: int, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    """One case on a page of its own (a link to send, a screenshot)."""
    case = _load_case(session, principal, case_id)
    return render(request, "case_page.html", principal, **_panel_values(request, case, principal))


@pages.get("/console/cases/{case_id}/panel")
def console_case_panel(
    case_id: int, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    case = _load_case(session, principal, case_id)
    return render(request, "_panel.html", principal, **_panel_values(request, case, principal))


@pages.get("/console/plans/{site_id}")
def plan_image(site_id: str, request: Request, _principal: PrincipalDep) -> Response:
    """A site's plan image (SiteConfig.plan_image), the camera dots' background."""
    site = next((s for s in _context(request).registry.sites if s.id == site_id), None)
    if site is None or site.plan_image is None or not Path(site.plan_image).is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no plan image for site {site_id}")
    media_type = mimetypes.guess_type(str(site.plan_image))[0] or "application/octet-stream"
    return FileResponse(site.plan_image, media_type=media_type)


@pages.get("/worker")
def worker(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    """The department worker's queue, nearest deadline first."""
    if principal.role not in WORKER_ROLES:
        return RedirectResponse(_home_of(principal), status.HTTP_303_SEE_OTHER)
    seq = head_seq(_context(request).session_factory)  # before the queue: see console()
    return render(
        request,
        "worker.html",
        principal,
        queue=worker_queue(session, principal),
        deadline_class=deadline_class,
        minutes_to=minutes_to,
        feed_seq=seq,
    )


@pages.get("/worker/cases/{case_id}")
def worker_case(
    case_id: int, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    case = _load_case(session, principal, case_id)
    context = _context(request)
    return render(
        request,
        "worker_case.html",
        principal,
        case=case,
        frames=evidence_frames(context.registry, case, principal),
        actions=allowed_actions(principal, case, WORKER_ACTIONS),
        may_attach=principal.may(Action.ATTACH)
        and CaseState(case.state) in TRANSITIONS[Action.ATTACH][0],
        needs_reason=NEEDS_REASON,
        deadline_class=deadline_class,
        minutes_to=minutes_to,
    )


# --- after-photo upload -------------------------------------------------------------------------

uploads = APIRouter(prefix=API_PREFIX)


def _refuse(request: Request, code: int, reason: str, message: str) -> HTTPException:
    _web(request).attachments_refused.labels(reason=reason).inc()
    log.warning("after-photo refused (%s): %s", reason, message)
    return HTTPException(code, message)


MULTIPART_OVERHEAD = 64 * 1024  # boundary lines and part headers around the file itself
_PHOTO_FORM = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "the after-photo: JPEG or PNG",
                    }
                },
            }
        }
    },
}


@dataclass(frozen=True)
class Upload:
    """The file of an after-photo upload, as sent (at most the size limit)."""

    filename: str
    data: bytes


async def receive_photo(request: Request, principal: PrincipalDep, context: ContextDep) -> Upload:
    """The upload's file, read only once the caller is known and may attach files, and only up to
    the limit, counted as it streams in; the file stays in memory, never spooled to disk.

    A ``File()`` parameter would have FastAPI read (and spool) the whole form before any
    dependency ran: an anonymous chunked upload once put 299 MB on disk before its 401.
    """
    if not principal.may(Action.ATTACH):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"a {principal.role} may not attach files")
    limit = context.web.attachment_max_bytes
    cap = limit + MULTIPART_OVERHEAD
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise _refuse(
            request,
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "not_multipart",
            "send the after-photo as the field 'file' of a multipart/form-data body",
        )

    async def capped() -> AsyncGenerator[bytes, None]:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > cap:
                raise _refuse(
                    request,
                    status.HTTP_413_CONTENT_TOO_LARGE,
                    "too_large",
                    f"the upload is larger than {cap} bytes; an after-photo may be at most "
                    f"{limit} bytes",
                )
            yield chunk

    parser = MultiPartParser(request.headers, capped(), max_files=1, max_fields=8)
    parser.spool_max_size = cap  # the file never outgrows memory: the stream stops first
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise _refuse(request, status.HTTP_400_BAD_REQUEST, "malformed", exc.message) from exc
    try:
        file = form.get("file")
        if not isinstance(file, StarletteUploadFile):
            raise _refuse(
                request,
                status.HTTP_400_BAD_REQUEST,
                "no_file",
                "the form has no file in its field 'file'",
            )
        return Upload(file.filename or "upload", await file.read())
    finally:
        await form.close()


@uploads.post(
    "/cases/{case_id}/attachments",
    response_model=EvidencePublic,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": _PHOTO_FORM},
    responses={
        400: {"description": "a malformed multipart body, or one without the field 'file'"},
        403: {"description": "this role may not attach files"},
        404: {"description": "no such case (or another department's)"},
        409: {"description": "the case is not being handled, or the file is attached already"},
        413: {"description": "the file is larger than the limit"},
        415: {"description": "not a JPEG or PNG image, or not a multipart/form-data body"},
    },
)
def attach_file(
    case_id: int,
    request: Request,
    upload: Annotated[Upload, Depends(receive_photo)],
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
) -> EvidencePublic:
    """Upload an after-photo to a case the department is handling: stored as evidence
    (label ``after_photo``) and written to the audit log as an ``attach`` entry."""
    case = _load_case(session, principal, case_id)
    limit = context.web.attachment_max_bytes
    data, name = upload.data, upload.filename
    if len(data) > limit:
        raise _refuse(
            request,
            status.HTTP_413_CONTENT_TOO_LARGE,
            "too_large",
            f"{name}: larger than {limit} bytes",
        )
    if not data:
        raise _refuse(request, status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "empty", f"{name}: empty")
    try:
        content_type, width, height = image_type_and_size(data)
    except ImageError as exc:
        raise _refuse(
            request, status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "not_an_image", f"{name}: {exc}"
        ) from exc
    if width == 0 or height == 0:
        raise _refuse(
            request, status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "not_an_image", f"{name}: no pixels"
        )
    sha256 = _sha256(data)
    if any(item.sha256 == sha256 for item in case.evidence):
        raise _refuse(
            request, status.HTTP_409_CONFLICT, "duplicate", f"{name} is already on case {case_id}"
        )
    now = utcnow()
    try:
        context.workflow.apply(
            session,
            case,
            Command(
                action=Action.ATTACH,
                detail={
                    "sha256": sha256,
                    "label": AFTER_PHOTO,
                    "content_type": content_type,
                    "size": len(data),
                    "filename": name[:200],
                },
            ),
            principal,
            now,
        )
    except NotPermittedError as exc:
        session.rollback()
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except (IllegalTransitionError, MissingInputError) as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    # The file first: a row must never name a file that is not there (a crash leaves at most an
    # unnamed file, which a retry of the same photo reuses).
    context.evidence_store.put(data, sha256)
    if session.get(Evidence, sha256) is None:
        session.add(
            Evidence(
                sha256=sha256,
                content_type=content_type,
                size=len(data),
                width=width,
                height=height,
                stored_at=now,
            )
        )
        session.flush()
    session.add(
        CaseEvidence(
            case_id=case.id,
            sha256=sha256,
            label=AFTER_PHOTO,
            captured_at=now,
            width=width,
            height=height,
        )
    )
    session.commit()
    url = f"{API_PREFIX}/evidence/{sha256}"
    return EvidencePublic(
        sha256=sha256, label=AFTER_PHOTO, captured_at=now, width=width, height=height, url=url
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- wiring -------------------------------------------------------------------------------------


def _counter(registry: CollectorRegistry) -> Counter:
    name = "civicwatch_attachments_refused"
    description = "After-photo uploads refused, by reason"
    try:
        return Counter(name, description, ["reason"], registry=registry)
    except ValueError:  # a second app on the same registry (tests): count apart
        return Counter(name, description, ["reason"], registry=None)


ATTACHMENT_PATH = re.compile(rf"{API_PREFIX}/cases/[^/]+/attachments")


class UploadSizeGuard:
    """Refuses an after-photo whose declared size is over the limit before its body is read.

    FastAPI reads a multipart form (spooling its file to disk) before the route runs, so the
    route's own check alone would accept gigabytes onto the disk first. A body sent without
    Content-Length is counted as it streams in (receive_photo).
    """

    def __init__(self, app: ASGIApp, limit: int, refused: Counter) -> None:
        self._app = app
        self._limit = limit
        self._refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and ATTACHMENT_PATH.fullmatch(scope["path"])
        ):
            declared = dict(scope["headers"]).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self._limit + MULTIPART_OVERHEAD:
                self._refused.labels(reason="too_large").inc()
                log.warning("after-photo refused (too_large): %s bytes declared", int(declared))
                message = (
                    f"the upload is {int(declared)} bytes; an after-photo may be at most "
                    f"{self._limit} bytes"
                )
                refusal = JSONResponse({"detail": message}, status.HTTP_413_CONTENT_TOO_LARGE)
                await refusal(scope, receive, send)
                return
        await self._app(scope, receive, send)


def install_web(app: FastAPI, context: ApiContext) -> None:
    """Add the pages, static files, live feed, stats and upload routes to ``app``."""
    templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))
    app.state.web = WebState(
        templates=templates, attachments_refused=_counter(context.metrics_registry)
    )
    app.state.feed_hub = FeedHub(context.session_factory, context.web.feed_poll_seconds)
    app.state.stats_cache = StatsCache(context.web.stats_max_age_seconds)
    app.add_middleware(
        UploadSizeGuard,
        limit=context.web.attachment_max_bytes,
        refused=app.state.web.attachments_refused,
    )
    app.mount("/static", StaticFiles(directory=str(WEB_DIR / "static")), name="static")
    app.include_router(feed_router)
    app.include_router(stats_router)
    app.include_router(uploads)
    app.include_router(pages)
