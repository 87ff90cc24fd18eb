"""The REST API for the command centre, departments and other systems.

Everything it needs lives on ``app.state.api`` (an ApiContext built by the composition root);
routes get it through ``Annotated[..., Depends()]`` dependencies.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    status,
)
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, or_, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload

from contracts.events import ViolationKind
from contracts.images import EXTENSIONS, image_type
from contracts.sites import SiteRegistry
from dispatch.accounts import AccountService
from dispatch.apidocs import install_api_docs
from dispatch.auth import PrincipalDep as PrincipalDep  # re-exported: routers import from here
from dispatch.auth import get_principal as get_principal
from dispatch.auth import router as auth_router
from dispatch.config import SCOPED_ROLES, ApiSettings, Department, Role
from dispatch.ops import ReadinessCheck, always_ready, install_operations
from dispatch.schemas import (
    ActionProblem,
    CameraPublic,
    CaseAction,
    CaseDetail,
    CasePublic,
    EvidencePublic,
    ObjectBoxPublic,
    TransitionPublic,
)
from dispatch.security import SecurityHeaders
from dispatch.web.settings import WebOptions
from dispatch.workflow import (
    Actor,
    Command,
    IllegalTransitionError,
    MissingInputError,
    NotPermittedError,
    Workflow,
)
from storage.database import SessionFactory
from storage.evidence_store import EvidenceError, EvidenceStore
from storage.tables import (
    CameraStatusRow,
    Case,
    CaseEvidence,
    CaseState,
    Evidence,
    GatewayStatusRow,
)

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
Sha256Path = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
# Row ids fit the database's INTEGER column; a larger one is a client error, not a crash.
RowIdPath = Annotated[int, Path(ge=1, le=2_147_483_647)]


@dataclass(frozen=True)
class ApiContext:
    """Everything the routes use, built by the composition root. New parts get a field here."""

    session_factory: SessionFactory
    evidence_store: EvidenceStore
    settings: ApiSettings
    registry: SiteRegistry
    metrics_registry: CollectorRegistry
    workflow: Workflow
    # /readyz: what keeps the server from serving (e.g. ingest not connected to the broker).
    readiness: ReadinessCheck = always_ready
    # The console and worker view: feed polling, upload size (dispatch/web).
    web: WebOptions = field(default_factory=WebOptions)
    # People's accounts and sessions (dispatch/auth.py); None: config tokens only.
    accounts: AccountService | None = None


Principal = Actor


def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.api
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]


def get_session(context: ContextDep) -> Iterator[Session]:
    with context.session_factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def _not_found(what: str) -> HTTPException:
    # Another department's case is "not found", never "forbidden": its existence is not leaked.
    return HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")


# Everything CasePublic reads from a case's relationships, loaded up front: one query per
# relationship for a whole page instead of two lazy loads per case (N+1).
CASE_PUBLIC_LOADS = (
    selectinload(Case.evidence),
    selectinload(Case.violations),
    selectinload(Case.related_links),
)


def _visible_case(session: Session, principal: Principal, case_id: int) -> Case:
    case = session.get(Case, case_id, options=[*CASE_PUBLIC_LOADS, selectinload(Case.transitions)])
    if case is None or not principal.sees(case):
        raise _not_found(f"case {case_id}")
    return case


def _case_public(case: Case) -> CasePublic:
    """A case with links to its evidence; the case's evidence must be loaded."""
    columns = {name: getattr(case, name) for name in CasePublic.model_fields if name != "evidence"}
    evidence = [
        EvidencePublic(
            sha256=item.sha256,
            label=item.label,
            captured_at=item.captured_at,
            width=item.width,
            height=item.height,
            url=_evidence_url(item.sha256),
            redacted_sha256=item.redacted_sha256,
            redacted_url=_evidence_url(item.redacted_sha256) if item.redacted_sha256 else None,
        )
        for item in case.evidence
    ]
    return CasePublic(**columns, evidence=evidence)


def _evidence_url(sha256: str) -> str:
    return f"{API_PREFIX}/evidence/{sha256}"


def _case_detail(case: Case) -> CaseDetail:
    box = None
    if None not in (case.box_x1, case.box_y1, case.box_x2, case.box_y2):
        box = ObjectBoxPublic(x1=case.box_x1, y1=case.box_y1, x2=case.box_x2, y2=case.box_y2)
    return CaseDetail(
        **_case_public(case).model_dump(),
        object_box=box,
        transitions=[TransitionPublic.model_validate(t) for t in case.transitions],
    )


