"""A case's deadlines as the pages show them: the markup of the ``deadline`` macro
(templates/_macros.html), written here in Python.

The SLA board shows 50 rows, each with two deadlines. As nested Jinja macros these cost about
a third of the board's render (~3 ms of CPU per board at 100,000 cases, bench.request_cpu); the
same markup built here is a few string joins per deadline. Every value is escaped as the
template's autoescape did.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from markupsafe import Markup, escape

from dispatch.sla import Deadline, DeadlineState, DeadlineStatus
from dispatch.web.i18n import Translator


class _Clock(Protocol):
    def local(self, value: datetime | None, site_id: str | None = None, fmt: str = "") -> str: ...


class _Sited(Protocol):
    @property
    def site_id(self) -> str: ...


def deadlines_markup(t: Translator, clock: _Clock, case: _Sited, status: DeadlineStatus) -> Markup:
    """Each deadline of ``status`` with its own state (never one's "overdue" beside the other's
    "minutes left"); the one running first is marked current."""
    current = status.current
    accept, resolve = status.accept, status.resolve
    parts = ['\n\n<span class="deadlines">\n']
    if accept is not None:
        parts.append(_one("accept", accept, case, current is accept and accept.running, t, clock))
    parts.append("\n")
    if resolve is not None:
        running = current is resolve and resolve.running
        parts.append(_one("resolve", resolve, case, running, t, clock))
    parts.append("\n")
    if accept is None and resolve is None:
        parts.append('<span class="muted">—</span>')
    parts.append("\n</span>")
    return Markup("".join(parts))


def _one(
    which: str, deadline: Deadline, case: _Sited, current: bool, t: Translator, clock: _Clock
) -> str:
    state = escape(deadline.state.value)
    flags = " current" if current else ""
    if deadline.state is DeadlineState.OVER:
        flags += " overdue"
    elif deadline.state is DeadlineState.SOON:
        flags += " due-soon"
    if deadline.state is DeadlineState.OVER:
        told = t("ui.minutes_over", minutes=-(deadline.minutes_left or 0))
    elif deadline.state in (DeadlineState.OK, DeadlineState.SOON):
        told = t("ui.minutes_left", minutes=deadline.minutes_left)
    elif deadline.state is DeadlineState.MET:
        key = "panel.deadline_met_late" if deadline.late else "panel.deadline_met"
        told = t(key, at=clock.local(deadline.met_at, case.site_id, "%H:%M"))
    else:
        told = t("panel.deadline_off")
    return (
        f'<span class="deadline deadline-{which} state-{state}{flags}" data-deadline="{which}"'
        f' data-state="{state}">\n'
        f'<b class="deadline-name">{escape(t("panel.deadline_" + which))}</b>\n'
        f"<time>{escape(clock.local(deadline.due_at, case.site_id))}</time>\n"
        f'<small class="deadline-state">{escape(told)}</small>\n'
        "</span>"
    )
