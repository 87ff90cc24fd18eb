"""Per-camera false-alarm rates: what /metrics and the console show, so a badly placed camera or
zone stands out.

A case counts as a false alarm while it is closed and was once closed with ``close_reason:
false_alarm`` (reopened, it no longer counts); as reclassified once its kind was changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field, computed_field
from sqlalchemy import ColumnElement, Select, distinct, func, select
from sqlalchemy.orm import Session

from dispatch.workflow import Action, CloseReason
from storage.tables import Case, CaseState, CaseTransition


class CameraFalseAlarms(BaseModel):
    model_config = ConfigDict(frozen=True)

    camera_id: str
    cases: int
    false_alarms: int = Field(description="closed as false alarms (and not reopened)")
    reclassified: int = Field(description="cases whose kind the command centre changed")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rate(self) -> float:
        """False alarms per case; 0 for a camera with no cases."""
        return self.false_alarms / self.cases if self.cases else 0.0


CONSOLE_ROWS = 15  # the console's table: the worst cameras; /metrics has every one


def false_alarm_rates(
    session: Session, department: str | None = None, since: datetime | None = None
) -> list[CameraFalseAlarms]:
    """Every camera that has cases, worst false-alarm rate first; ``department`` counts only
    that department's cases (a department role's console), ``since`` only cases registered
    from then (the console's window)."""
    scope: list[ColumnElement[bool]] = []
    if department is not None:
        scope.append(Case.department == department)
    if since is not None:
        scope.append(Case.created_at >= since)
    cases = _by_camera(
        session, select(Case.camera_id, func.count()).where(*scope).group_by(Case.camera_id)
    )
    close_reason = CaseTransition.detail["close_reason"].as_string()
    false_alarms = _by_camera(
        session,
        select(Case.camera_id, func.count(distinct(Case.id)))
        .join(CaseTransition, CaseTransition.case_id == Case.id)
        .where(*scope, Case.state == CaseState.CLOSED.value)
        .where(CaseTransition.action == Action.CLOSE.value)
        .where(close_reason == CloseReason.FALSE_ALARM.value)
        .group_by(Case.camera_id),
    )
    reclassified = _by_camera(
        session,
        select(Case.camera_id, func.count(distinct(Case.id)))
        .join(CaseTransition, CaseTransition.case_id == Case.id)
        .where(*scope, CaseTransition.action == Action.RECLASSIFY.value)
        .group_by(Case.camera_id),
    )
    rows = [
        CameraFalseAlarms(
            camera_id=camera,
            cases=count,
            false_alarms=false_alarms.get(camera, 0),
            reclassified=reclassified.get(camera, 0),
        )
        for camera, count in cases.items()
    ]
    return sorted(rows, key=lambda row: (-row.rate, row.camera_id))


def _by_camera(session: Session, query: Select[str, int]) -> dict[str, int]:
    return {camera: int(count) for camera, count in session.execute(query)}


def false_alarm_table(rows: Sequence[CameraFalseAlarms], t: Callable[[str], str]) -> Markup:
    """The console's table: the CONSOLE_ROWS worst cameras; ``t`` is the page's translator."""
    if not rows:
        return Markup('<p class="muted">{}</p>').format(t("ui.no_data"))
    columns = ("camera", "cases", "false_alarms", "reclassified", "false_alarm_rate")
    head = Markup("").join(Markup("<th>{}</th>").format(t(f"ui.{key}")) for key in columns)
    body = Markup("").join(
        Markup(
            '<tr data-camera-id="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>'
        ).format(
            row.camera_id,
            row.camera_id,
            row.cases,
            row.false_alarms,
            row.reclassified,
            f"{row.rate:.0%}",
        )
        for row in rows[:CONSOLE_ROWS]
    )
    return Markup(
        '<table class="false-alarms"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>'
    ).format(head, body)
