"""Routing rules, departments and API access."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Mapping
from datetime import time
from enum import StrEnum
from pathlib import Path

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from contracts.events import Identifier, ViolationKind
from contracts.sites import ZoneKind
from dispatch.calendar import CalendarSettings


class Department(StrEnum):
    LAW_ENFORCEMENT = "law_enforcement"  # 综合行政执法
    PUBLIC_SECURITY = "public_security"  # 公安
    FIRE_RESCUE = "fire_rescue"  # 消防
    PROPERTY_MANAGEMENT = "property_management"  # 物业


class Tier(StrEnum):
    DEPARTMENT = "department"  # 大事派单: dispatched to a department
    COMMUNITY = "community"  # 小事协商: property management or residents' council first
    HOUSEHOLD = "household"  # 私事自治: a household's own matter; guidance, then closed


class Priority(StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class DeadlineClock(StrEnum):
    """What a route's deadlines count."""

    WORKING = "working"  # working hours of the working calendar only: minor cases
    CALENDAR = "calendar"  # around the clock, 24/7: fire lanes


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HoursOfDay(_Settings):
    """A time-of-day window in the site's time zone; it may wrap midnight (22:00-07:00)."""

    start: time
    end: time

    @model_validator(mode="after")
    def _not_empty(self) -> HoursOfDay:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("hours are local times of the site, without a UTC offset")
        if self.start == self.end:
            raise ValueError(f"hours {self.start}-{self.end} are empty: leave hours out: all day")
        return self

    def contains(self, moment: time) -> bool:
        """Whether a local time of day falls inside; the start is in, the end is out."""
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


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
    clock: DeadlineClock = Field(
        default=DeadlineClock.CALENDAR,
        description="calendar: deadlines run 24/7; working: only in the working calendar's hours",
    )

    @model_validator(mode="after")
    def _community_names_escalation(self) -> Route:
        if self.tier is Tier.COMMUNITY and self.escalate_to is None:
            raise ValueError("a community-tier route names escalate_to: who takes it over")
        if self.escalate_to is not None and self.escalate_to == self.department:
            raise ValueError(f"escalate_to names the route's own department {self.department}")
        if self.ack_minutes > self.sla_minutes:
            raise ValueError("ack_minutes exceeds sla_minutes")
        return self


class RoutingRule(Route):
    """First matching rule wins. An absent matcher matches anything."""

    kind: ViolationKind | None = None
    zone_kind: ZoneKind | None = None
    zone_id: Identifier | None = None
    site_id: Identifier | None = None
    hours: HoursOfDay | None = Field(
        default=None, description="when the violation was seen, in the site's time zone"
    )


class RoutingSettings(_Settings):
    rules: list[RoutingRule] = Field(default_factory=list)


class SlaSettings(_Settings):
    """Deadlines and escalation: the working calendar and when the sweep escalates."""

    calendar: CalendarSettings = Field(default_factory=CalendarSettings)
    supervisor_after_minutes: int = Field(
        default=0, ge=0, description="after a missed deadline: 0 escalates at the deadline"
    )
    head_after_minutes: int = Field(
        default=60, ge=0, description="after the supervisor's escalation: to the department head"
    )
    sweep_seconds: float = Field(default=60.0, gt=0, description="how often the sweep runs")
    batch_size: int = Field(default=500, ge=1, le=10_000, description="cases per transaction")


class Role(StrEnum):
    ADMIN = "admin"  # manages accounts; reads every case, changes none
    DISPATCHER = "dispatcher"  # command centre: sees and steers every case
    SUPERVISOR = "supervisor"  # a department's supervisor: its cases, escalations, parking
    WORKER = "worker"  # a department worker: only that department's cases
    INTEGRATION = "integration"  # another system (Open311, City Brain): reads every case
    SYSTEM = "system"  # the server itself: SLA sweep, camera verification; never a login
    COUNCIL = "council"  # residents' council members and building leads: one site (User.site_id)


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


