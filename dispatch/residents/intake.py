"""The one way a report enters: ``submit_report``, from the resident's page, a QR poster, the
hotline operator's form or an Open311 POST.

In the caller's transaction it checks the report (site and building known, text bounded and
storable, phone callable, photos JPEG/PNG by their bytes and re-encoded without metadata),
counts it against the limits, and then either JOINS the open case for the same problem
(dispatch.residents.merge) or OPENS a case in the tier the rule table gives
(dispatch.residents.tiers): department: dispatched like a camera case; community: with property
management and a consultation opened; household: answered with guidance and closed. Every step
is an audit-chain entry; the report's own is action ``report`` with the tracking code, channel
and whether it joined. Refusals are ``ReportRefused``: an ApiError with a ``report_*`` code
whose message reads in both languages (locales/*/residents.yaml).
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from fastapi import status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.events import Identifier
from contracts.kinds import ViolationKind
from contracts.sites import SiteConfig, SiteRegistry
from dispatch.config import ResidentSettings, Route, RoutingSettings, Tier
from dispatch.errors import ApiError
from dispatch.residents.codes import new_tracking_code, tracking_path
from dispatch.residents.consultation_record import open_consultation
from dispatch.residents.limits import LimitKey, ReportLimited, check_and_count
from dispatch.residents.merge import Place, find_case_to_join
from dispatch.residents.photos import CleanPhoto, PhotoError, clean_photo
from dispatch.residents.privacy import PhoneError, normalise_phone
from dispatch.residents.tiers import route_for_report, tier_for
from dispatch.routing import DISPATCH_ACTOR, Router, describe_route, route_facts
from dispatch.web.i18n import translator
from storage.audit import HASHED_FIELDS, chain_entries
from storage.evidence_guard import hold_for_new_bytes
from storage.evidence_rows import file_evidence, link_evidence
from storage.evidence_store import EvidenceStore
from storage.tables import (
    Case,
    CaseState,
    CaseTransition,
    GuidanceTemplate,
    ReportPhoto,
    ResidentReport,
    utcnow,
)

RESIDENT_ACTOR = "resident"  # the audit log's actor when the resident reported it themselves
PHOTO_LABEL = "resident"  # case_evidence.label of a report's photos
MAX_FIELD = 64
HARD_DESCRIPTION_LIMIT = 20_000  # the model's own ceiling; the configured limit is lower
# Control characters other than newline and tab cannot be stored (PostgreSQL refuses NUL) and
# are no part of a description anybody typed.
_UNSTORABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Channel(StrEnum):
    """How a report arrived; a case it opens has this as its ``source``."""

    WEB = "web"  # the resident's own page, /report
    QR = "qr"  # the page opened from a site's or building's QR poster (a signed token)
    HOTLINE = "hotline"  # the 12345 operator's console form
    OPEN311 = "open311"  # another system, GeoReport v2 POST


class PlanPoint(BaseModel):
    """A point on the site plan, as fractions of its width and height."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    x: float = Field(ge=0, le=1)
    y: float = Field(ge=0, le=1)


