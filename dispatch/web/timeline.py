"""A case's timeline in the page's language: each entry told from its structured ``detail``.

The audit log keeps an English ``reason`` for every entry (the API and the hash chain carry it
as written), but a line a system wrote is shown from the facts in ``detail``: which routing rule
matched, what the camera saw on re-check, which deadline was missed, where a deadline moved.
A reason a person typed shows as typed. Entries written before the facts were stored (only
English prose) still show their prose: nothing is hidden, just not translated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dispatch.web.i18n import Translator

# System actors (the names the writers use) and their message keys; a person's name shows as is.
SYSTEM_ACTORS = {
    "dispatch": "actor.dispatch",
    "ingest": "actor.ingest",
    "sla-sweep": "actor.sla_sweep",
    "camera-verification": "actor.camera_verification",
    "local": "actor.local",
    "system": "actor.system",
    "retention": "actor.retention",
}
CAMERA_ACTOR_PREFIX = "camera:"

# Keys a routing rule matches on (dispatch/routing.py writes them under detail["match"]).
MATCH_KEYS = ("kind", "zone_kind", "zone_id", "site_id", "hours")

LocalTime = Callable[[datetime | str | None, str | None], str]
"""A stored time (UTC, or its ISO text) shown in a site's zone: ``SiteClock.local``."""


def actor_name(t: Translator, actor: str) -> str:
    """Who did it, in the page's language: system actors by role, people by their name."""
    key = SYSTEM_ACTORS.get(actor)
    if key is not None:
        return t(key)
    if actor.startswith(CAMERA_ACTOR_PREFIX):
        return t("actor.camera", camera=actor[len(CAMERA_ACTOR_PREFIX) :])
    return actor


def is_system_actor(actor: str) -> bool:
    return actor in SYSTEM_ACTORS or actor.startswith(CAMERA_ACTOR_PREFIX)


@dataclass(frozen=True)
class TimelineLine:
    """One entry as shown: ``facts`` in the page's language, ``typed`` as a person wrote it,
    ``prose`` the stored English text of an old system entry that has no facts to tell."""

    actor: str
    facts: list[str] = field(default_factory=list)
    typed: str = ""
    prose: str = ""


