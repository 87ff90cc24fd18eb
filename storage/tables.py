"""The storage schema: ingested events, evidence, cases and their audit trail, device status.

Every timestamp is stored as UTC and read back timezone-aware, on SQLite as on PostgreSQL.
Schema changes go through Alembic (storage/migrations); this module is the target they match.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware column: refuses naive datetimes, stores UTC, reads back UTC-aware.

    SQLite has no timezone type, so without this it would hand back naive datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: civicwatch stores timezone-aware times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> Callable[[Any], datetime | None]:
        """``process_result_value`` as one closure per column: a page of 100 cases reads ~800
        of these values, and TypeDecorator's generic processor costs two Python calls more per
        value (~0.5 ms a page; bench.request_cpu). The same values come out."""
        impl = self.impl_instance.result_processor(dialect, coltype)

        def process(value: datetime | None) -> datetime | None:
            if value is None:
                return None
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

        if impl is None:  # psycopg: an aware datetime already
            return process

        def process_text(value: Any) -> datetime | None:  # SQLite: stored as text
            return process(impl(value))

        return process_text


def utcnow() -> datetime:
    return datetime.now(UTC)


class CaseState(StrEnum):
    NEW = "new"  # registered (登记), not yet dispatched
    DISPATCHED = "dispatched"  # sent to a department (派遣), waiting to be accepted
    ACCEPTED = "accepted"  # the department is handling it (受理/处置)
    RESOLVED = "resolved"  # the department says it is fixed; waiting for verification (核查)
    CLOSED = "closed"  # verified and filed (结案)
    RETURNED = "returned"  # back at the command centre with a reason (退回)
    PARKED = "parked"  # overdue and put on the parked register (挂账)
    MERGED = "merged"  # a duplicate of another case (duplicate_of)
    # Warned at the dwell crossing (先提醒后执法): no department until the grace period ends;
    # then closed (complied) or dispatched (still there). Ingest moves it; no person does.
    WARNED = "warned"


# States in which somebody still owes the fix: the SLA sweep watches these and ingest folds new
# sightings into them. Parked cases sit on a register of their own and no longer escalate.
OPEN_STATES = frozenset(
    {CaseState.NEW, CaseState.DISPATCHED, CaseState.ACCEPTED, CaseState.RETURNED}
)

# Stable constraint names so migrations can address them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Event(Base):
    """One received violation message, keyed by its idempotency key."""

    __tablename__ = "events"

    message_id: Mapped[UUID] = mapped_column(Uuid, primary_key=True)
    violation_id: Mapped[UUID] = mapped_column(Uuid, index=True)
    camera_id: Mapped[str] = mapped_column(String(64), index=True)
    site_id: Mapped[str] = mapped_column(String(64))
    gateway_id: Mapped[str] = mapped_column(String(64))
    sequence: Mapped[int] = mapped_column(BigInteger)
    phase: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    zone_id: Mapped[str] = mapped_column(String(64))
    observed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    historical: Mapped[bool] = mapped_column(Boolean)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, doc="the message without image bytes")
    plate_text: Mapped[str | None] = mapped_column(String(16))
    plate_confidence: Mapped[float | None] = mapped_column(Float)
    blocked_share: Mapped[float | None] = mapped_column(Float)


class Evidence(Base):
    """One stored image file, addressed by its SHA-256."""

    __tablename__ = "evidence"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    stored_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # A small image ingest packed (storage/evidence_packs.py): its pack and its record's offset
    # (its length is size); both None for an image kept as a file of its own.
    pack: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pack_offset: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Case(Base):
    """One incident (all phases of one violation_id), as departments work it."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    violation_id: Mapped[UUID] = mapped_column(Uuid, unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    site_id: Mapped[str] = mapped_column(String(64), index=True)
    gateway_id: Mapped[str] = mapped_column(String(64))
    camera_id: Mapped[str] = mapped_column(String(64), index=True)
    zone_id: Mapped[str] = mapped_column(String(64))
    zone_kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), index=True)
    department: Mapped[str | None] = mapped_column(String(32), index=True)
    tier: Mapped[str | None] = mapped_column(String(16))
    priority: Mapped[str | None] = mapped_column(String(16))
    sla_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    overdue: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_observed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    cleared_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    dwell_seconds: Mapped[float] = mapped_column(Float)
    object_class: Mapped[str | None] = mapped_column(String(64))
    object_confidence: Mapped[float | None] = mapped_column(Float)
    box_x1: Mapped[float | None] = mapped_column(Float)
    box_y1: Mapped[float | None] = mapped_column(Float)
    box_x2: Mapped[float | None] = mapped_column(Float)
    box_y2: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    location: Mapped[str | None] = mapped_column(
        String(64), doc="the zone's site location: cameras that see the same place share it"
    )
    plate_text: Mapped[str | None] = mapped_column(String(16), index=True)
    plate_confidence: Mapped[float | None] = mapped_column(Float)
    plate_votes: Mapped[int | None] = mapped_column(Integer)
    blocked_share: Mapped[float | None] = mapped_column(Float)
    chain_broken: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), doc="an evidence hash chain did not verify"
    )
    # Workflow and SLA (issue 5). Deadlines live here, not in timers, so a restart loses none.
    ack_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    escalation_level: Mapped[int] = mapped_column(
        Integer, default=0, server_default=text("0"), doc="0 none, 1 supervisor, 2 department head"
    )
    escalated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    escalate_to: Mapped[str | None] = mapped_column(
        String(32), doc="community tier: the department it goes to if not resolved in its SLA"
    )
    duplicate_of: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), index=True
    )
    verification: Mapped[str | None] = mapped_column(
        String(16), doc="camera re-check: requested, clear, not_clear, unavailable"
    )
    assignee: Mapped[str | None] = mapped_column(
        String(64), index=True, doc="the person in the department the case is assigned to"
    )
    source: Mapped[str] = mapped_column(
        String(16),
        default="camera",
        server_default="camera",
        doc="what opened it: camera, or a resident's report (web, qr, hotline, open311); a case "
        "no camera saw has empty gateway, camera and zone ids",
    )

    evidence: Mapped[list[CaseEvidence]] = relationship(
        back_populates="case", order_by="CaseEvidence.captured_at"
    )
    transitions: Mapped[list[CaseTransition]] = relationship(
        back_populates="case", order_by="CaseTransition.id"
    )
    violations: Mapped[list[CaseViolation]] = relationship(
        back_populates="case", order_by="CaseViolation.linked_at"
    )
    related_links: Mapped[list[CaseLink]] = relationship(
        foreign_keys="CaseLink.case_id", order_by="CaseLink.related_case_id", viewonly=True
    )

    @property
    def related_case_ids(self) -> list[int]:
        """Earlier (or later) cases of the same plate: the repeat-offender trail."""
        return [link.related_case_id for link in self.related_links]

    @property
    def violation_ids(self) -> list[UUID]:
        """Every violation (camera incident) merged into this case, the first one first."""
        return [link.violation_id for link in self.violations]