class ReportSubmission(BaseModel):
    """A report as the routes hand it in, already parsed (form, JSON or Open311 fields).

    The model bounds every field; ``submit_report`` applies the configured limits and the
    rules that need the config (known site and building) or the database (limits, merging)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: ViolationKind
    site_id: Identifier
    building: str | None = Field(default=None, max_length=MAX_FIELD)
    unit: str | None = Field(default=None, max_length=MAX_FIELD)
    plan_point: PlanPoint | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    long: float | None = Field(default=None, ge=-180, le=180)
    description: str = Field(default="", max_length=HARD_DESCRIPTION_LIMIT)
    phone: str | None = Field(default=None, max_length=32)
    contact_consent: bool = False
    photos: list[bytes] = Field(default_factory=list, max_length=10, repr=False)
    channel: Channel = Channel.WEB
    submitted_by: str | None = Field(
        default=None,
        max_length=MAX_FIELD,
        description="the operator or integration; None: the resident",
    )
    token_id: str | None = Field(
        default=None, max_length=MAX_FIELD, description="the QR poster's token id, once verified"
    )
    client_address: str = Field(default="", max_length=MAX_FIELD)


@dataclass(frozen=True, slots=True)
class ReportReceipt:
    """What the reporter gets back: the code that follows the report, and where it went."""

    tracking_code: str
    case_id: int
    joined: bool
    tier: Tier
    report_id: int

    @property
    def tracking_path(self) -> str:
        return tracking_path(self.tracking_code)


@dataclass(frozen=True)
class IntakeDeps:
    """What the intake needs, built once by the composition root (ApiContext.intake)."""

    settings: ResidentSettings
    registry: SiteRegistry
    router: Router
    routing: RoutingSettings
    evidence_store: EvidenceStore
    clock: Callable[[], datetime] = utcnow
    # A site's known buildings by casefolded name, built on first use: the registry and the
    # settings never change under one IntakeDeps, and a site with a thousand cameras costs
    # milliseconds to walk per report.
    _buildings: dict[str, dict[str, str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def building_names(self, site_id: str) -> dict[str, str]:
        """``known_buildings`` at ``site_id`` as {casefolded name: the config's spelling}."""
        names = self._buildings.get(site_id)
        if names is None:
            known = known_buildings(self.registry, self.settings, site_id)
            names = {name.casefold(): name for name in reversed(known)}
            self._buildings[site_id] = names
        return names


class ReportRefused(ApiError):  # noqa: N818 - a refusal the routes answer, not a bug
    """A report refused, with a ``report_*`` code (error.<code> in both languages)."""

    def __init__(
        self,
        code: str,
        params: dict[str, object] | None = None,
        status_code: int = status.HTTP_422_UNPROCESSABLE_CONTENT,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, code, params, headers)


# --- the intake -------------------------------------------------------------------------------


def submit_report(
    session: Session, submission: ReportSubmission, *, deps: IntakeDeps
) -> ReportReceipt:
    """Check, count, join or open, in the caller's transaction (the caller commits; on a
    refusal nothing was written but photo files no row names). Raises ReportRefused.

    The report's audit entries are chained last, in one ``chain_entries`` call after every
    other row is flushed: the chain's head row stays locked from then to the caller's commit,
    and ingest's writer and the notification pumps wait on that lock, so the span holds only
    the entries' own inserts."""
    settings = deps.settings
    now = deps.clock()
    site = _site(deps.registry, submission.site_id)
    building = _building(deps, site, submission.building)
    unit = _line(submission.unit, "unit", settings.text.place_chars)
    if unit and not building:
        raise ReportRefused("report_unit_without_building")
    description = _description(submission.description, settings.text.description_chars)
    phone = _phone(submission.phone)
    if submission.channel is Channel.QR and not submission.token_id:
        raise ReportRefused("report_qr_needs_token")
    photos = _photos(submission.photos, settings)
    if not description and not photos:
        raise ReportRefused("report_empty")
    _count(session, submission, phone, settings, now)
    # The files first, durable, before the case and its audit entries: the audit chain's head
    # stays locked from the entries to the commit, and every writer of the server waits on
    # it, so no fsync may happen inside that span. A refused report leaves only files that
    # no row names (content-addressed, written once). The evidence lock (shared: no other
    # writer waits on it) is held to the commit, so the retention job removes none of these
    # bytes meanwhile (storage.evidence_guard).
    if photos:
        hold_for_new_bytes(session)
    for photo in photos:
        deps.evidence_store.put(photo.data, photo.sha256)

    kind = submission.category
    point = submission.plan_point
    place = Place(building, unit, point.x if point else None, point.y if point else None)
    code = _fresh_code(session)
    actor = submission.submitted_by or RESIDENT_ACTOR
    journal: list[CaseTransition] = []  # the audit entries, chained at the end
    case = find_case_to_join(
        session,
        deps.registry,
        kind=kind,
        site_id=site.id,
        place=place,
        now=now,
        window_minutes=settings.merge_window_minutes,
        radius=settings.merge_radius,
    )
    joined = case is not None
    if case is None:
        case = _open_case(session, journal, submission, now, actor)
    elif not case.camera_id:
        case.last_observed_at = now  # a report-born case stays joinable while reports come
    report = _report_row(code, case, joined, submission, place, description, phone, now)
    session.add(report)
    session.flush()
    _store_photos(session, report, case, photos, now)
    _record(
        journal,
        case,
        "report",
        actor,
        now,
        reason=f"report {code} from {submission.channel.value}",
        detail={"tracking_code": code, "channel": submission.channel.value, "joined": joined},
    )
    if joined:
        tier = Tier(case.tier) if case.tier else Tier.DEPARTMENT
    else:
        tier = _place_new_case(session, journal, case, submission, deps, now)
    _chain(session, journal)
    return ReportReceipt(code, case.id, joined, tier, report.id)


# --- checks -----------------------------------------------------------------------------------


def _site(registry: SiteRegistry, site_id: str) -> SiteConfig:
    for site in registry.sites:
        if site.id == site_id:
            return site
    raise ReportRefused("report_unknown_site", {"site_id": site_id})


def known_buildings(registry: SiteRegistry, settings: ResidentSettings, site_id: str) -> list[str]:
    """The buildings the config knows at ``site_id`` (the page's picker): those listed for
    residents (``server.residents.buildings``), then those its zones name."""
    names = list(settings.buildings.get(site_id, ()))
    for site in registry.sites:
        if site.id != site_id:
            continue
        for gateway in site.gateways:
            for camera in gateway.cameras:
                names.extend(zone.building for zone in camera.zones if zone.building)
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.strip().casefold(), name.strip())
    return list(seen.values())