# Production API tokens: long, varied and unpredictable. secrets.token_urlsafe(32) and
# secrets.token_hex(16) always pass (tests/unit/config/test_api_tokens.py draws thousands).
PRODUCTION_TOKEN_LENGTH = 32
PRODUCTION_TOKEN_DISTINCT = 6  # different characters; token_hex(16) has 9 or more
PRODUCTION_TOKEN_BITS = 80  # Shannon estimate over the token's own characters; token_hex(16): 94+
# Runs of equal or neighbouring characters ("aaaa", "abcd", "4321"); random tokens stay under 0.5.
MAX_NEIGHBOUR_SHARE = 0.6
# "DEV_...", "test-...": a word and a separator, which a random token starts with only by a
# one-in-a-million chance.
PLACEHOLDER_TOKEN_PREFIX = re.compile(r"(dev|test|demo|sample|todo|xxx)[-_.:]", re.IGNORECASE)
PLACEHOLDER_TOKEN_WORDS = ("example", "placeholder", "changeme", "change-me", "change_me")
TOKEN_ADVICE = "generate one: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def token_weakness(value: str) -> str | None:
    """Why ``value`` is too weak for an API token in production; None when it is strong enough.

    Never quotes the value: the reason ends up in logs and terminals.
    """
    lowered = value.lower()
    if PLACEHOLDER_TOKEN_PREFIX.match(value) or any(
        word in lowered for word in PLACEHOLDER_TOKEN_WORDS
    ):
        return "an example or placeholder value"
    if len(value) < PRODUCTION_TOKEN_LENGTH:
        return f"a production token has at least {PRODUCTION_TOKEN_LENGTH} characters"
    counts = Counter(value)
    if len(counts) < PRODUCTION_TOKEN_DISTINCT:
        return f"too few different characters (at least {PRODUCTION_TOKEN_DISTINCT})"
    if _repeats_a_unit(value) or _neighbour_share(value) > MAX_NEIGHBOUR_SHARE:
        return "a repeated or sequential pattern"
    bits = -sum(n * math.log2(n / len(value)) for n in counts.values())
    if bits < PRODUCTION_TOKEN_BITS:
        return f"too predictable (about {bits:.0f} bits; at least {PRODUCTION_TOKEN_BITS})"
    return None


def _repeats_a_unit(value: str) -> bool:
    """Whether ``value`` is a shorter string over and over ("abc1abc1abc1")."""
    return (value + value).find(value, 1) < len(value)


def _neighbour_share(value: str) -> float:
    """The share of adjacent pairs that are equal or next to each other in code points."""
    pairs = list(itertools.pairwise(value))
    return sum(abs(ord(a) - ord(b)) <= 1 for a, b in pairs) / max(1, len(pairs))


def duplicate_tokens(tokens: list[ApiToken]) -> ValidationError | None:
    """An error at each token whose value an earlier one has: the last one listed would win."""
    first: dict[str, int] = {}
    errors: list[InitErrorDetails] = []
    for index, token in enumerate(tokens):
        value = token.token.get_secret_value()
        if value not in first:
            first[value] = index
            continue
        earlier = first[value]
        errors.append(
            InitErrorDetails(
                type=PydanticCustomError(
                    "duplicate_token",
                    "the same value as tokens.{earlier} ({name}): every token is unique",
                    {"earlier": earlier, "name": tokens[earlier].name},
                ),
                loc=("tokens", index, "token"),
                input=token.name,
            )
        )
    return ValidationError.from_exception_data("ApiSettings", errors) if errors else None


# People log in with these roles; integrations use config tokens, the system role is the server's.
PERSON_ROLES = frozenset({Role.ADMIN, Role.DISPATCHER, Role.SUPERVISOR, Role.WORKER, Role.COUNCIL})
# Roles scoped to one site (users.site_id) rather than a department.
SITE_ROLES = frozenset({Role.COUNCIL})
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
MIN_PASSWORD_LENGTH = 10


def account_role_problem(
    role: Role, department: Department | None, is_head: bool, site_id: str | None = None
) -> str | None:
    """Why a person's account cannot have this role, department, head flag and site; None if it
    can. A council account names its site (it sees that site's consultations only); no other
    role names one."""
    if role not in PERSON_ROLES:
        return f"role {role} is not a person's: integrations use config tokens"
    if (role in SCOPED_ROLES) != (department is not None):
        return "a supervisor or worker names a department; other roles name none"
    if is_head and role not in SCOPED_ROLES:
        return "only a supervisor or worker can be a department's head"
    if (role in SITE_ROLES) != bool(site_id):
        return "a council account names its site; other roles name none"
    return None


