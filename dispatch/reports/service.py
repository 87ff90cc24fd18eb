"""Generating, storing and scheduling the reports.

``ReportService.generate`` counts, draws and stores one report (again for the same period,
place and language replaces it). ``run_schedule`` is the scheduler's job: for every site and
street it makes the last finished week's and month's reports once each is due (Monday 06:00
and the 1st at 06:00, site-local) and hands each new one to ``on_scheduled`` (the notification
outbox). It runs often and is idempotent, so a server that was down at 06:00 catches up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.exemptions import DEFAULT_PLATE_CONFIDENCE_FLOOR
from contracts.sites import SiteRegistry
from dispatch.notifications.reports import ReportNotice
from dispatch.reports.figures import ReportFigures, count_figures
from dispatch.reports.period import (
    Period,
    Place,
    ReportError,
    Scope,
    every_place,
    finished_window,
    last_finished,
    resolve_place,
)
from dispatch.web.i18n import DEFAULT_LANGUAGE, LANGUAGES, translator
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from storage.tables import AnalysisReport, SitePlanImage, utcnow

log = logging.getLogger(__name__)

SCHEDULE = "schedule"  # generated_by of the scheduled reports
DUE_AT = time(6, 0)  # site-local: the reports are ready before the morning meeting
CHECK_SECONDS = 600.0  # how often the scheduler looks for a due report


@dataclass(frozen=True)
class ReportRequest:
    """What to report on; ``day`` is any local day inside the period."""

    period: Period
    scope: Scope
    scope_id: str
    day: date
    language: str = DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Generated:
    report_id: int
    language: str
    generated_at: datetime
    figures: ReportFigures
    headline: dict[str, Any]
    html: str
    pdf: bytes


class ReportService:
    def __init__(
        self,
        session_factory: SessionFactory,
        registry: SiteRegistry,
        clock: Callable[[], datetime] = utcnow,
        evidence_store: EvidenceStore | None = None,
        plate_confidence_floor: float = DEFAULT_PLATE_CONFIDENCE_FLOOR,
    ) -> None:
        self._sessions = session_factory
        self._registry = registry
        self._clock = clock
        self._evidence = evidence_store  # where uploaded plan images live
        self._plate_floor = plate_confidence_floor  # repeat plates: decided readings only

    @property
    def session_factory(self) -> SessionFactory:
        return self._sessions

    def place(self, scope: Scope | str, scope_id: str) -> Place:
        return resolve_place(self._registry, scope, scope_id)

    def generate(self, request: ReportRequest, generated_by: str) -> Generated:
        """Count, draw and store one report; raises ReportError for a request it cannot serve."""
        if request.language not in LANGUAGES:
            raise ReportError(
                "bad_language",
                f"unknown language {request.language[:16]!r}: use zh-CN or en",
                value=request.language[:16],
            )
        place = self.place(request.scope, request.scope_id)
        now = self._clock()
        period_window = finished_window(request.period, request.day, place.zone, now)
        t = translator(request.language)
        with self._sessions() as session:
            figures = count_figures(
                session,
                self._registry,
                place,
                period_window,
                self._plan_files(session, place),
                self._plate_floor,
            )
        # Imported here, not at the top: matplotlib and reportlab cost a server's start about a
        # second on a slow machine, and only a report needs them.
        from dispatch.reports.documents import draw_charts, headline, render_html, render_pdf

        drawn = draw_charts(figures, t)
        html = render_html(figures, drawn, t, now)
        pdf = render_pdf(figures, drawn, t, now)
        with self._sessions.begin() as session:
            report_id = _store(session, figures, request.language, now, generated_by, html, pdf)
        log.info(
            "analysis report %d: %s %s %s from %s (%s), %d cases",
            report_id,
            request.period.value,
            place.scope.value,
            place.scope_id,
            period_window.first_day,
            request.language,
            figures.total,
        )
        return Generated(report_id, request.language, now, figures, headline(figures), html, pdf)

    def _plan_files(self, session: Session, place: Place) -> dict[str, Path]:
        if self._evidence is None:
            return {}
        rows = session.scalars(
            select(SitePlanImage).where(SitePlanImage.site_id.in_(place.site_ids))
        )
        return {row.site_id: self._evidence.path(row.sha256) for row in rows}

    def run_schedule(self, on_scheduled: Callable[[Generated], object] | None = None) -> int:
        """Make each report that is due and not stored yet; returns how many were made."""
        made = 0
        now = self._clock()
        for place in every_place(self._registry):
            local = now.astimezone(place.zone)
            for period in Period:
                due = last_finished(period, now, place.zone)
                # The period's next one started on its first day; wait for 06:00 of it.
                if local.date() == due.next_first_day and local.time() < DUE_AT:
                    continue
                if self._stored(period, place, due.start, DEFAULT_LANGUAGE):
                    continue
                request = ReportRequest(period, place.scope, place.scope_id, due.first_day)
                try:
                    generated = self.generate(request, SCHEDULE)
                except ReportError as exc:
                    log.warning("scheduled report skipped: %s", exc)
                    continue
                made += 1
                if on_scheduled is not None:
                    on_scheduled(generated)
        return made

    def _stored(self, period: Period, place: Place, start: datetime, language: str) -> bool:
        with self._sessions() as session:
            found = session.scalar(
                select(AnalysisReport.id).where(
                    AnalysisReport.period == period.value,
                    AnalysisReport.scope == place.scope.value,
                    AnalysisReport.scope_id == place.scope_id,
                    AnalysisReport.period_start == start,
                    AnalysisReport.language == language,
                )
            )
            return found is not None


def notice_of(generated: Generated) -> ReportNotice:
    """What the departments' webhooks are told about a generated report."""
    figures = generated.figures
    return ReportNotice(
        report_id=generated.report_id,
        period=figures.window.period.value,
        scope=figures.place.scope.value,
        scope_id=figures.place.scope_id,
        place_name=figures.place.name(),
        first_day=figures.window.first_day,
        last_day=figures.window.last_day,
        language=generated.language,
        generated_at=generated.generated_at,
        headline=generated.headline,
    )


def _store(
    session: Session,
    figures: ReportFigures,
    language: str,
    now: datetime,
    generated_by: str,
    html: str,
    pdf: bytes,
) -> int:
    window, place = figures.window, figures.place
    row = session.scalar(
        select(AnalysisReport).where(
            AnalysisReport.period == window.period.value,
            AnalysisReport.scope == place.scope.value,
            AnalysisReport.scope_id == place.scope_id,
            AnalysisReport.period_start == window.start,
            AnalysisReport.language == language,
        )
    )
    if row is None:
        row = AnalysisReport(
            period=window.period.value,
            scope=place.scope.value,
            scope_id=place.scope_id,
            period_start=window.start,
            language=language,
        )
        session.add(row)
    row.period_end = window.end
    row.generated_at = now
    row.generated_by = generated_by
    row.html = html
    row.pdf = pdf
    session.flush()
    return row.id