# The console's orderings, so a page of 100,000 cases is an index walk, not a sort: the case
# list (deadline soonest first, none last; also by department and by state), the recent-changes
# list and the 14-day charts. Expression indexes: the list sorts by "sla_due_at IS NULL" first.
_DUE_ORDER = (Case.sla_due_at.is_(None), Case.sla_due_at, Case.id)
CONSOLE_INDEXES = (
    Index("ix_cases_due_order", *_DUE_ORDER),
    Index("ix_cases_department_due", Case.department, *_DUE_ORDER),
    Index("ix_cases_state_due", Case.state, *_DUE_ORDER),
    # one department's cases in one state: the filtered list's count and page (migration 0009)
    Index("ix_cases_department_state_due", Case.department, Case.state, *_DUE_ORDER),
    # the open cases alone (the SLA board), so its walk skips no closed case (migration 0009)
    Index(
        "ix_cases_open_due",
        *_DUE_ORDER,
        postgresql_where=Case.state.in_(sorted(state.value for state in OPEN_STATES)),
        sqlite_where=Case.state.in_(sorted(state.value for state in OPEN_STATES)),
    ),
    Index("ix_cases_updated_at_id", Case.updated_at, Case.id),
    Index("ix_cases_created_at", Case.created_at),
)


class CaseEvidence(Base):
    __tablename__ = "case_evidence"
    __table_args__ = (UniqueConstraint("case_id", "sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(ForeignKey("evidence.sha256"), index=True)
    label: Mapped[str] = mapped_column(String(32))
    captured_at: Mapped[datetime] = mapped_column(UtcDateTime)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    violation_id: Mapped[UUID | None] = mapped_column(Uuid, index=True)
    sequence: Mapped[int | None] = mapped_column(BigInteger, doc="the carrying message's sequence")
    position: Mapped[int | None] = mapped_column(Integer, doc="the frame's place in its message")
    chain_sha256: Mapped[str | None] = mapped_column(String(64))
    redacted_sha256: Mapped[str | None] = mapped_column(
        ForeignKey("evidence.sha256"), doc="the console's copy, bystanders' faces blurred"
    )
    faces_blurred: Mapped[int | None] = mapped_column(Integer)

    case: Mapped[Case] = relationship(back_populates="evidence")


# The evidence route finds a frame's cases by either hash (original or redacted copy).
REDACTED_EVIDENCE_INDEX = Index("ix_case_evidence_redacted_sha256", CaseEvidence.redacted_sha256)


class CaseViolation(Base):
    """Which case each violation (one camera's incident) belongs to: merged incidents share one."""

    __tablename__ = "case_violations"

    violation_id: Mapped[UUID] = mapped_column(Uuid, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    zone_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(16), doc="origin, plate or location")
    chain_broken: Mapped[bool] = mapped_column(Boolean, default=False)
    linked_at: Mapped[datetime] = mapped_column(UtcDateTime)

    case: Mapped[Case] = relationship(back_populates="violations")


class CaseLink(Base):
    """Two cases of the same offender (same plate), stored in both directions."""

    __tablename__ = "case_links"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    related_case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    reason: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class CameraSequence(Base):
    """The highest message sequence stored per camera, so gaps survive restarts."""

    __tablename__ = "camera_sequences"

    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    highest: Mapped[int] = mapped_column(BigInteger)


class SequenceGap(Base):
    """A run of sequence numbers a camera skipped; it shrinks as late messages arrive."""

    __tablename__ = "sequence_gaps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    camera_id: Mapped[str] = mapped_column(String(64), index=True)
    first: Mapped[int] = mapped_column(BigInteger)
    last: Mapped[int] = mapped_column(BigInteger)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CaseTransition(Base):
    """The append-only audit log: every action on a case (who, what, from which state to which,
    when, why), chained by hash so an edited or deleted entry shows (see storage/audit.py)."""

    __tablename__ = "case_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    action: Mapped[str] = mapped_column(String(32), default="", server_default="")
    detail: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict, server_default=text("'{}'"), doc="structured facts of the action"
    )
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True, doc="place in the chain")
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    entry_hash: Mapped[str | None] = mapped_column(String(64))

    case: Mapped[Case] = relationship(back_populates="transitions")