def _building(deps: IntakeDeps, site: SiteConfig, given: str | None) -> str | None:
    """The building as the config spells it. Refused only when ``server.residents.buildings``
    lists the site's buildings and this is none of them (nor a zone's): a zone naming its
    building does not make the zones' buildings the whole site."""
    settings = deps.settings
    building = _line(given, "building", settings.text.place_chars)
    if not building:
        return None
    known = deps.building_names(site.id).get(building.casefold())
    if known is not None:
        return known
    if site.id in settings.buildings:
        raise ReportRefused("report_unknown_building", {"site_id": site.id, "building": building})
    return building


def _field_name(field: str) -> str:
    return translator("en")(f"residents.field.{field}")


def _line(text: str | None, field: str, limit: int) -> str | None:
    """A one-line field: trimmed, NFC, bounded, without control characters; None if empty."""
    if text is None:
        return None
    cleaned = unicodedata.normalize("NFC", text).strip()
    if _UNSTORABLE.search(cleaned) or "\n" in cleaned or "\r" in cleaned:
        raise ReportRefused("report_text_invalid", {"field": _field_name(field)})
    if len(cleaned) > limit:
        raise ReportRefused("report_text_too_long", {"field": _field_name(field), "limit": limit})
    return cleaned or None


def _description(text: str, limit: int) -> str:
    """Stored as the resident wrote it (markup included: escaping is the pages' job), trimmed,
    NFC, line ends unified; control characters refused."""
    cleaned = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").strip()
    if _UNSTORABLE.search(cleaned):
        raise ReportRefused("report_text_invalid", {"field": _field_name("description")})
    if len(cleaned) > limit:
        raise ReportRefused(
            "report_text_too_long", {"field": _field_name("description"), "limit": limit}
        )
    return cleaned


def _phone(text: str | None) -> str | None:
    if text is None or not text.strip():
        return None
    try:
        return normalise_phone(text)
    except PhoneError:
        raise ReportRefused("report_bad_phone") from None


def _photos(photos: Sequence[bytes], settings: ResidentSettings) -> list[CleanPhoto]:
    limits = settings.photos
    if len(photos) > limits.max_photos:
        raise ReportRefused("report_too_many_photos", {"limit": limits.max_photos})
    cleaned = []
    for number, data in enumerate(photos, start=1):
        try:
            cleaned.append(clean_photo(data, limits, number))
        except PhotoError as exc:
            status_code = (
                status.HTTP_413_CONTENT_TOO_LARGE
                if exc.code == "report_photo_too_large"
                else status.HTTP_422_UNPROCESSABLE_CONTENT
            )
            raise ReportRefused(exc.code, exc.params, status_code) from None
    return cleaned


def _count(
    session: Session,
    submission: ReportSubmission,
    phone: str | None,
    settings: ResidentSettings,
    now: datetime,
) -> None:
    keys = [
        (LimitKey.ADDRESS, submission.client_address),
        (LimitKey.PHONE, phone or ""),
        (LimitKey.TOKEN, submission.token_id or ""),
    ]
    try:
        check_and_count(session, keys, settings.limits, now)
    except ReportLimited as exc:
        raise ReportRefused(
            exc.code,
            {
                "key": translator("en")(f"residents.limit_key.{exc.key_kind.value}"),
                "key_kind": exc.key_kind.value,
                "retry_after": exc.retry_after,
            },
            status.HTTP_429_TOO_MANY_REQUESTS,
            {"Retry-After": str(exc.retry_after)},
        ) from None