class TimelineText:
    """Tells timeline entries in one language; ``local`` shows a stored time in the site's zone."""

    def __init__(self, t: Translator, local: LocalTime) -> None:
        self._t = t
        self._local_in = local

    def _local(self, value: object, site_id: str | None) -> str:
        if not isinstance(value, datetime | str) or not value:
            return "—"
        try:
            return self._local_in(value, site_id)
        except ValueError:  # not a time after all: show what was stored
            return str(value)

    def __call__(self, entry: Any, site_id: str | None = None) -> TimelineLine:
        """``entry``: a CaseTransition (or anything with its attributes)."""
        actor: str = entry.actor or ""
        detail: Mapping[str, Any] = entry.detail or {}
        facts = self.facts(entry.action or "", detail, actor, site_id)
        reason: str = (entry.reason or "").strip()
        if not is_system_actor(actor):
            return TimelineLine(actor_name(self._t, actor), facts, typed=reason)
        # A system entry whose facts were stored says it in the page's language; an old one
        # (English prose only) keeps its prose rather than showing nothing.
        told = bool(detail.get("why")) or self._told_by_action(entry.action or "", detail)
        return TimelineLine(actor_name(self._t, actor), facts, prose="" if told else reason)

    @staticmethod
    def _told_by_action(action: str, detail: Mapping[str, Any]) -> bool:
        """Entries whose action and detail say everything without a ``why`` (the SLA sweep's)."""
        if action == "escalate":
            return "level" in detail and "deadline" in detail
        if action == "transfer":
            return "department" in detail and "deadline" in detail
        return action in ("consult_agreed", "consult_escalated") and "consultation_id" in detail

    def facts(
        self,
        action: str,
        detail: Mapping[str, Any],
        actor: str = "",
        site_id: str | None = None,
    ) -> list[str]:
        """The entry's facts, one short phrase each, from ``detail``."""
        t = self._t
        facts: list[str] = []
        why = str(detail.get("why") or "")
        if why:
            facts.extend(self._why(why, detail))
        if action == "escalate" and "level" in detail:
            facts.append(
                t(
                    "timeline.escalated",
                    deadline=t.name("deadline_kind", detail.get("deadline")),
                    due=self._local(detail.get("due_at"), site_id),
                    to=t.name("escalation_target", detail.get("to")),
                )
            )
        if action == "transfer" and detail.get("deadline") and actor == "sla-sweep":
            facts.append(t("timeline.community_timed_out"))
        routed = why in ("routing_rule", "default_route")  # _route told the department
        if detail.get("department") and action in ("dispatch", "transfer") and not routed:
            if detail.get("from_department"):
                facts.append(
                    t(
                        "timeline.department_moved",
                        source=t.name("department", detail.get("from_department")),
                        target=t.name("department", detail.get("department")),
                    )
                )
            else:
                facts.append(t.name("department", detail.get("department")))
        facts.extend(self._deadline_moves(detail, site_id))
        if "assignee" in detail:
            assignee = detail.get("assignee")
            facts.append(
                t("timeline.assigned", assignee=assignee) if assignee else t("timeline.unassigned")
            )
        if detail.get("assignee_cleared"):
            facts.append(t("timeline.assignee_cleared", assignee=detail.get("assignee_cleared")))
        if detail.get("duplicate_of") is not None:
            facts.append(t("timeline.duplicate_of", case=detail.get("duplicate_of")))
        if detail.get("from_kind") and detail.get("kind") and action == "reclassify":
            facts.append(
                t(
                    "timeline.kind_changed",
                    source=t.name("kind", detail.get("from_kind")),
                    target=t.name("kind", detail.get("kind")),
                )
            )
        if detail.get("close_reason"):
            facts.append(t.name("close_reason", detail.get("close_reason")))
        if action.startswith("consult_"):
            facts.extend(self._consultation(action, detail))
        facts.extend(self._followup(action, detail))
        if action == "attach" and detail.get("label"):
            label = t.name("evidence_label", detail.get("label"))
            name = detail.get("filename")
            facts.append(f"{label} · {name}" if name else label)
        return facts

    def _consultation(self, action: str, detail: Mapping[str, Any]) -> list[str]:
        """小事协商's steps (dispatch/residents/consultation.py writes them)."""
        t = self._t
        proposal = detail.get("proposal_id") or detail.get("post_id")
        if action == "consult_comment":
            return [t("timeline.consult_comment")]
        if action == "consult_propose":
            return [t("timeline.consult_proposal", proposal=proposal)]
        if action == "consult_vote" and detail.get("from_choice"):
            return [
                t(
                    "timeline.consult_vote_changed",
                    proposal=proposal,
                    source=t.name("choice", detail.get("from_choice")),
                    target=t.name("choice", detail.get("choice")),
                )
            ]
        if action == "consult_vote":
            choice = t.name("choice", detail.get("choice"))
            return [t("timeline.consult_vote", proposal=proposal, choice=choice)]
        if action == "consult_agreed":
            counts = {k: detail.get(k, 0) for k in ("for", "against", "quorum")}
            return [
                t(
                    "timeline.consult_agreed",
                    proposal=proposal,
                    for_=counts["for"],
                    against=counts["against"],
                    quorum=counts["quorum"],
                )
            ]
        if action == "consult_escalated":
            department = t.name("department", detail.get("department"))
            return [t("timeline.consult_escalated", department=department)]
        return []

    def _followup(self, action: str, detail: Mapping[str, Any]) -> list[str]:
        """回访 (dispatch/residents/followup.py): public replies, ratings, reopen, mediation."""
        t = self._t
        facts: list[str] = []
        if action == "reply" and detail.get("public") is True:
            facts.append(t("timeline.public_reply"))
        elif action == "rate" and detail.get("rating"):
            facts.append(t("timeline.rated", rating=t.name("rating", detail.get("rating"))))
            if detail.get("unsatisfied_again"):
                facts.append(t("timeline.unsatisfied_again"))
            elif detail.get("unsatisfied_household"):
                facts.append(t("timeline.unsatisfied_household"))
        elif action == "reopen" and detail.get("unsatisfied_rating") is True:
            facts.append(t("timeline.reopened_unsatisfied"))
        elif action == "mediate":
            facts.append(t("timeline.mediation_requested"))
        return facts

    def _why(self, why: str, detail: Mapping[str, Any]) -> list[str]:
        t = self._t
        if why == "opened":
            return [t("timeline.opened", camera=detail.get("camera_id", ""))]
        if why == "merged_violation":
            return [
                t(
                    "timeline.merged_violation",
                    camera=detail.get("camera_id", ""),
                    link=t.name("link", detail.get("link")),
                )
            ]
        if why in ("routing_rule", "default_route"):
            return self._route(why, detail)
        if why == "verified_clear":
            return [t("timeline.verified_clear", frames=detail.get("frames_checked", 0))]
        if why == "still_there":
            seen = [t.name("object", name) for name in detail.get("objects") or []]
            listed = t("timeline.list_separator").join(seen) if seen else t("object.any")
            facts = [t("timeline.still_there", objects=listed)]
            share = detail.get("blocked_share")
            if isinstance(share, int | float):
                facts.append(t("timeline.blocked_share", percent=round(share * 100)))
            return facts
        if why == "verification_unavailable":
            return [t("timeline.verification_unavailable")]
        if why == "verification_timeout":
            minutes = max(1, round(float(detail.get("waited_seconds") or 0) / 60))
            return [t("timeline.verification_timeout", minutes=minutes)]
        if why == "retention_period":  # storage/evidence_retention.py
            return [
                t(
                    "timeline.evidence_removed",
                    days=detail.get("retention_days", "?"),
                    images=detail.get("images", 0),
                    photos=detail.get("photos", 0),
                )
            ]
        return [t.name("why", why)]

    def _route(self, why: str, detail: Mapping[str, Any]) -> list[str]:
        t = self._t
        if why == "routing_rule":
            match: Mapping[str, Any] = detail.get("match") or {}
            named = [self._matcher(key, match[key]) for key in MATCH_KEYS if match.get(key)]
            head = t("timeline.routing_rule", number=detail.get("rule", "?"))
            head += (
                t("timeline.matching", what=t("timeline.match_separator").join(named))
                if named
                else ""
            )
        else:
            head = t("timeline.default_route", kind=t.name("kind", detail.get("kind")))
        facts = [head]
        if detail.get("department"):
            facts.append(t.name("department", detail.get("department")))
        if detail.get("tier"):
            facts.append(t.name("tier", detail.get("tier")))
        if detail.get("priority"):
            facts.append(t.name("priority", detail.get("priority")))
        if detail.get("sla_minutes") is not None:
            key = "timeline.sla_working" if detail.get("clock") == "working" else "timeline.sla"
            facts.append(t(key, minutes=detail.get("sla_minutes")))
        return facts

    def _matcher(self, key: str, value: object) -> str:
        t = self._t
        shown = {
            "kind": lambda: t.name("kind", value),
            "zone_kind": lambda: t.name("zone_kind", value),
        }.get(key, lambda: str(value))()
        return t("timeline.matcher", name=t(f"timeline.match_{key}"), value=shown)

    def _deadline_moves(self, detail: Mapping[str, Any], site_id: str | None) -> list[str]:
        moves = []
        for key in ("deadline", "ack_deadline"):
            message = f"timeline.{key}_moved"
            source, target = detail.get(f"{key}_from"), detail.get(f"{key}_to")
            if source and target and source != target:
                moves.append(
                    self._t(
                        message,
                        source=self._local(source, site_id),
                        target=self._local(target, site_id),
                    )
                )
            elif target and not source:
                moves.append(self._t(f"{message}_set", target=self._local(target, site_id)))
        return moves
