"""What every route depends on: the ApiContext, a database session, the caller, path types, and
the one rule of which cases (and department rows) a caller may see.

Everything lives on ``app.state.api`` (an ApiContext built by the composition root); routes get
it through ``Annotated[..., Depends()]`` dependencies. Router modules import this module only,
never the app module, so the routers and the app factory form no import cycle.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Query, Request, status
from prometheus_client import CollectorRegistry
from sqlalchemy import ColumnElement, Select, and_, false, true
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.orm.interfaces import ORMOption

from contracts.exemptions import DEFAULT_PLATE_CONFIDENCE_FLOOR
from contracts.sites import SiteRegistry
from dispatch.accounts import AccountService
from dispatch.auth import PrincipalDep as PrincipalDep  # re-exported: routers import from here
from dispatch.case_counts import CaseCounts
from dispatch.config import SCOPED_ROLES, ApiSettings, ResidentSettings, Role, Tier
from dispatch.errors import ApiError
from dispatch.exemptions import ExemptionService
from dispatch.http.paths import API_PREFIX as API_PREFIX  # re-exported for the routers
from dispatch.ops import ReadinessCheck, always_ready
from dispatch.residents.intake import IntakeDeps
from dispatch.web.settings import WebOptions
from dispatch.workflow import Actor, Workflow
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from storage.tables import Case

# Row ids and offsets fit the database's INTEGER column; a larger one is a client error.
MAX_DATABASE_INTEGER = 2_147_483_647
RowIdPath = Annotated[int, Path(ge=1, le=MAX_DATABASE_INTEGER)]
PageLimit = Annotated[int, Query(ge=1, le=500)]
PageOffset = Annotated[int, Query(ge=0, le=MAX_DATABASE_INTEGER)]
Sha256Path = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]


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
    # Residents' reports (dispatch/residents): the intake's collaborators and settings; None:
    # no report routes (tests of other parts).
    intake: IntakeDeps | None = None
    residents: ResidentSettings = field(default_factory=ResidentSettings)
    # The QR posters' signing secret; None: QR posters are disabled (QR_DISABLED_MESSAGE).
    qr_secret: bytes | None = field(default=None, repr=False)
    # Exemption rules and permits (dispatch/exemptions.py); None: no signing key, routes refuse.
    exemptions: ExemptionService | None = None
    # server.exemptions.plate_confidence_floor: the reports' repeat plates rest on no weaker
    # reading (the same floor as the rule documents, ingest and the report command).
    plate_confidence_floor: float = DEFAULT_PLATE_CONFIDENCE_FLOOR
    # The case lists' exact totals, kept between case changes (dispatch/case_counts.py).
    case_counts: CaseCounts = field(default_factory=CaseCounts)


Principal = Actor


def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.api
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]


def get_session(context: ContextDep) -> Iterator[Session]:
    with context.session_factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_scrape_registry(request: Request) -> CollectorRegistry:
    """The app's own gauges, read at scrape time (cases, cameras, notifications, requests)."""
    registry: CollectorRegistry = request.app.state.scrape_registry
    return registry


ScrapeRegistryDep = Annotated[CollectorRegistry, Depends(get_scrape_registry)]


def not_found(what: str) -> ApiError:
    # Another department's case is "not found", never "forbidden": its existence is not leaked.
    return ApiError(status.HTTP_404_NOT_FOUND, "not_found", {"what": what})


# --- who sees what ------------------------------------------------------------------------------


def scope_of(principal: Principal) -> str | None:
    """The only department whose cases ``principal`` may see, or None for every case."""
    if principal.role is Role.COUNCIL:
        return ""  # no department is "": council members see no case until consultations scope them
    if principal.role in SCOPED_ROLES:
        return principal.department.value if principal.department else ""
    return None


def visible_cases(
    principal: Principal, department: InstrumentedAttribute[Any] = Case.department
) -> ColumnElement[bool]:
    """The SQL condition for the rows ``principal`` may see: cases by default, or any rows
    with a department column of their own (notifications). Council members see their site's
    community-tier cases (as ``Actor.sees`` says) and no department's other rows."""
    if principal.role is Role.COUNCIL:
        if department is not Case.department or not principal.site_id:
            return false()
        return and_(Case.site_id == principal.site_id, Case.tier == Tier.COMMUNITY.value)
    scope = scope_of(principal)
    return true() if scope is None else department == scope


RowT = TypeVar("RowT")


def where_given(query: Select[RowT], filters: Mapping[Any, object]) -> Select[RowT]:
    """``query`` narrowed to each column equal to its filter value; a None filter was not asked."""
    for column, value in filters.items():
        if value is not None:
            query = query.where(column == value)
    return query


def visible_case(
    session: Session, principal: Principal, case_id: int, options: tuple[ORMOption, ...] = ()
) -> Case:
    """The case, loaded with ``options``; 404 when there is none or ``principal`` may not see it."""
    case = session.get(Case, case_id, options=options)
    if case is None or not principal.sees(case):
        raise ApiError(status.HTTP_404_NOT_FOUND, "case_not_found", {"case_id": case_id})
    return case
