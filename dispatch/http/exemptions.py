"""Temporary permits for property management: issue, list, revoke (issue 13).

Property management's supervisors and workers and the command centre's dispatchers may; everybody
else is refused. Every change is on the exemption audit chain and reaches the site's gateways as
a newly signed rule document (dispatch/exemptions.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict, Field

from dispatch.config import Department, Role
from dispatch.errors import ApiError
from dispatch.exemptions import (
    ExemptionError,
    ExemptionService,
    GatewayVersion,
    PermitIn,
    RuleNotFoundError,
    RulePublic,
    gateway_versions,
)
from dispatch.http.deps import API_PREFIX, ContextDep, Principal, PrincipalDep, SessionDep

router = APIRouter(prefix=API_PREFIX, tags=["exemptions"])

RuleIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
_REFUSALS: dict[int | str, dict[str, str]] = {
    403: {"description": "the caller's role may not manage permits"},
    404: {"description": "exemptions are off (no signing key), or no such site, zone or permit"},
}


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=200)


def may_manage(principal: Principal) -> bool:
    if principal.role is Role.DISPATCHER:
        return True
    return (
        principal.role in (Role.SUPERVISOR, Role.WORKER)
        and principal.department is Department.PROPERTY_MANAGEMENT
    )


def _service(context: ContextDep, principal: Principal) -> ExemptionService:
    if not may_manage(principal):
        raise ApiError(
            status.HTTP_403_FORBIDDEN,
            "forbidden",
            detail="only property management and dispatchers manage permits",
        )
    if context.exemptions is None:  # off, as if the routes did not exist (not a server error)
        raise ApiError(
            status.HTTP_404_NOT_FOUND,
            "not_found",
            {"what": "exemptions"},
            detail="exemptions are off: no rules signing key is configured",
        )
    return context.exemptions


def _refuse(exc: ExemptionError) -> ApiError:
    code = {
        "not_found": status.HTTP_404_NOT_FOUND,
        "conflict": status.HTTP_409_CONFLICT,
    }.get(exc.code, status.HTTP_422_UNPROCESSABLE_CONTENT)
    if isinstance(exc, RuleNotFoundError):
        code = status.HTTP_404_NOT_FOUND
    return ApiError(code, exc.code, exc.params, detail=exc.detail)


@router.get("/exemptions/permits", responses=_REFUSALS)
def get_permits(
    context: ContextDep, principal: PrincipalDep, site_id: str | None = None
) -> list[RulePublic]:
    """Permits in force or to come (not revoked), newest first."""
    service = _service(context, principal)
    return [rule for rule in service.list_rules(site_id) if rule.type == "permit"]


@router.post(
    "/exemptions/permits",
    status_code=status.HTTP_201_CREATED,
    responses=_REFUSALS,
)
def post_permit(context: ContextDep, principal: PrincipalDep, permit: PermitIn) -> RulePublic:
    """Issue a temporary permit: a plate on a site or one zone, from-to, with a reason."""
    service = _service(context, principal)
    try:
        return service.issue_permit(permit, principal.name)
    except ExemptionError as exc:
        raise _refuse(exc) from exc


@router.post(
    "/exemptions/permits/{rule_id}/revoke",
    responses={
        **_REFUSALS,
        409: {"description": "revoked"},
    },
)
def revoke_permit(
    context: ContextDep, principal: PrincipalDep, rule_id: RuleIdPath, body: RevokeIn
) -> RulePublic:
    """Revoke a permit; the gateways get the new rule document at once."""
    service = _service(context, principal)
    try:
        if service.get(rule_id).type != "permit":
            raise RuleNotFoundError("not_found", f"permit {rule_id} not found", {"what": rule_id})
        return service.revoke(rule_id, principal.name, body.reason)
    except ExemptionError as exc:
        raise _refuse(exc) from exc


def may_see_gateways(principal: Principal) -> bool:
    """Who manages permits, and admins (who run the installation)."""
    return may_manage(principal) or principal.role is Role.ADMIN


@router.get("/exemptions/gateways", responses={403: _REFUSALS[403]})
def get_gateways(
    context: ContextDep, principal: PrincipalDep, session: SessionDep
) -> list[GatewayVersion]:
    """Each gateway's running rule document (its retained status) against the newest the
    server signed for it; ``behind`` flags one that runs an older one or none."""
    if not may_see_gateways(principal):
        raise ApiError(
            status.HTTP_403_FORBIDDEN,
            "forbidden",
            detail="only property management, dispatchers and admins see the gateways' rules",
        )
    return gateway_versions(session, context.registry)