class AuditHead(Base):
    """The chain's newest entry (one row, id 1). Writers lock it, so entries chain one at a time."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditCursor(Base):
    """How far a reader of the audit log (notifications, camera verification) has got, so a
    restart neither repeats nor skips an entry."""

    __tablename__ = "audit_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)


class User(Base):
    """A person at the console or in a department."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    role: Mapped[str] = mapped_column(String(16), doc="admin, dispatcher, supervisor, worker")
    department: Mapped[str | None] = mapped_column(String(32), doc="supervisors and workers")
    is_head: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), doc="the department's head (escalation 2)"
    )
    password_hash: Mapped[str] = mapped_column(String(256), doc="argon2id")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    password_changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    site_id: Mapped[str | None] = mapped_column(
        String(64), doc="council members and building leads: the site (compound) they serve"
    )
    alert_sound: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), doc="opted in: a sound on urgent cases"
    )
    alert_desktop: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), doc="opted in: desktop notifications"
    )


class UserSession(Base):
    """A login: only the SHA-256 of its token is stored, so a database leak logs nobody in."""

    __tablename__ = "user_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    client: Mapped[str] = mapped_column(String(64), default="")


class AccountAudit(Base):
    """Append-only record of changes to accounts (created, password changed or set, deactivated):
    who did it, to whom, when and from where. Never a password or a token."""

    __tablename__ = "account_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    username: Mapped[str] = mapped_column(String(64), index=True, doc="whose account")
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64), doc="who did it: the user, an admin, the CLI")
    client: Mapped[str] = mapped_column(String(64), default="")


