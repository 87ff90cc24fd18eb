"""The warning stage (先提醒后执法) from the console or the API: issue, list, revoke (issue 13).

The same people as permits (property management's supervisors and workers, the command centre's
dispatchers); every change goes on the exemption audit chain and reaches the site's gateways as a
newly signed rule document. docs/exemptions.md, "Warning stage".
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from contracts.events import Identifier
from contracts.exemptions import MAX_GRACE_MINUTES, WarningChannel, WarningStageRule
from dispatch.exemptions import ExemptionError, RuleNotFoundError, RulePublic
from dispatch.http.deps import API_PREFIX, ContextDep, PrincipalDep
from dispatch.http.exemptions import _REFUSALS, RevokeIn, RuleIdPath, _refuse, _service

router = APIRouter(prefix=API_PREFIX, tags=["exemptions"])

RULE_TYPE = "warning_stage"


class WarningStageIn(BaseModel):
    """A warning stage as the console issues it; ``valid_from`` absent: from now."""

    model_config = ConfigDict(extra="forbid")

    site_id: Identifier
    zone_id: Identifier | None = None
    grace_minutes: float = Field(gt=0, le=MAX_GRACE_MINUTES)
    channels: list[WarningChannel] = Field(min_length=1, max_length=len(WarningChannel))
    repeat_warnings: int = Field(ge=1, le=100)
    repeat_days: int = Field(ge=1, le=365)
    valid_from: AwareDatetime | None = None
    valid_to: AwareDatetime | None = None
    reason: str = Field(min_length=1, max_length=200)


@router.get("/exemptions/warning-stages", responses=_REFUSALS)
def get_warning_stages(
    context: ContextDep, principal: PrincipalDep, site_id: str | None = None
) -> list[RulePublic]:
    """Warning stages in force or to come (not revoked), newest first."""
    service = _service(context, principal)
    return [rule for rule in service.list_rules(site_id) if rule.type == RULE_TYPE]


@router.post("/exemptions/warning-stages", status_code=status.HTTP_201_CREATED, responses=_REFUSALS)
def post_warning_stage(
    context: ContextDep, principal: PrincipalDep, stage: WarningStageIn
) -> RulePublic:
    """Warn before enforcing on a site or one zone: grace, channels, K warnings in D days."""
    service = _service(context, principal)
    now = service.now()
    fields = stage.model_dump() | {
        "id": f"warn-{uuid.uuid4().hex[:20]}",
        "issued_at": now,
        "valid_from": stage.valid_from or now,
    }
    try:
        rule = WarningStageRule.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _refuse(
            ExemptionError(
                "invalid_request",
                f"invalid warning stage: {first['msg']}",
                {
                    "field": ".".join(str(p) for p in first["loc"]) or "channels",
                    "problem": first["msg"],
                },
            )
        ) from exc
    try:
        return service.issue_rule(rule, principal.name)
    except ExemptionError as exc:
        raise _refuse(exc) from exc


@router.post(
    "/exemptions/warning-stages/{rule_id}/revoke",
    responses={**_REFUSALS, 409: {"description": "revoked"}},
)
def revoke_warning_stage(
    context: ContextDep, principal: PrincipalDep, rule_id: RuleIdPath, body: RevokeIn
) -> RulePublic:
    """Revoke a warning stage; the gateways enforce at once again (a new rule document)."""
    service = _service(context, principal)
    try:
        if service.get(rule_id).type != RULE_TYPE:
            raise RuleNotFoundError(
                "not_found", f"warning stage {rule_id} not found", {"what": rule_id}
            )
        return service.revoke(rule_id, principal.name, body.reason)
    except ExemptionError as exc:
        raise _refuse(exc) from exc