class DevUser(_Settings):
    """An account created at start in development only (production refuses the config)."""

    username: str = Field(pattern=USERNAME_PATTERN)
    password: SecretStr = Field(min_length=MIN_PASSWORD_LENGTH)
    role: Role
    department: Department | None = None
    display_name: str = ""
    is_head: bool = False
    site_id: Identifier | None = Field(default=None, description="council accounts: their site")

    @model_validator(mode="after")
    def _valid_account(self) -> DevUser:
        problem = account_role_problem(self.role, self.department, self.is_head, self.site_id)
        if problem is not None:
            raise ValueError(problem)
        if self.password.get_secret_value().casefold() == self.username.casefold():
            raise ValueError("a password must not be the user name")
        return self


class AccountSettings(_Settings):
    """Sessions, login rate limits and the development accounts."""

    session_hours: float = Field(default=12.0, gt=0, description="a session's longest life")
    idle_minutes: float = Field(default=120.0, gt=0, description="a session unused this long ends")
    login_max_failures: int = Field(
        default=5, ge=1, description="failed logins allowed per user name in the window"
    )
    login_max_failures_per_client: int = Field(
        default=20,
        ge=1,
        description="failed logins allowed per client address in the window: higher, because a "
        "whole command centre may reach the server through one NAT address",
    )
    login_window_minutes: float = Field(
        default=15.0, gt=0, description="the window login_max_failures counts over"
    )
    dev_users: list[DevUser] = Field(
        default_factory=list, description="created at start in development only"
    )


class ApiSettings(_Settings):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    tokens: list[ApiToken] = Field(default_factory=list)
    accounts: AccountSettings = Field(default_factory=AccountSettings)
    sla_sweep_seconds: float | None = Field(
        default=None, gt=0, description="deprecated: server.sla.sweep_seconds; wins when set"
    )

    @model_validator(mode="after")
    def _unique_tokens(self) -> ApiSettings:
        # In every environment: with two equal values the last one listed would win.
        duplicates = duplicate_tokens(self.tokens)
        if duplicates is not None:
            raise duplicates
        return self


class VerificationSettings(_Settings):
    """Camera re-checks of resolved parking and fire-lane cases."""

    deadline_seconds: float = Field(
        default=120.0, gt=0, le=3600, description="unanswered by then: verify by hand"
    )
    job_seconds: float = Field(
        default=2.0, gt=0, description="how often requests are published and deadlines checked"
    )


# --- residents' reports (dispatch/residents; docs/residents.md) -------------------------------


class TierRule(_Settings):
    """Which tier a NEW report-born case gets. First matching rule wins; an absent matcher
    matches anything; no rule matching: the category's default route's tier."""

    tier: Tier
    categories: list[ViolationKind] | None = Field(
        default=None, min_length=1, description="the report's category (a kind)"
    )
    sites: list[Identifier] | None = Field(default=None, min_length=1)
    hours: HoursOfDay | None = Field(
        default=None, description="when it was reported, in the site's time zone"
    )
    weekdays: list[int] | None = Field(
        default=None, min_length=1, description="ISO weekdays it was reported on: 1 Monday .. 7"
    )

    @model_validator(mode="after")
    def _weekdays_in_range(self) -> TierRule:
        if self.weekdays is not None and not all(1 <= day <= 7 for day in self.weekdays):
            raise ValueError("weekdays are ISO numbers: 1 (Monday) to 7 (Sunday)")
        return self


class PhotoLimits(_Settings):
    """What a report's photos may be; JPEG and PNG only, decided from their bytes."""

    max_photos: int = Field(default=3, ge=0, le=10)
    max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="per photo, as sent")
    max_pixels: int = Field(
        default=40_000_000, ge=10_000, description="width x height; bigger is refused undecoded"
    )
    max_side: int = Field(
        default=2048,
        ge=256,
        description="the stored copy is scaled down to this longest side (ample on a screen)",
    )