class LoginFailure(Base):
    """Failed logins, for rate limiting by user name and by client address across workers."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    client: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class Notification(Base):
    """One message owed to a department (webhook or MQTT), written in the transaction that caused
    it (an outbox), then delivered with retries; failures stay here to be retried by hand."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16), doc="webhook or mqtt")
    department: Mapped[str] = mapped_column(String(32), index=True)
    target: Mapped[str] = mapped_column(String(512), doc="URL or topic")
    event_type: Mapped[str] = mapped_column(String(32))
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), index=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True, doc="pending, delivered, failed")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class VerificationRequest(Base):
    """A request to a camera to re-check a resolved case's zone, and its answer."""

    __tablename__ = "verification_requests"

    request_id: Mapped[UUID] = mapped_column(Uuid, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    site_id: Mapped[str] = mapped_column(String(64))
    gateway_id: Mapped[str] = mapped_column(String(64))
    camera_id: Mapped[str] = mapped_column(String(64))
    zone_id: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    clear: Mapped[bool | None] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(Text, default="")
    published_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime, doc="sent to the gateway; None: the publish job has not sent it yet"
    )
    deadline_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime, doc="unanswered by then: the dispatcher verifies by hand"
    )


class CameraStatusRow(Base):
    """The latest status each camera reported (retained MQTT message)."""

    __tablename__ = "camera_status"

    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64))
    gateway_id: Mapped[str] = mapped_column(String(64))
    health: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")
    frames_read: Mapped[int] = mapped_column(Integer, default=0)
    detection_fps: Mapped[float] = mapped_column(Float, default=0.0)
    detector: Mapped[str] = mapped_column(String(128), default="")
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    problems: Mapped[list[str]] = mapped_column(
        JSON, default=list, server_default=text("'[]'"), doc="CameraProblem values"
    )
    detection_path: Mapped[str] = mapped_column(
        String(32), default="detector", server_default="detector"
    )


class GatewayStatusRow(Base):
    """The latest status each gateway reported, including the broker's last will."""

    __tablename__ = "gateway_status"

    gateway_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    outbox_pending: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    rules_version: Mapped[int | None] = mapped_column(
        BigInteger, doc="the signed rule document it runs (kept through its last will)"
    )