def _fresh_code(session: Session) -> str:
    """A tracking code no report has (a clash among 2**50 is rare, but is checked)."""
    while True:
        code = new_tracking_code()
        taken = session.scalar(
            select(ResidentReport.id).where(ResidentReport.tracking_code == code)
        )
        if taken is None:
            return code


# --- cases ------------------------------------------------------------------------------------


def _report_row(
    code: str,
    case: Case,
    joined: bool,
    submission: ReportSubmission,
    place: Place,
    description: str,
    phone: str | None,
    now: datetime,
) -> ResidentReport:
    return ResidentReport(
        tracking_code=code,
        case_id=case.id,
        joined=joined,
        channel=submission.channel.value,
        category=submission.category.value,
        site_id=submission.site_id,
        building=place.building,
        unit=place.unit,
        plan_x=place.plan_x,
        plan_y=place.plan_y,
        lat=submission.lat,
        long=submission.long,
        description=description,
        phone=phone,
        contact_consent=submission.contact_consent,
        submitted_by=submission.submitted_by,
        token_id=submission.token_id,
        client_address=submission.client_address,
        created_at=now,
    )


def _open_case(
    session: Session,
    journal: list[CaseTransition],
    submission: ReportSubmission,
    now: datetime,
    actor: str,
) -> Case:
    """A new case no camera saw: empty camera, gateway and zone ids, ``source`` the channel."""
    case = Case(
        violation_id=uuid.uuid4(),
        kind=submission.category.value,
        site_id=submission.site_id,
        gateway_id="",
        camera_id="",
        zone_id="",
        zone_kind="",
        state=CaseState.NEW.value,
        started_at=now,
        opened_at=now,
        last_observed_at=now,
        dwell_seconds=0.0,
        created_at=now,
        updated_at=now,
        overdue=False,
        escalation_level=0,
        chain_broken=False,
        source=submission.channel.value,
    )
    session.add(case)
    session.flush()
    _record(
        journal,
        case,
        "register",
        actor,
        now,
        to_state=CaseState.NEW,
        reason=f"registered from a {submission.channel.value} report",
        detail={"source": submission.channel.value},
        from_state=None,
    )
    return case


def _place_new_case(
    session: Session,
    journal: list[CaseTransition],
    case: Case,
    submission: ReportSubmission,
    deps: IntakeDeps,
    now: datetime,
) -> Tier:
    """Give a new case its tier and act on it: dispatch, consult, or guide and close."""
    kind = submission.category
    local = now.astimezone(deps.router.site_zone(case.site_id))
    tier, tier_facts = tier_for(deps.settings.tier_rules, kind, case.site_id, local)
    route, route_why = route_for_report(deps.routing.rules, kind, case.site_id, local, tier)
    if tier is Tier.HOUSEHOLD:
        _guide_and_close(session, journal, case, route, tier_facts, now)
        return tier
    ack_due_at, sla_due_at = deps.router.deadlines(route, now)
    consultation_deadline: datetime | None = None
    if tier is Tier.COMMUNITY:
        # The consultation's deadline is the case's resolve deadline: the SLA sweep's
        # community-tier transfer to escalate_to is what "escalates to 大事派单" means.
        consultation_deadline = now + timedelta(hours=deps.settings.consultation_hours)
        sla_due_at = consultation_deadline
        ack_due_at = min(ack_due_at, sla_due_at)
    case.department = route.department.value
    case.tier = route.tier.value
    case.priority = route.priority.value
    case.ack_due_at = ack_due_at
    case.sla_due_at = sla_due_at
    case.escalate_to = route.escalate_to.value if route.escalate_to else None
    why = (
        f"routing rule #{route_why['rule']}"
        if route_why["why"] == "routing_rule"
        else f"default route for {kind.value}"
    )
    detail: dict[str, Any] = {
        **route_why,
        **route_facts(route),
        "tier_rule": tier_facts,
        "ack_due_at": ack_due_at.isoformat(),
        "sla_due_at": sla_due_at.isoformat(),
    }
    if consultation_deadline is not None:
        consultation = open_consultation(
            session, case, deps.settings.consultation_quorum, consultation_deadline, now
        )
        detail["consultation_id"] = consultation.id
    _record(
        journal,
        case,
        "dispatch",
        DISPATCH_ACTOR,
        now,
        to_state=CaseState.DISPATCHED,
        reason=f"{why}: {describe_route(route)}",
        detail=detail,
    )
    return tier


