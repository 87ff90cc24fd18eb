"""The routing port: how ingest asks for a route for each case it opens, and what it gets back.

Ingest calls a ``CaseRouter`` inside its storing transaction; dispatch provides one. Both sides
import these plain types from here, so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID


@dataclass(frozen=True, slots=True)
class OpenedCase:
    """What routing may look at of a case a batch opens (it has no id yet)."""

    violation_id: UUID
    kind: str
    zone_kind: str
    zone_id: str
    site_id: str
    opened_at: datetime  # when the camera saw it: time-of-day rules look at this
    received_at: datetime  # when ingest stored it: SLA clocks start here


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where an opened case goes; ingest writes it as the case's new -> dispatched step."""

    department: str
    tier: str
    priority: str
    ack_due_at: datetime
    sla_due_at: datetime  # resolve deadline
    escalate_to: str | None  # community tier: the department it goes to when its SLA runs out
    actor: str
    reason: str  # the audit-trail text of the dispatch
    # The same as facts for the transition's detail (which rule matched, the route's terms): the
    # console tells the timeline from these in the page's language.
    detail: dict[str, object] = field(default_factory=dict)


CaseRouter = Callable[[Sequence[OpenedCase]], list[RouteDecision]]
"""Called inside the storing transaction, once a batch, with every case it opens (incidents that
first became cases); returns one decision per case, in order. Raising rolls the batch back."""