class SavedView(Base):
    """A console user's named filter of the case list (the query string it stands for)."""

    __tablename__ = "saved_views"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    query: Mapped[str] = mapped_column(String(2000), doc="the list's query string, checked")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ResponseTemplate(Base):
    """A reply or note a dispatcher or worker picks instead of typing it (one department or all)."""

    __tablename__ = "response_templates"
    __table_args__ = (UniqueConstraint("name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(80))
    body: Mapped[str] = mapped_column(Text)
    department: Mapped[str | None] = mapped_column(String(32), doc="None: every department")
    created_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SitePlanImage(Base):
    """A site's plan image uploaded by an admin; its bytes live in the evidence store."""

    __tablename__ = "site_plans"

    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(32), doc="decided from the bytes")
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    uploaded_by: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CameraPlacement(Base):
    """Where an admin put a camera on its site's plan (fractions of width and height); it wins
    over the config's plan_position."""

    __tablename__ = "camera_placements"

    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64), index=True)
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    placed_by: Mapped[str] = mapped_column(String(64))
    placed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AnalysisReport(Base):
    """One joint analysis report (社情研判) for a period and a place, as HTML and PDF."""

    __tablename__ = "analysis_reports"
    __table_args__ = (UniqueConstraint("period", "scope", "scope_id", "period_start", "language"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    period: Mapped[str] = mapped_column(String(8), doc="week or month")
    scope: Mapped[str] = mapped_column(String(8), doc="site (a compound) or street")
    scope_id: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[datetime] = mapped_column(UtcDateTime)
    period_end: Mapped[datetime] = mapped_column(UtcDateTime)
    language: Mapped[str] = mapped_column(String(8))
    generated_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    generated_by: Mapped[str] = mapped_column(String(64), doc="the schedule or a person")
    html: Mapped[str] = mapped_column(Text)
    pdf: Mapped[bytes] = mapped_column(LargeBinary)


class CameraHealthChange(Base):
    """Each change of a camera's reported health, so uptime over a period can be counted."""

    __tablename__ = "camera_health_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    camera_id: Mapped[str] = mapped_column(String(64), index=True)
    site_id: Mapped[str] = mapped_column(String(64))
    health: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class ResidentReport(Base):
    """A problem a resident reported (web page, QR poster, hotline, Open311): always part of one
    case, opened for it or joined to a case already open for the same problem."""

    __tablename__ = "resident_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tracking_code: Mapped[str] = mapped_column(String(16), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    joined: Mapped[bool] = mapped_column(Boolean, doc="joined a case already open, not opened it")
    channel: Mapped[str] = mapped_column(String(16), doc="web, qr, hotline or open311")
    category: Mapped[str] = mapped_column(String(32), doc="a ViolationKind value")
    site_id: Mapped[str] = mapped_column(String(64), index=True)
    building: Mapped[str | None] = mapped_column(String(64))
    unit: Mapped[str | None] = mapped_column(String(64))
    plan_x: Mapped[float | None] = mapped_column(Float, doc="a point on the site plan, 0..1")
    plan_y: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    long: Mapped[float | None] = mapped_column(Float)
    description: Mapped[str] = mapped_column(Text, default="")
    phone: Mapped[str | None] = mapped_column(String(32), doc="whole; masked outside dispatchers")
    contact_consent: Mapped[bool] = mapped_column(
        Boolean, default=False, doc="the resident agreed that the department sees who reported"
    )
    submitted_by: Mapped[str | None] = mapped_column(
        String(64), doc="the hotline operator or Open311 integration; None: the resident"
    )
    token_id: Mapped[str | None] = mapped_column(String(64), doc="the QR poster's token id")
    client_address: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    rating: Mapped[str | None] = mapped_column(
        String(16),
        doc="satisfied (满意), basic (基本满意) or dissatisfied (不满意): followup.Rating",
    )
    rating_comment: Mapped[str] = mapped_column(Text, default="")
    rated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ReportPhoto(Base):
    """A resident's photo, EXIF stripped; its bytes live in the evidence store."""

    __tablename__ = "report_photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[int] = mapped_column(
        ForeignKey("resident_reports.id", ondelete="CASCADE"), index=True
    )
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(32), doc="decided from the bytes")
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)