api = APIRouter(prefix=API_PREFIX)


@api.get("/cases", response_model=list[CasePublic])
def list_cases(
    session: SessionDep,
    principal: PrincipalDep,
    department: Department | None = None,
    state: CaseState | None = None,
    kind: ViolationKind | None = None,
    site_id: str | None = None,
    camera_id: str | None = None,
    overdue: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2_147_483_647)] = 0,
) -> list[CasePublic]:
    """Cases by SLA due time (soonest first); a department token only ever sees its own."""
    query = select(Case)
    if principal.role in SCOPED_ROLES:
        query = query.where(Case.department == principal.department)
    filters = {
        Case.department: department,
        Case.state: state,
        Case.kind: kind,
        Case.site_id: site_id,
        Case.camera_id: camera_id,
        Case.overdue: overdue,
    }
    for column, value in filters.items():
        if value is not None:
            query = query.where(column == value)
    query = query.order_by(Case.sla_due_at.is_(None), Case.sla_due_at, Case.id)
    query = query.options(*CASE_PUBLIC_LOADS).limit(limit).offset(offset)
    return [_case_public(case) for case in session.scalars(query)]


@api.get("/cases/{case_id}", response_model=CaseDetail)
def get_case(case_id: RowIdPath, session: SessionDep, principal: PrincipalDep) -> CaseDetail:
    return _case_detail(_visible_case(session, principal, case_id))


@api.post(
    "/cases/{case_id}/actions",
    response_model=CaseDetail,
    responses={
        403: {"description": "the caller's role may not take this action"},
        409: {"description": "the action does not apply in the case's state"},
        422: {
            "model": ActionProblem,
            "description": "invalid input, or input this action needs (e.g. a reason) missing",
        },
    },
)
def act_on_case(
    case_id: RowIdPath,
    command: CaseAction,
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
) -> CaseDetail:
    case = _visible_case(session, principal, case_id)
    try:
        context.workflow.apply(
            session,
            case,
            Command(
                action=command.action,
                reason=command.reason,
                department=command.department,
                duplicate_of=command.duplicate_of,
            ),
            principal,
        )
    except NotPermittedError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except IllegalTransitionError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except MissingInputError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    session.commit()
    return _case_detail(_visible_case(session, principal, case_id))


@api.get(
    "/evidence/{sha256}",
    response_class=Response,
    responses={
        200: {
            "content": {"image/jpeg": {}, "image/png": {}},
            "description": "the image; a stored file that is neither is a download",
        }
    },
)
def get_evidence(
    sha256: Sha256Path,
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
    original: Annotated[
        bool,
        Query(description="the unredacted frame; only the command centre (dispatchers) gets it"),
    ] = False,
) -> Response:
    """An evidence image: by default the copy with bystanders' faces blurred, where one exists.

    ``X-Evidence-Copy`` says which was served: ``redacted`` or ``original`` (a frame the edge
    sent no redacted copy of is served as it is).
    """
    mentions = or_(CaseEvidence.sha256 == sha256, CaseEvidence.redacted_sha256 == sha256)
    visible = select(CaseEvidence.redacted_sha256).join(Case).where(mentions)
    if principal.role in SCOPED_ROLES:
        visible = visible.where(Case.department == principal.department)
    # One link answers both questions (visible at all; any redacted copy): a redacted one first.
    visible = visible.order_by(CaseEvidence.redacted_sha256.is_(None)).limit(1)
    links = session.execute(visible).all()
    if not links:
        raise _not_found(f"evidence {sha256}")
    redacted = next((row.redacted_sha256 for row in links if row.redacted_sha256), None)
    wants_original = original and principal.role is Role.DISPATCHER
    served = sha256 if wants_original or redacted is None else redacted
    row = session.get(Evidence, served)
    if row is None:
        raise _not_found(f"evidence {served}")
    try:
        data = context.evidence_store.read(served)
    except (EvidenceError, FileNotFoundError) as exc:
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc)) from exc
    copy = "redacted" if served == redacted else "original"
    # The type comes from the bytes, never from the stored (once free-text) content type, and
    # the file name from the hash only: nothing a camera wrote reaches the browser as markup.
    media_type = image_type(data)
    if media_type is None:
        log.warning("evidence %s is not a JPEG or PNG: served as a download", served)
        disposition = f'attachment; filename="{served}.bin"'
    else:
        disposition = f'inline; filename="{served}.{EXTENSIONS[media_type]}"'
    return Response(
        data,
        media_type=media_type or "application/octet-stream",
        headers={
            # Never kept by the browser: the same URL is the original for a dispatcher and the
            # redacted copy for whoever signs in next on that browser.
            "Cache-Control": "no-store",
            "Content-Disposition": disposition,
            "X-Evidence-Copy": copy,
        },
    )


