"""Exemption rules: who may stop where, and the one function both the edge and ingest decide by.

A gateway's rule document lists rules on a zone or on its whole site. Each rule has a validity
window (``valid_from`` inclusive, ``valid_to`` exclusive; no ``valid_to``: open-ended) and a
reason. docs/exemptions.md has the same tables.

Rule types:

- ``allowlist``: plates of residents, service vehicles or emergency vehicles. Resident and
  service plates are never exempt in a fire lane. Emergency plates are exempt everywhere in
  their scope, fire lanes included, but only while their task lasts: the command centre issues
  an emergency entry with a ``valid_to`` at most ``MAX_EMERGENCY_TASK`` after its start.
- ``family_bay`` (孝心车位, on one zone): any car may stay ``max_minutes``, at most
  ``max_visits_per_day`` stays a day per plate (the site's local day); ``family_plates`` (a
  resident's family) stay ``family_max_minutes`` with no visit limit. A car whose plate cannot
  be read (no reading, or one below the document's confidence floor) is *warned, not
  enforced* (``Outcome.WARN``).
- ``time_window``: e.g. loading from HH:MM to HH:MM on given ISO weekdays (1 = Monday), in the
  site's time zone. A window whose end is before its start runs past midnight and belongs to
  the weekday it starts on (Friday 22:00-02:00 covers Saturday 01:30).
- ``permit``: a temporary permit for one plate on a zone or a site, from-to, with a reason.

A plate reading below ``RuleDocument.plate_confidence_floor`` never exempts by plate (the floor
is the server's ``exemptions.plate_confidence_floor``, by default the calibrated
``DEFAULT_PLATE_CONFIDENCE_FLOOR``). Fire lanes: only emergency allowlist entries exempt there.

- ``warning_stage`` (先提醒后执法, on a zone or a site): where a stop would be enforced, warn
  first (an announcement, a message to a resident owner), and enforce only if the car is still
  there ``grace_minutes`` later. Plates warned ``repeat_warnings`` times in ``repeat_days`` days
  (the server counts them across gateways and lists them in ``RuleDocument.repeat_offenders``)
  skip the warning. Never in fire lanes. See ``warning_stage``.

Overlapping rules: candidates are ordered most specific scope first (zone before site), then
latest ``issued_at`` first, then rule id. Any applicable exemption exempts and the decision names
the first in that order. Of several family-bay rules on one zone only the first in that order
applies (a zone's newer bay rule replaces its older one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from contracts.events import PLATE_PATTERN, Identifier, PlateReading
from contracts.kinds import ZoneKind
from contracts.sites import SiteConfig, ZoneConfig

EXEMPTIONS_SCHEMA_VERSION: Literal[1] = 1

MAX_EMERGENCY_TASK = timedelta(hours=12)
"""The longest an emergency allowlist entry may last: a task, not a standing exemption."""

MAX_RULES = 10_000
MAX_PLATES = 100_000
DEFAULT_PLATE_CONFIDENCE_FLOOR = 0.9
"""The plate-confidence floor, calibrated (issue 13 point 4): a reading at or above it was right
in every dev scene (edge.plate_confidence, bench/plates_frames.py, docs/benchmarks.md). The
server's ``exemptions.plate_confidence_floor`` defaults to it and is the one value the gateways
(in their rule document), ingest's exemption check, its merges by plate and its repeat-offender
links all decide by."""


def decidable_plate(reading: PlateReading | None, floor: float) -> str | None:
    """The plate text to decide on: None for no reading or one below ``floor``.

    No exemption, merge by plate or repeat-offender link rests on a reading below the floor.
    """
    if reading is None or reading.confidence < floor:
        return None
    return reading.text


Plate = Annotated[str, Field(pattern=PLATE_PATTERN)]
Reason = Annotated[str, Field(min_length=1, max_length=200)]
ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class AllowlistCategory(StrEnum):
    RESIDENT = "resident"
    SERVICE = "service"
    EMERGENCY = "emergency"


class _Rule(_Model):
    id: Identifier
    site_id: Identifier
    zone_id: Identifier | None = Field(default=None, description="None: the whole site")
    valid_from: AwareDatetime
    valid_to: AwareDatetime | None = Field(default=None, description="exclusive; None: no end")
    reason: Reason
    issued_at: AwareDatetime = Field(description="this version's issue time; later wins ties")

    @model_validator(mode="after")
    def _window(self) -> _Rule:
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        return self

    def valid_at(self, at: datetime) -> bool:
        return self.valid_from <= at and (self.valid_to is None or at < self.valid_to)

    def covers(self, site_id: str, zone_id: str) -> bool:
        return self.site_id == site_id and (self.zone_id is None or self.zone_id == zone_id)


class AllowlistRule(_Rule):
    type: Literal["allowlist"] = "allowlist"
    category: AllowlistCategory
    plates: list[Plate] = Field(min_length=1, max_length=MAX_PLATES)

    @model_validator(mode="after")
    def _emergency_is_a_task(self) -> AllowlistRule:
        if self.category is AllowlistCategory.EMERGENCY and (
            self.valid_to is None or self.valid_to - self.valid_from > MAX_EMERGENCY_TASK
        ):
            raise ValueError(f"an emergency entry needs a valid_to within {MAX_EMERGENCY_TASK}")
        return self

    @cached_property
    def plate_set(self) -> frozenset[str]:
        return frozenset(self.plates)


class FamilyBayRule(_Rule):
    type: Literal["family_bay"] = "family_bay"
    zone_id: Identifier  # a bay is a zone, never a whole site
    max_minutes: int = Field(ge=1, le=24 * 60)
    max_visits_per_day: int = Field(ge=1, le=100)
    family_plates: list[Plate] = Field(default_factory=list, max_length=MAX_PLATES)
    family_max_minutes: int = Field(ge=1, le=24 * 60)

    @model_validator(mode="after")
    def _family_longer(self) -> FamilyBayRule:
        if self.family_max_minutes < self.max_minutes:
            raise ValueError("family_max_minutes must be at least max_minutes")
        return self

    @cached_property
    def family_set(self) -> frozenset[str]:
        return frozenset(self.family_plates)


class TimeWindowRule(_Rule):
    type: Literal["time_window"] = "time_window"
    start: ClockTime
    end: ClockTime
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] = Field(min_length=1, max_length=7)

    @model_validator(mode="after")
    def _not_empty(self) -> TimeWindowRule:
        if self.start == self.end:
            raise ValueError("a time window's start and end must differ")
        return self

    def open_at(self, local: datetime) -> bool:
        """Whether the window is open at ``local`` (a time in the site's zone)."""
        start, end = time.fromisoformat(self.start), time.fromisoformat(self.end)
        now = local.time().replace(tzinfo=None)
        if start < end:
            return local.isoweekday() in self.weekdays and start <= now < end
        # Past midnight: the evening part today, or the morning part of yesterday's window.
        if now >= start:
            return local.isoweekday() in self.weekdays
        yesterday = (local - timedelta(days=1)).isoweekday()
        return now < end and yesterday in self.weekdays


class PermitRule(_Rule):
    type: Literal["permit"] = "permit"
    plate: Plate
    valid_to: AwareDatetime  # a permit always ends

    @model_validator(mode="after")
    def _ends_after_start(self) -> PermitRule:
        if self.valid_to <= self.valid_from:
            raise ValueError("a permit must end after it starts")
        return self


class WarningChannel(StrEnum):
    ANNOUNCE = "announce"  # the gateway's announce topic: a gate speaker or an LED sign
    OWNER = "owner"  # the registered owner, by webhook or SMS gateway (the server sends it)


MAX_GRACE_MINUTES = 24 * 60


class WarningStageRule(_Rule):
    """Warn before enforcing (先提醒后执法) on a zone or a whole site."""

    type: Literal["warning_stage"] = "warning_stage"
    grace_minutes: float = Field(
        gt=0, le=MAX_GRACE_MINUTES, description="how long after the warning the camera looks"
    )
    channels: list[WarningChannel] = Field(min_length=1, max_length=len(WarningChannel))
    repeat_warnings: int = Field(ge=1, le=100, description="K: warnings that make a repeat")
    repeat_days: int = Field(ge=1, le=365, description="D: the days K warnings are counted in")

    @model_validator(mode="after")
    def _channels_once(self) -> WarningStageRule:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("a warning channel is listed twice")
        return self

    @property
    def grace(self) -> timedelta:
        return timedelta(minutes=self.grace_minutes)


Rule = Annotated[
    AllowlistRule | FamilyBayRule | TimeWindowRule | PermitRule | WarningStageRule,
    Field(discriminator="type"),
]


class _DocumentFields(_Model):
    """What every version of a gateway's document carries."""

    schema_version: int
    site_id: Identifier
    gateway_id: Identifier
    version: int = Field(ge=1, le=2**63 - 1)
    issued_at: AwareDatetime
    plate_confidence_floor: float = Field(default=DEFAULT_PLATE_CONFIDENCE_FLOOR, ge=0, le=1)
    rules: list[Rule] = Field(default_factory=list, max_length=MAX_RULES)
    repeat_offenders: list[Plate] = Field(
        default_factory=list,
        max_length=MAX_PLATES,
        description="plates the server counted K warnings in D days: they skip the warning",
    )


class RuleDocument(_DocumentFields):
    """One gateway's rules, whole: what the gateway decides by. Schema 1 on the wire (the server
    signed it whole, contracts.rule_signing); the gateway builds the same from a schema 2
    ``GatewayRules`` and its site's ``SitePlates``."""

    schema_version: Literal[1] = EXEMPTIONS_SCHEMA_VERSION

    @cached_property
    def repeat_offender_set(self) -> frozenset[str]:
        return frozenset(self.repeat_offenders)

    @cached_property
    def ordered_rules(self) -> tuple[Rule, ...]:
        """The rules in the order overlaps are settled in: zone first, newest first, by id."""
        return tuple(sorted(self.rules, key=_order))


GATEWAY_RULES_SCHEMA_VERSION: Literal[3] = 3
"""What the server sends: schema 3 (contracts.exemptions.GatewayRules)."""
SHA256_PATTERN = r"^[0-9a-f]{64}$"


class SitePlates(_Model):
    """The part of every gateway's rules that is the same on a whole site: the registry's plates
    (contracts.registry_plates; plates only, never a name or a phone). The server serialises it
    once per change, whatever the number of gateways; each gateway's ``GatewayRules`` names it by
    the SHA-256 of that exact text, so the one signature per gateway covers it too."""

    site_id: Identifier
    changed_at: AwareDatetime | None = Field(default=None, description="the registry's newest")
    resident: list[Plate] = Field(default_factory=list, max_length=MAX_PLATES)
    service: list[Plate] = Field(default_factory=list, max_length=MAX_PLATES)
    family: list[Plate] = Field(default_factory=list, max_length=MAX_PLATES)


MAX_PATCH_PLATES = 2_000
"""The most plates (added and removed, all lists) the server puts in one signed patch; a larger
change sends none, and the gateways take the whole set from the site's plates topic."""


class PlateLists(_Model):
    """Plates by the registry's categories, as ``SitePlates`` lists them."""

    resident: list[Plate] = Field(default_factory=list, max_length=MAX_PLATES)
    service: list[Plate] = Field(default_factory=list, max_length=MAX_PLATES)
    family: list[Plate] = Field(default_factory=list, max_length=MAX_PLATES)

    def count(self) -> int:
        return len(self.resident) + len(self.service) + len(self.family)


class PlatesPatch(_Model):
    """How the site's plates changed from the set whose SitePlates text hashes to
    ``from_sha256``: the plates ``removed`` and ``added`` in each list, and the new
    ``changed_at``. A gateway holding that set applies it and checks that the result hashes to
    the hash the document names (contracts.rule_signing.PlatesPart.patched); any other gateway
    takes the whole set from the site's plates topic."""

    from_sha256: str = Field(pattern=SHA256_PATTERN)
    changed_at: AwareDatetime | None = Field(default=None, description="the registry's newest")
    added: PlateLists = Field(default_factory=PlateLists)
    removed: PlateLists = Field(default_factory=PlateLists)

    @model_validator(mode="after")
    def _disjoint(self) -> PlatesPatch:
        for name in ("resident", "service", "family"):
            added, removed = getattr(self.added, name), getattr(self.removed, name)
            if len(set(added)) != len(added) or len(set(removed)) != len(removed):
                raise ValueError(f"a plate is listed twice in the patch's {name} list")
            if set(added) & set(removed):
                raise ValueError(f"a plate is both added and removed in {name}")
        return self


class SitePlatesRef(_Model):
    sha256: str = Field(pattern=SHA256_PATTERN, description="of the SitePlates JSON text, UTF-8")
    patch: PlatesPatch | None = Field(
        default=None, description="schema 3: the change from the set the server sent before"
    )


class GatewayRules(_DocumentFields):
    """Schemas 2 and 3 of a gateway's document on the wire: its own rules (site-wide ones and
    those on its zones, without the registry's plates) and the site's ``SitePlates`` by hash. A
    permit change signs 1,000 of these small documents, not 1,000 copies of a 10,000-plate
    registry; the gateway keeps the plates it holds while the hash stays the same.

    - 2: the envelope carries the SitePlates text (every retained message whole on its own);
    - 3: it does not. ``site_plates.patch`` (optional) takes a gateway holding the set before
      to the new one; a gateway without that set takes the whole set, signed, from the site's
      retained plates topic (contracts.topics.site_plates_topic). A registry edit costs each
      gateway the size of the change, not of the registry."""

    schema_version: Literal[2, 3] = GATEWAY_RULES_SCHEMA_VERSION
    site_plates: SitePlatesRef

    @model_validator(mode="after")
    def _patch_from_schema_3(self) -> GatewayRules:
        if self.schema_version == 2 and self.site_plates.patch is not None:
            raise ValueError("a schema 2 document carries no plates patch")
        return self


def _schema(value: object) -> object:
    if isinstance(value, dict):
        version = value.get("schema_version", 1)  # none given: schema 1, as it always parsed
    else:
        version = getattr(value, "schema_version", None)
    return 2 if version == 3 else version  # schemas 2 and 3 are both GatewayRules


WireDocument = Annotated[
    Annotated[RuleDocument, Tag(1)] | Annotated[GatewayRules, Tag(2)], Discriminator(_schema)
]
"""What a signed envelope's document may be: schema 1 (whole), 2 or 3 (site plates by hash)."""


class Outcome(StrEnum):
    EXEMPT = "exempt"  # no violation: nothing leaves the gateway
    WARN = "warn"  # warn, do not enforce (a family bay's unreadable plate)
    ENFORCE = "enforce"  # no exemption applies


class Why(StrEnum):
    ALLOWLISTED = "allowlisted"
    PERMIT = "permit"
    TIME_WINDOW = "time_window"
    FAMILY_BAY = "family_bay"
    FAMILY_BAY_UNREADABLE_PLATE = "family_bay_unreadable_plate"
    FAMILY_BAY_OVER_TIME = "family_bay_over_time"
    FAMILY_BAY_TOO_MANY_VISITS = "family_bay_too_many_visits"
    PLATE_BELOW_FLOOR = "plate_below_floor"  # a plate rule would apply but the reading is weak
    NO_RULE = "no_rule"


@dataclass(frozen=True, slots=True)
class StayHistory:
    """This stay's start, and when the same plate started earlier stays in the same zone."""

    started_at: datetime
    earlier_starts: tuple[datetime, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    why: Why
    rule_id: str | None = None

    @property
    def exempt(self) -> bool:
        return self.outcome is Outcome.EXEMPT


def _order(rule: _Rule) -> tuple[int, float, str]:
    return (0 if rule.zone_id is not None else 1, -rule.issued_at.timestamp(), rule.id)


def evaluate(
    document: RuleDocument | None,
    plate: str | None,
    plate_confidence: float | None,
    zone: ZoneConfig,
    site: SiteConfig,
    at: datetime,
    history: StayHistory,
) -> Decision:
    """Whether a car stopped in ``zone`` at ``at`` is exempt, and by which rule (pure)."""
    if document is None:
        return Decision(Outcome.ENFORCE, Why.NO_RULE)
    readable = (
        plate is not None
        and plate_confidence is not None
        and plate_confidence >= document.plate_confidence_floor
    )
    fire_lane = zone.kind is ZoneKind.FIRE_LANE
    candidates = (
        r for r in document.ordered_rules if r.covers(site.id, zone.id) and r.valid_at(at)
    )
    bay: Decision | None = None
    weak_plate = False
    for rule in candidates:
        if isinstance(rule, AllowlistRule):
            if fire_lane and rule.category is not AllowlistCategory.EMERGENCY:
                continue
            if not readable:
                weak_plate = True
            elif plate in rule.plate_set:
                return Decision(Outcome.EXEMPT, Why.ALLOWLISTED, rule.id)
        elif fire_lane:
            continue
        elif isinstance(rule, PermitRule):
            if not readable:
                weak_plate = True
            elif plate == rule.plate:
                return Decision(Outcome.EXEMPT, Why.PERMIT, rule.id)
        elif isinstance(rule, TimeWindowRule):
            if rule.open_at(at.astimezone(ZoneInfo(site.timezone))):
                return Decision(Outcome.EXEMPT, Why.TIME_WINDOW, rule.id)
        elif isinstance(rule, WarningStageRule):
            continue  # not an exemption: ``warning_stage`` says how an enforced stop goes
        elif bay is None:
            bay = _family_bay(rule, plate if readable else None, site, at, history)
            if bay.exempt:
                return bay
    if bay is not None:
        return bay
    return Decision(Outcome.ENFORCE, Why.PLATE_BELOW_FLOOR if weak_plate else Why.NO_RULE)


def _family_bay(
    rule: FamilyBayRule, plate: str | None, site: SiteConfig, at: datetime, history: StayHistory
) -> Decision:
    if plate is None:
        return Decision(Outcome.WARN, Why.FAMILY_BAY_UNREADABLE_PLATE, rule.id)
    family = plate in rule.family_set
    if not family:
        zone_info = ZoneInfo(site.timezone)
        today = history.started_at.astimezone(zone_info).date()
        visits = 1 + _same_day(history.earlier_starts, history.started_at, today, zone_info)
        if visits > rule.max_visits_per_day:
            return Decision(Outcome.ENFORCE, Why.FAMILY_BAY_TOO_MANY_VISITS, rule.id)
    limit = rule.family_max_minutes if family else rule.max_minutes
    if at - history.started_at <= timedelta(minutes=limit):
        return Decision(Outcome.EXEMPT, Why.FAMILY_BAY, rule.id)
    return Decision(Outcome.ENFORCE, Why.FAMILY_BAY_OVER_TIME, rule.id)


def _same_day(starts: Sequence[datetime], before: datetime, day: date, zone_info: ZoneInfo) -> int:
    return sum(1 for s in starts if s < before and s.astimezone(zone_info).date() == day)


WARNED_COMPLIED = "warned_complied"
"""The close reason of an item whose car left within the grace period after its warning."""


class StageWhy(StrEnum):
    WARN = "warn"  # the stage applies: warn, look again after the grace period
    NO_STAGE = "no_stage"  # no warning_stage rule covers the zone now
    FIRE_LANE = "fire_lane"  # a fire lane is enforced at once
    REPEAT_OFFENDER = "repeat_offender"  # the server counted K warnings in D days
    REPEAT_AT_GATEWAY = "repeat_at_gateway"  # this gateway's own count reached K


@dataclass(frozen=True, slots=True)
class StageDecision:
    """Whether a stop about to be enforced is warned first, and by which rule."""

    why: StageWhy
    rule: WarningStageRule | None = None

    @property
    def warn(self) -> bool:
        return self.why is StageWhy.WARN


def warning_stage(
    document: RuleDocument | None,
    plate: str | None,
    plate_confidence: float | None,
    zone: ZoneConfig,
    site: SiteConfig,
    at: datetime,
    warnings_here: int = 0,
) -> StageDecision:
    """Whether a stop that ``evaluate`` would enforce (or warn) gets a warning first (pure).

    Of several warning_stage rules in scope the first in the overlap order applies (a zone's
    rule before the site's, then the newest): a zone's stage replaces the site's, it does not
    add to it. A repeat offender (a readable plate the server lists, or one this gateway warned
    ``repeat_warnings`` times in ``repeat_days``: ``warnings_here``) skips the warning. A plate
    read below the document's confidence floor is never linked as a repeat offender: it is
    warned.
    """
    if document is None:
        return StageDecision(StageWhy.NO_STAGE)
    rule = next(
        (
            r
            for r in document.ordered_rules
            if isinstance(r, WarningStageRule) and r.covers(site.id, zone.id) and r.valid_at(at)
        ),
        None,
    )
    if rule is None:
        return StageDecision(StageWhy.NO_STAGE)
    if zone.kind is ZoneKind.FIRE_LANE:
        return StageDecision(StageWhy.FIRE_LANE, rule)
    readable = (
        plate is not None
        and plate_confidence is not None
        and plate_confidence >= document.plate_confidence_floor
    )
    if readable and plate in document.repeat_offender_set:
        return StageDecision(StageWhy.REPEAT_OFFENDER, rule)
    if readable and warnings_here >= rule.repeat_warnings:
        return StageDecision(StageWhy.REPEAT_AT_GATEWAY, rule)
    return StageDecision(StageWhy.WARN, rule)