class TextLimits(_Settings):
    description_chars: int = Field(default=2000, ge=1)
    place_chars: int = Field(default=64, ge=1, le=64, description="building and unit")


class ReportRateLimits(_Settings):
    """Reports accepted per hour, counted per key; beyond them: 429 with Retry-After."""

    per_address: int = Field(default=10, ge=1, description="per client address")
    per_phone: int = Field(default=5, ge=1, description="per phone number given")
    per_token: int = Field(
        default=120, ge=1, description="per QR poster token: a whole building's residents"
    )
    window_minutes: float = Field(default=60.0, gt=0)
    lookups_per_address: int = Field(
        default=30,
        ge=1,
        description="tracking-page lookups per client address per lookup window: a person "
        "checks a few codes, a guesser needs billions",
    )
    lookup_window_minutes: float = Field(default=10.0, gt=0)


ENV_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]{0,127}$"


class ResidentSettings(_Settings):
    """Residents' reports: tiers, merging into open cases, photos, text, limits, QR posters."""

    tier_rules: list[TierRule] = Field(default_factory=list)
    merge_window_minutes: float = Field(
        default=120.0, ge=0, description="an open case seen or reported this recently is joined"
    )
    merge_radius: float = Field(
        default=0.08,
        ge=0,
        le=1,
        description="a plan point this near (fractions of the plan) is the same place",
    )
    buildings: dict[Identifier, list[str]] = Field(
        default_factory=dict,
        description="per site: the buildings a report may name, beside the zones' buildings; a "
        "site not listed here takes any building",
    )
    photos: PhotoLimits = Field(default_factory=PhotoLimits)
    text: TextLimits = Field(default_factory=TextLimits)
    limits: ReportRateLimits = Field(default_factory=ReportRateLimits)
    consultation_quorum: int = Field(
        default=3, ge=1, description="votes for a proposal that carry it (小事协商)"
    )
    consultation_hours: float = Field(
        default=72.0, gt=0, description="an unsettled consultation escalates after this long"
    )
    qr_secret_file: Path | None = Field(
        default=None, description="a file holding the QR posters' signing secret"
    )
    qr_secret_env: str | None = Field(
        default=None,
        pattern=ENV_NAME_PATTERN,
        description="or the name of an environment variable holding it; neither: no QR posters",
    )
    status_webhook_url: AnyHttpUrl | None = Field(
        default=None,
        description="status messages to residents (an SMS or messaging gateway), via the outbox",
    )

    @model_validator(mode="after")
    def _one_secret_source(self) -> ResidentSettings:
        if self.qr_secret_file is not None and self.qr_secret_env is not None:
            raise ValueError("name qr_secret_file or qr_secret_env, not both")
        return self

    def qr_secret(self, environ: Mapping[str, str]) -> bytes | None:
        """The posters' signing secret, or None when QR posters are disabled (no source named).
        Raises QrSecretError when a named source is missing, unreadable or too short."""
        if self.qr_secret_file is not None:
            try:
                value = self.qr_secret_file.read_bytes().strip()
            except OSError as exc:
                raise QrSecretError(
                    f"server.residents.qr_secret_file {self.qr_secret_file}: cannot read: "
                    f"{exc.strerror}"
                ) from exc
            where = f"server.residents.qr_secret_file {self.qr_secret_file}"
        elif self.qr_secret_env is not None:
            value = environ.get(self.qr_secret_env, "").strip().encode()
            where = f"${self.qr_secret_env} (server.residents.qr_secret_env)"
        else:
            return None
        if len(value) < MIN_QR_SECRET_BYTES:
            raise QrSecretError(
                f"{where}: the QR secret has at least {MIN_QR_SECRET_BYTES} characters; "
                f"{TOKEN_ADVICE}"
            )
        return value


MIN_QR_SECRET_BYTES = 32
QR_DISABLED_MESSAGE = (
    "QR posters are disabled: name server.residents.qr_secret_file or qr_secret_env "
    "(a secret of at least 32 characters)"
)


class QrSecretError(ValueError):
    """A QR secret source that is named but unusable: the server refuses to start."""