@api.get("/cameras", response_model=list[CameraPublic])
def list_cameras(
    session: SessionDep, _principal: PrincipalDep, context: ContextDep
) -> list[CameraPublic]:
    """Every registered camera with the last status it and its gateway reported."""
    cameras = {row.camera_id: row for row in session.scalars(select(CameraStatusRow))}
    gateways = {row.gateway_id: row for row in session.scalars(select(GatewayStatusRow))}
    result = []
    for site in context.registry.sites:
        for gateway in site.gateways:
            gateway_row = gateways.get(gateway.id)
            for camera in gateway.cameras:
                row = cameras.get(camera.id)
                result.append(
                    CameraPublic(
                        site_id=site.id,
                        gateway_id=gateway.id,
                        camera_id=camera.id,
                        name=camera.name,
                        health=row.health if row else None,
                        detail=row.detail if row else "",
                        reported_at=row.at if row else None,
                        frames_read=row.frames_read if row else 0,
                        detection_fps=row.detection_fps if row else 0.0,
                        gateway_state=gateway_row.state if gateway_row else None,
                        gateway_reported_at=gateway_row.at if gateway_row else None,
                        gateway_outbox_pending=gateway_row.outbox_pending if gateway_row else None,
                        problems=list(row.problems) if row else [],
                        detection_path=row.detection_path if row else None,
                    )
                )
    return result


class CasesByStateCollector(Collector):
    """A gauge read from the database at scrape time, so it is right after a restart too."""

    def __init__(self, session_factory: SessionFactory) -> None:
        self._sessions = session_factory

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily("civicwatch_cases", "Cases by workflow state", labels=["state"])
        with self._sessions() as session:
            rows = session.execute(select(Case.state, func.count()).group_by(Case.state))
            counts: dict[str, int] = {state: count for state, count in rows}
        for state in CaseState:
            gauge.add_metric([state.value], counts.get(state.value, 0))
        yield gauge


def create_app(context: ApiContext) -> FastAPI:
    """The whole HTTP surface (API, Open311, console pages) over one ApiContext."""
    # /docs is served from local assets (dispatch/apidocs.py); ReDoc would need a CDN.
    app = FastAPI(
        title="civicwatch",
        version="1",
        summary="cases from camera violations",
        docs_url=None,
        redoc_url=None,
    )
    install_api_docs(app)
    app.state.api = context
    session_factory = context.session_factory
    cases_registry = CollectorRegistry()
    cases_registry.register(CasesByStateCollector(session_factory))
    install_operations(app, session_factory, context.registry, cases_registry)
    app.include_router(api)
    app.include_router(auth_router)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "not ready: the detail says why"}})
    def readyz(session: SessionDep, context: ContextDep) -> dict[str, str]:
        """Ready when the database answers and the background parts (ingest's broker
        connections) say they are up."""
        try:
            session.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, f"database unreachable: {exc}"
            ) from exc
        problems = context.readiness()
        if problems:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "; ".join(problems))
        return {"status": "ready"}

    @app.get("/metrics", response_class=Response)
    def metrics(context: ContextDep) -> Response:
        body = generate_latest(context.metrics_registry) + generate_latest(cases_registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    # Imported here: the web package's routes import this module's dependencies.
    from dispatch.web.pages import install_web

    install_web(app, context)
    # Imported here too, for the same reason: they build on this module's dependencies.
    from dispatch.notifications import install_notifications
    from dispatch.open311 import install_open311

    install_notifications(app, cases_registry)
    install_open311(app)
    app.add_middleware(SecurityHeaders)  # added last: the outermost, so on every response
    return app
