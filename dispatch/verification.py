"""Verification by camera: a resolved parking or fire-lane case is re-checked by its camera.

1. ``on_resolve`` (the Workflow's resolve hook, inside the resolving transaction) writes a
   VerificationRequest row and sets ``case.verification = "requested"``.
2. ``run_due`` (an APScheduler job) publishes the rows not yet published, after their commit,
   and gives up on requests past their deadline: ``verification = "unavailable"`` and a note
   so the dispatcher verifies by hand.
3. ``apply_result`` (ingest's hook for answers) records the answer and, while the case is still
   resolved, closes it (VERIFY, zone clear) or reopens it (REOPEN, naming what is still there).
   The answer's frame is attached to the case with label "verification".

Each request is answered once: the row is claimed with ``UPDATE ... WHERE answered_at IS NULL``,
so a redelivered answer, a late one and the timeout cannot both win.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from contracts.events import EvidenceFrame, ViolationKind
from contracts.topics import verify_topic
from contracts.verification import VerificationRequest as RequestMessage
from contracts.verification import VerificationResult
from dispatch.config import VerificationSettings
from dispatch.kinds import VERIFIED_KINDS
from dispatch.workflow import Action, Command, Workflow, system_actor
from storage.database import SessionFactory
from storage.evidence_guard import hold_for_new_bytes
from storage.evidence_rows import file_evidence, link_evidence
from storage.evidence_store import EvidenceStore
from storage.tables import (
    Case,
    CaseState,
    VerificationRequest,
    utcnow,
)

log = logging.getLogger(__name__)

EVIDENCE_LABEL = "verification"
CLEAR_REASON = "zone clear on re-check"
SYSTEM_ACTOR = "camera-verification"

Publish = Callable[[str, bytes], bool]
"""Sends one payload to a topic at QoS 1; False when it could not be sent now."""


class Verification(StrEnum):
    """Values of ``Case.verification``."""

    REQUESTED = "requested"
    CLEAR = "clear"
    NOT_CLEAR = "not_clear"
    UNAVAILABLE = "unavailable"


class CameraVerifier:
    """Asks cameras to re-check resolved cases and applies their answers. One per server."""

    def __init__(
        self,
        session_factory: SessionFactory,
        publish: Publish | None = None,
        settings: VerificationSettings | None = None,
        workflow: Workflow | None = None,
        metrics_registry: CollectorRegistry | None = None,
        evidence_store: EvidenceStore | None = None,
    ) -> None:
        """``workflow`` applies VERIFY and REOPEN: the composition root passes the one whose
        resolve hook calls this verifier's ``on_resolve``. ``evidence_store``: where ingest
        filed the answers' frames; given, an answer's frame is put again under the evidence
        lock in the transaction that files its row (the retention job may have removed the
        same image's bytes since ingest filed them)."""
        self._sessions = session_factory
        self._evidence = evidence_store
        self.publish = publish
        self.settings = settings or VerificationSettings()
        self.workflow = workflow or Workflow()
        registry = metrics_registry if metrics_registry is not None else CollectorRegistry()
        self._registry = registry
        self.requests_published = Counter(
            "civicwatch_verification_requests_published",
            "Camera verification requests sent to gateways",
            registry=registry,
        )
        self.outcomes = Counter(
            "civicwatch_verification_outcomes",
            "Camera verification answers and timeouts, by outcome "
            "(clear, not_clear, unavailable, timeout; ignored: unknown, duplicate, mismatch)",
            ["outcome"],
            registry=registry,
        )

    def outcome_count(self, outcome: str) -> float:
        """Answers and timeouts so far with this outcome (see ``outcomes``)."""
        sample = "civicwatch_verification_outcomes_total"
        return self._registry.get_sample_value(sample, {"outcome": outcome}) or 0.0

    # -- 1. the resolve hook -------------------------------------------------------------

    def on_resolve(self, session: Session, case: Case, now: datetime) -> None:
        """Workflow hook: ask the case's camera to re-check its zone (published after commit)."""
        if case.kind not in VERIFIED_KINDS:
            return
        # A case resolved again after a reopen: the older question no longer matters.
        session.execute(
            update(VerificationRequest)
            .where(
                VerificationRequest.case_id == case.id, VerificationRequest.answered_at.is_(None)
            )
            .values(answered_at=now, detail="superseded by a newer request")
            .execution_options(synchronize_session=False)
        )
        session.add(
            VerificationRequest(
                request_id=uuid.uuid4(),
                case_id=case.id,
                site_id=case.site_id,
                gateway_id=case.gateway_id,
                camera_id=case.camera_id,
                zone_id=case.zone_id,
                requested_at=now,
                deadline_at=now + timedelta(seconds=self.settings.deadline_seconds),
                detail="",
            )
        )
        case.verification = Verification.REQUESTED.value

    # -- 2. the job ----------------------------------------------------------------------

    def run_due(self, now: datetime | None = None) -> tuple[int, int]:
        """Publish what is unpublished, then time out what is overdue: (published, timed out)."""
        now = now or utcnow()
        return self.publish_pending(now), self.expire_overdue(now)

    def publish_pending(self, now: datetime) -> int:
        """Send every committed, unanswered request not yet sent; stops at the first failure."""
        if self.publish is None:
            return 0
        sent = 0
        with self._sessions.begin() as session:
            rows = session.execute(
                select(VerificationRequest, Case.kind)
                .join(Case, Case.id == VerificationRequest.case_id)
                .where(
                    VerificationRequest.published_at.is_(None),
                    VerificationRequest.answered_at.is_(None),
                    VerificationRequest.deadline_at > now,  # the others time out instead
                )
                .order_by(VerificationRequest.requested_at)
                .limit(500)
            ).all()
            for row, kind in rows:
                # The time left, not the whole window: a request sent late is not answered late.
                left = ((row.deadline_at or now) - now).total_seconds()
                message = RequestMessage(
                    request_id=row.request_id,
                    case_id=row.case_id,
                    site_id=row.site_id,
                    gateway_id=row.gateway_id,
                    camera_id=row.camera_id,
                    zone_id=row.zone_id,
                    kind=ViolationKind(kind),
                    requested_at=row.requested_at,
                    deadline_seconds=min(3600.0, max(1.0, left)),
                )
                topic = verify_topic(row.site_id, row.gateway_id, row.camera_id)
                if not self.publish(topic, message.to_wire()):
                    log.warning("verification %s not sent: no broker now", row.request_id)
                    break
                row.published_at = now
                sent += 1
        self.requests_published.inc(sent)
        return sent

    def expire_overdue(self, now: datetime) -> int:
        """Requests unanswered at their deadline: the dispatcher verifies those cases by hand."""
        expired = 0
        with self._sessions.begin() as session:
            overdue = session.scalars(
                select(VerificationRequest.request_id).where(
                    VerificationRequest.answered_at.is_(None),
                    VerificationRequest.deadline_at <= now,
                )
            ).all()
            for request_id in overdue:
                detail = "no answer from the camera before the deadline"
                row = self._claim(session, request_id, now, None, detail)
                if row is None:
                    continue
                expired += 1
                self.outcomes.labels(outcome="timeout").inc()
                case = session.get(Case, row.case_id, with_for_update=True)
                if case is None or case.state != CaseState.RESOLVED:
                    continue
                case.verification = Verification.UNAVAILABLE.value
                self._note(
                    session,
                    case,
                    row,
                    now,
                    f"camera {row.camera_id} did not answer the re-check within "
                    f"{(row.deadline_at or now) - row.requested_at}: verify by hand",
                    {
                        "why": "verification_timeout",
                        "camera_id": row.camera_id,
                        "waited_seconds": (
                            (row.deadline_at or now) - row.requested_at
                        ).total_seconds(),
                    },
                )
                log.warning("verification %s of case %d timed out", request_id, case.id)
        return expired

    # -- 3. the answers ------------------------------------------------------------------

    def apply_result(self, result: VerificationResult, now: datetime | None = None) -> None:
        """Ingest's hook: record the answer; close or reopen the case while it is resolved."""
        now = now or utcnow()
        with self._sessions.begin() as session:
            self._apply(session, result, now)

    def _apply(self, session: Session, result: VerificationResult, now: datetime) -> None:
        known = session.get(VerificationRequest, result.request_id)
        if known is None:
            self._ignore("unknown", result, "no such request")
            return
        asked = (known.site_id, known.gateway_id, known.camera_id, known.zone_id)
        answered = (result.site_id, result.gateway_id, result.camera_id, result.zone_id)
        if asked != answered:
            self._ignore("mismatch", result, f"asked {'/'.join(asked)}")
            return
        row = self._claim(session, result.request_id, now, result.clear, result.detail)
        if row is None:
            self._ignore("duplicate", result, "already answered, superseded or timed out")
            return
        case = session.get(Case, row.case_id, with_for_update=True)
        if case is None:
            return
        evidence = self._attach(session, case, result.evidence, self._evidence)
        detail: dict[str, object] = {
            "request_id": str(result.request_id),
            "camera_id": result.camera_id,
            "zone_id": result.zone_id,
            "frames_checked": result.frames_checked,
            "evidence": evidence,
        }
        if result.blocked_share is not None:
            detail["blocked_share"] = result.blocked_share
        unavailable = not result.clear and result.frames_checked == 0
        outcome = "clear" if result.clear else "unavailable" if unavailable else "not_clear"
        self.outcomes.labels(outcome=outcome).inc()
        if case.state != CaseState.RESOLVED:
            log.info(
                "verification %s answered (%s) but case %d is %s now: recorded only",
                result.request_id,
                outcome,
                case.id,
                case.state,
            )
            return
        actor = system_actor(f"camera:{result.camera_id}"[:64])
        if result.clear:
            detail["why"] = "verified_clear"
            command = Command(Action.VERIFY, reason=CLEAR_REASON, detail=detail)
            self.workflow.apply(session, case, command, actor, now)
            case.verification = Verification.CLEAR.value
        elif unavailable:
            case.verification = Verification.UNAVAILABLE.value
            reason = f"camera could not re-check the zone ({result.detail}): verify by hand"
            self._note(session, case, row, now, reason, detail | {"problem": result.detail[:200]})
        else:
            reason = still_there(result)
            # What it saw, as facts: the timeline names the objects in the page's language.
            detail["why"] = "still_there"
            detail["objects"] = [o.class_name for o in result.objects]
            self.workflow.apply(
                session, case, Command(Action.REOPEN, reason, detail=detail), actor, now
            )
            case.verification = Verification.NOT_CLEAR.value  # REOPEN cleared it
        log.info("verification %s: case %d %s", result.request_id, case.id, outcome)

    def _claim(
        self,
        session: Session,
        request_id: uuid.UUID,
        now: datetime,
        clear: bool | None,
        detail: str,
    ) -> VerificationRequest | None:
        """Mark the request answered if nobody has; the row when this call won, else None."""
        claimed = session.execute(
            update(VerificationRequest)
            .where(
                VerificationRequest.request_id == request_id,
                VerificationRequest.answered_at.is_(None),
            )
            .values(answered_at=now, clear=clear, detail=detail[:2000])
            .execution_options(synchronize_session=False)
        )
        if not isinstance(claimed, CursorResult) or claimed.rowcount != 1:
            return None
        row = session.get(VerificationRequest, request_id, populate_existing=True)
        return row

    def _note(
        self,
        session: Session,
        case: Case,
        row: VerificationRequest,
        now: datetime,
        reason: str,
        detail: dict[str, object] | None = None,
    ) -> None:
        note = Command(
            action=Action.NOTE,
            reason=reason,
            detail={
                "request_id": str(row.request_id),
                "verification": Verification.UNAVAILABLE,
                "why": "verification_unavailable",
            }
            | (detail or {}),
        )
        self.workflow.apply(session, case, note, system_actor(SYSTEM_ACTOR), now)

    @staticmethod
    def _attach(
        session: Session, case: Case, frame: EvidenceFrame | None, store: EvidenceStore | None
    ) -> str | None:
        """The answer's frame (already filed by ingest) linked to the case; its sha256.

        With ``store``, the lock is taken before the rows and the bytes put again (a no-op when
        they are there): the retention job removes none of them until this commits, and bytes
        it removed after ingest filed them are written anew (storage.evidence_guard)."""
        if frame is None:
            return None
        copies = [(frame.sha256, frame.data)]
        if frame.redacted is not None:
            copies.append((frame.redacted.sha256, frame.redacted.data))
        if store is not None:
            hold_for_new_bytes(session)
            for sha256, data in copies:
                store.put(data, sha256)
        for sha256, data in copies:
            file_evidence(
                session, sha256, frame.content_type, len(data), frame.width, frame.height, utcnow()
            )
        link_evidence(
            session,
            case.id,
            frame.sha256,
            EVIDENCE_LABEL,
            frame.captured_at,
            frame.width,
            frame.height,
            redacted_sha256=frame.redacted.sha256 if frame.redacted else None,
            faces_blurred=frame.redacted.faces_blurred if frame.redacted else None,
        )
        return frame.sha256

    def _ignore(self, outcome: str, result: VerificationResult, why: str) -> None:
        self.outcomes.labels(outcome=outcome).inc()
        log.warning(
            "verification answer %s from %s/%s/%s ignored (%s): %s",
            result.request_id,
            result.site_id,
            result.gateway_id,
            result.camera_id,
            outcome,
            why,
        )


def still_there(result: VerificationResult) -> str:
    """The reopen reason: what the camera still saw in the zone."""
    seen = ", ".join(f"{o.class_name} ({o.confidence:.2f})" for o in result.objects) or (
        result.detail or "something"
    )
    share = (
        f"; {result.blocked_share:.0%} of the lane blocked"
        if result.blocked_share is not None
        else ""
    )
    return f"still in the zone on re-check by camera {result.camera_id}: {seen}{share}"