class Consultation(Base):
    """小事协商: a community-tier case the residents' council and property management settle by
    discussion and a vote, or hand to a department when the deadline passes."""

    __tablename__ = "consultations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), unique=True)
    site_id: Mapped[str] = mapped_column(String(64), index=True)
    quorum: Mapped[int] = mapped_column(Integer, doc="votes needed for a proposal to carry")
    deadline_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    state: Mapped[str] = mapped_column(String(16), doc="open, agreed or escalated")
    outcome: Mapped[str] = mapped_column(Text, default="")
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ConsultationPost(Base):
    """A comment or a proposed resolution in a consultation."""

    __tablename__ = "consultation_posts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consultation_id: Mapped[int] = mapped_column(
        ForeignKey("consultations.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16), doc="comment or proposal")
    author: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class ConsultationVote(Base):
    """One member's vote on one proposal; a member may change it until the consultation ends."""

    __tablename__ = "consultation_votes"

    proposal_id: Mapped[int] = mapped_column(
        ForeignKey("consultation_posts.id", ondelete="CASCADE"), primary_key=True
    )
    voter: Mapped[str] = mapped_column(String(64), primary_key=True)
    choice: Mapped[str] = mapped_column(String(8), doc="for, against or abstain")
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class GuidanceTemplate(Base):
    """私事自治: the guidance reply a resident gets for a household matter, per category."""

    __tablename__ = "guidance_templates"

    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    body_zh: Mapped[str] = mapped_column(Text)
    body_en: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ReportLimitHit(Base):
    """A report counted against a limit (per client address, phone number or QR token), so the
    limits hold across API workers."""

    __tablename__ = "report_limit_hits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_kind: Mapped[str] = mapped_column(String(8), doc="address, phone or token")
    key: Mapped[str] = mapped_column(String(128), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class IntegrationKey(Base):
    """An Open311 integration's api_key: only its SHA-256 is stored."""

    __tablename__ = "integration_keys"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ExemptionRuleRow(Base):
    """One exemption rule (contracts.exemptions): a permit, an allowlist, a family bay or a time
    window, on a site or one zone. ``body`` is the rule as the wire contract writes it; the other
    columns repeat what lookups filter on. Revoked rules stay, marked, for the record."""

    __tablename__ = "exemption_rules"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64), index=True)
    zone_id: Mapped[str | None] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    plate: Mapped[str | None] = mapped_column(String(16), index=True, doc="permits: their plate")
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(Text)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    issued_by: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    revoked_by: Mapped[str | None] = mapped_column(String(64))


class RuleDocumentVersion(Base):
    """The newest rule-document version signed for each gateway: it only ever increases."""

    __tablename__ = "rule_document_versions"

    gateway_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ExemptionAudit(Base):
    """Every change to exemption rules (issued, revoked), chained by SHA-256 like the case audit
    (storage.audit.entry_hash): an edited or deleted entry breaks the chain."""

    __tablename__ = "exemption_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    rule_id: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class RegistryVehicle(Base):
    """A vehicle in the residents' registry (issue 13 point 5): a resident's, a resident's family's
    (孝心车位) or a service vehicle, with its owner's name and phone. Personal data: held here,
    never sent to a gateway (only the plates reach the rule documents, dispatch/registry.py)."""

    __tablename__ = "registry_vehicles"
    __table_args__ = (UniqueConstraint("site_id", "plate"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(64), index=True)
    plate: Mapped[str] = mapped_column(String(16), index=True)
    category: Mapped[str] = mapped_column(String(16), doc="resident, family or service")
    building: Mapped[str] = mapped_column(String(32), default="")
    unit: Mapped[str] = mapped_column(String(32), default="")
    owner_name: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_by: Mapped[str] = mapped_column(String(64))


class CaseListVersion(Base):
    """The case lists' count version (one row, id 1): triggers on ``cases`` (migration 0011) add
    one in every transaction that inserts or deletes a case or changes a column a list counts
    by, so a count read at a version stays exact until it moves (dispatch/case_counts.py)."""

    __tablename__ = "case_list_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class EvidenceDeletion(Base):
    """An image whose evidence rows the retention job removed and whose bytes are still to be
    deleted from the evidence store (migration 0012; storage/evidence_retention.py)."""

    __tablename__ = "evidence_deletions"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    queued_at: Mapped[datetime] = mapped_column(UtcDateTime)
