"""Routing rules, departments and API access."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from contracts.events import Identifier, ViolationKind
from contracts.sites import ZoneKind


class Department(StrEnum):
    LAW_ENFORCEMENT = "law_enforcement"  # 综合行政执法
    PUBLIC_SECURITY = "public_security"  # 公安
    FIRE_RESCUE = "fire_rescue"  # 消防
    PROPERTY_MANAGEMENT = "property_management"  # 物业


class Tier(StrEnum):
    DEPARTMENT = "department"  # 大事派单: dispatched to a department
    COMMUNITY = "community"  # 小事协商: property management or residents' council first


class Priority(StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Route(_Settings):
    department: Department
    tier: Tier = Tier.DEPARTMENT
    priority: Priority = Priority.NORMAL
    ack_minutes: int = Field(default=30, gt=0, description="time to accept the case")
    sla_minutes: int = Field(default=240, gt=0, description="time to resolve the case")
    escalate_to: Department | None = Field(
        default=None,
        description="community tier: the department it goes to when its SLA runs out",
    )

    @model_validator(mode="after")
    def _community_names_escalation(self) -> Route:
        if self.tier is Tier.COMMUNITY and self.escalate_to is None:
            raise ValueError("a community-tier route names escalate_to: who takes it over")
        if self.ack_minutes > self.sla_minutes:
            raise ValueError("ack_minutes exceeds sla_minutes")
        return self


class RoutingRule(Route):
    """First matching rule wins. An absent matcher matches anything."""

    kind: ViolationKind | None = None
    zone_kind: ZoneKind | None = None
    zone_id: Identifier | None = None
    site_id: Identifier | None = None


DEFAULT_ROUTES: dict[ViolationKind, Route] = {
    ViolationKind.ILLEGAL_PARKING: Route(
        department=Department.LAW_ENFORCEMENT,
        priority=Priority.NORMAL,
        ack_minutes=30,
        sla_minutes=120,
    ),
    ViolationKind.FIRE_LANE_BLOCKING: Route(
        department=Department.FIRE_RESCUE, priority=Priority.URGENT, ack_minutes=5, sla_minutes=30
    ),
    ViolationKind.ILLEGAL_STRUCTURE: Route(
        department=Department.LAW_ENFORCEMENT,
        priority=Priority.LOW,
        ack_minutes=24 * 60,
        sla_minutes=7 * 24 * 60,
    ),
}


class RoutingSettings(_Settings):
    rules: list[RoutingRule] = Field(default_factory=list)


class Role(StrEnum):
    ADMIN = "admin"  # manages accounts; reads every case, changes none
    DISPATCHER = "dispatcher"  # command centre: sees and steers every case
    SUPERVISOR = "supervisor"  # a department's supervisor: its cases, escalations, parking
    WORKER = "worker"  # a department worker: only that department's cases
    INTEGRATION = "integration"  # another system (Open311, City Brain): reads every case
    SYSTEM = "system"  # the server itself: SLA sweep, camera verification; never a login


SCOPED_ROLES = frozenset({Role.SUPERVISOR, Role.WORKER})


class ApiToken(_Settings):
    """A long-lived bearer token from the config: integrations and scripts. People log in."""

    name: str = Field(min_length=1, max_length=64)
    token: SecretStr = Field(min_length=16)
    role: Role
    department: Department | None = None

    @model_validator(mode="after")
    def _scoped_role_names_department(self) -> ApiToken:
        if self.role is Role.SYSTEM:
            raise ValueError("the system role is the server's own; no token may hold it")
        if (self.role in SCOPED_ROLES) != (self.department is not None):
            raise ValueError(
                "a supervisor or worker token names its department; other roles name none"
            )
        return self


class ApiSettings(_Settings):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    tokens: list[ApiToken] = Field(default_factory=list)
    sla_sweep_seconds: float = Field(default=60.0, gt=0)