def guidance_text(session: Session, kind: ViolationKind) -> tuple[str, str]:
    """(Chinese, English) guidance for a household matter: the admins' template for the
    category, else the shipped text for it, else the shipped general text."""
    template = session.get(GuidanceTemplate, kind.value)
    if template is not None:
        return template.body_zh, template.body_en
    texts = []
    for language in ("zh-CN", "en"):
        messages = translator(language).messages
        texts.append(
            messages.get(f"residents.guidance.{kind.value}")
            or messages["residents.guidance.default"]
        )
    return texts[0], texts[1]


def _guide_and_close(
    session: Session,
    journal: list[CaseTransition],
    case: Case,
    route: Route,
    tier_facts: dict[str, object],
    now: datetime,
) -> None:
    """私事自治: the guidance as a public reply, then the case closes; nobody is dispatched."""
    case.tier = Tier.HOUSEHOLD.value
    case.priority = route.priority.value
    case.escalate_to = route.escalate_to.value if route.escalate_to else None
    body_zh, body_en = guidance_text(session, ViolationKind(case.kind))
    _record(
        journal,
        case,
        "reply",
        DISPATCH_ACTOR,
        now,
        reason=body_zh,
        detail={"public": True, "guidance": True, "body_zh": body_zh, "body_en": body_en},
    )
    case.closed_at = now
    _record(
        journal,
        case,
        "close",
        DISPATCH_ACTOR,
        now,
        to_state=CaseState.CLOSED,
        reason="household matter: guidance given (私事自治)",
        detail={"tier": Tier.HOUSEHOLD.value, "tier_rule": tier_facts},
    )


_KEEP = object()


def _record(
    journal: list[CaseTransition],
    case: Case,
    action: str,
    actor: str,
    now: datetime,
    *,
    to_state: CaseState | None = None,
    reason: str = "",
    detail: dict[str, Any] | None = None,
    from_state: object = _KEEP,
) -> None:
    """One audit entry on ``case`` into ``journal`` (chained by ``_chain``); ``to_state`` None
    keeps its state."""
    before = case.state if from_state is _KEEP else from_state
    after = (to_state or CaseState(case.state)).value
    journal.append(
        CaseTransition(
            case_id=case.id,  # flushed already; the relationship would cascade a half entry
            action=action,
            from_state=before,
            to_state=after,
            actor=actor,
            reason=reason,
            at=now,
            detail=detail or {},
        ),
    )
    case.state = after
    case.updated_at = now


def _chain(session: Session, journal: Sequence[CaseTransition]) -> None:
    """Chain the report's entries in one call and add them to the session. Every other row is
    flushed first, so from the head's lock to the commit only the entries are written."""
    session.flush()
    values = [
        {name: getattr(entry, name) for name in HASHED_FIELDS if name != "seq"} for entry in journal
    ]
    # No autoflush: the entries are not in the session yet and must not be flushed half-chained.
    with session.no_autoflush:
        rows = chain_entries(session, values)
    for entry, row in zip(journal, rows, strict=True):
        entry.seq = row["seq"]
        entry.prev_hash = row["prev_hash"]
        entry.entry_hash = row["entry_hash"]
        entry.action = row["action"]
        entry.detail = row["detail"]
    session.add_all(journal)


def _store_photos(
    session: Session,
    report: ResidentReport,
    case: Case,
    photos: Sequence[CleanPhoto],
    now: datetime,
) -> None:
    """The clean copies (already in the evidence store) as the report's photos and the case's
    evidence (label ``resident``), so the console shows them beside the camera's frames."""
    for photo in photos:
        file_evidence(
            session,
            photo.sha256,
            photo.content_type,
            len(photo.data),
            photo.width,
            photo.height,
            now,
        )
        session.add(
            ReportPhoto(
                report_id=report.id,
                sha256=photo.sha256,
                content_type=photo.content_type,
                width=photo.width,
                height=photo.height,
                size=len(photo.data),
            )
        )
        link_evidence(session, case.id, photo.sha256, PHOTO_LABEL, now, photo.width, photo.height)
    session.flush()
