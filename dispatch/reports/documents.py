"""The report as documents: a self-contained HTML page (charts inline as PNG data) and a PDF
(reportlab, the CJK font registered, the same charts as images)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from reportlab.lib import colors  # type: ignore[import-untyped]
from reportlab.lib.pagesizes import A4  # type: ignore[import-untyped]
from reportlab.lib.styles import ParagraphStyle  # type: ignore[import-untyped]
from reportlab.lib.units import mm  # type: ignore[import-untyped]
from reportlab.pdfbase import pdfmetrics  # type: ignore[import-untyped]
from reportlab.pdfbase.ttfonts import TTFont  # type: ignore[import-untyped]
from reportlab.platypus import (  # type: ignore[import-untyped]
    Flowable,
    Image,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from dispatch.reports import charts
from dispatch.reports.figures import ReportFigures
from dispatch.web.i18n import Translator

TEMPLATES = Path(__file__).resolve().parent.parent / "web" / "templates"
PDF_FONT = "CivicwatchCJK"
PLATES_SHOWN = 30  # the PDF's table; the HTML lists every plate


@dataclass(frozen=True)
class Charts:
    kinds: bytes
    hours: bytes
    departments: bytes
    plans: tuple[tuple[str, bytes], ...]  # (site name, PNG)
    uptime: bytes


def draw_charts(figures: ReportFigures, t: Translator) -> Charts:
    return Charts(
        kinds=charts.kinds_chart(figures.kinds, t),
        hours=charts.hour_weekday_chart(figures.hour_weekday, t),
        departments=charts.departments_chart(figures.departments, t),
        plans=tuple((plan.site_name, charts.plan_chart(plan, t)) for plan in figures.plans),
        uptime=charts.uptime_chart(figures.uptime, t),
    )


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def change(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1f}%"


def minutes(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def title(figures: ReportFigures, t: Translator) -> str:
    window = figures.window
    return t(
        f"report.title_{window.period.value}",
        place=figures.place.name(),
        first=window.first_day.isoformat(),
        last=window.last_day.isoformat(),
    )


def headline(figures: ReportFigures) -> dict[str, Any]:
    """The few figures a webhook carries (the full report stays on the server)."""
    departments = figures.departments
    return {
        "cases": figures.total,
        "previous_cases": figures.previous_total,
        "change_pct": figures.total_change_pct,
        "overdue": sum(d.overdue for d in departments),
        "closed": sum(d.closed for d in departments),
        "repeat_plates": len(figures.plates),
        "false_alarms_closed": sum(f.false_alarm + f.not_a_violation for f in figures.false_alarms),
        "top_hot_spot": figures.hot_spots[0].label if figures.hot_spots else None,
        "warnings_issued": figures.warnings.issued,
        "warnings_complied": figures.warnings.complied,
        "warnings_escalated": figures.warnings.escalated,
        "warnings_gateway_silent": figures.warnings.gateway_silent,
    }


def warning_rows(figures: ReportFigures, t: Translator) -> list[list[str]]:
    """The warning stage's table (page and PDF): a header and one row of counts."""
    w = figures.warnings
    return [
        [
            t("report.warnings_issued"),
            t("report.warnings_complied"),
            t("report.warnings_escalated"),
            t("report.warnings_gateway_silent"),
            t("report.warnings_complied_share"),
        ],
        [
            str(w.issued),
            str(w.complied),
            str(w.escalated),
            str(w.gateway_silent),
            pct(w.complied_share),
        ],
    ]


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), cache_size=50
    )


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(
    figures: ReportFigures, drawn: Charts, t: Translator, generated_at: datetime
) -> str:
    """The whole report as one HTML document; it needs no other file to show."""
    return (
        _environment()
        .get_template("report.html")
        .render(
            f=figures,
            t=t,
            lang=t.language,
            title=title(figures, t),
            generated=generated_at.astimezone(figures.place.zone).strftime("%Y-%m-%d %H:%M"),
            charts={
                "kinds": _data_uri(drawn.kinds),
                "hours": _data_uri(drawn.hours),
                "departments": _data_uri(drawn.departments),
                "plans": [(name, _data_uri(png)) for name, png in drawn.plans],
                "uptime": _data_uri(drawn.uptime),
            },
            pct=pct,
            change=change,
            minutes=minutes,
            warning_rows=warning_rows(figures, t),
        )
    )


@cache
def _register_font() -> str:
    # A TrueType collection: face 0 is the proportional Micro Hei.
    pdfmetrics.registerFont(TTFont(PDF_FONT, str(charts.cjk_font_path()), subfontIndex=0))
    return PDF_FONT


def render_pdf(
    figures: ReportFigures, drawn: Charts, t: Translator, generated_at: datetime
) -> bytes:
    """The report as an A4 PDF: tables in the CJK font, the charts as images."""
    font = _register_font()
    body, heading, big = _styles(font)
    width = A4[0] - 30 * mm

    def image(png: bytes, share: float = 1.0) -> Image:
        picture = Image(io.BytesIO(png))
        scale = width * share / picture.imageWidth
        picture.drawWidth = picture.imageWidth * scale
        picture.drawHeight = picture.imageHeight * scale
        return picture

    def table(rows: list[list[str]], widths: list[float] | None = None) -> Table:
        if len(rows) == 1:
            rows.append(["—"] * len(rows[0]))
        found = Table(rows, colWidths=widths, repeatRows=1)
        found.setStyle(
            TableStyle(
                [
                    ("FONT", (0, 0), (-1, -1), font, 8.5),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e3e8ef")),
                    ("GRID", (0, 0), (-1, -1), 0.3, colors.HexColor("#9aa5b1")),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        return found

    f = figures
    story: list[Flowable] = [
        Paragraph(title(f, t), big),
        Paragraph(
            t(
                "report.generated",
                at=generated_at.astimezone(f.place.zone).strftime("%Y-%m-%d %H:%M"),
            ),
            body,
        ),
        Spacer(1, 4 * mm),
        Paragraph(t("report.summary"), heading),
        table(
            [
                [t("report.cases"), t("report.previous_period"), t("report.change")],
                [str(f.total), str(f.previous_total), change(f.total_change_pct)],
            ]
        ),
        Paragraph(t("report.section_kinds"), heading),
        image(drawn.kinds),
        table(
            [
                [
                    t("report.kind"),
                    t("report.this_period"),
                    t("report.previous_period"),
                    t("report.change"),
                ]
            ]
            + [
                [t.name("kind", k.key), str(k.current), str(k.previous), change(k.change_pct)]
                for k in f.kinds
            ]
        ),
        Paragraph(t("report.section_hours"), heading),
        image(drawn.hours),
        PageBreak(),
        Paragraph(t("report.section_plan"), heading),
    ]
    story.extend(image(png, 0.75) for _, png in drawn.plans)
    story += [
        Paragraph(t("report.section_hot_spots"), heading),
        table(
            [[t("report.site"), t("report.place"), t("report.cases")]]
            + [[s.site_name, s.label, str(s.cases)] for s in f.hot_spots]
        ),
        PageBreak(),
        Paragraph(t("report.section_departments"), heading),
        image(drawn.departments),
        table(
            [
                [
                    t("report.department"),
                    t("report.cases"),
                    t("report.change"),
                    t("report.response_rate"),
                    t("report.resolution_rate"),
                    t("report.satisfaction_rate"),
                    t("report.in_time_share"),
                    t("report.median_accept"),
                    t("report.median_close"),
                    t("report.overdue"),
                ]
            ]
            + [
                [
                    t.name("department", d.department),
                    str(d.cases),
                    change(_trend_of(f, d.department)),
                    pct(d.response_rate),
                    pct(d.resolution_rate),
                    pct(d.satisfaction_rate),
                    pct(d.in_time_share),
                    minutes(d.median_accept_minutes),
                    minutes(d.median_close_minutes),
                    str(d.overdue),
                ]
                for d in f.departments
            ]
        ),
        Paragraph(t("report.rates_note"), body),
        Paragraph(t("report.section_plates"), heading),
        table(
            [[t("report.plate"), t("report.cases"), t("report.case_numbers")]]
            + [
                [p.plate, str(len(p.case_ids)), ", ".join(f"#{i}" for i in p.case_ids[:12])]
                for p in f.plates[:PLATES_SHOWN]
            ],
            [30 * mm, 20 * mm, width - 50 * mm],
        ),
        PageBreak(),
        Paragraph(t("report.section_uptime"), heading),
        image(drawn.uptime),
        table(
            [[t("report.camera"), t("report.uptime"), t("report.known")]]
            + [[u.camera_name, pct(u.healthy_share), pct(u.known_share)] for u in f.uptime]
        ),
        Paragraph(t("report.section_false_alarms"), heading),
        table(
            [[t("report.camera"), t("close_reason.false_alarm"), t("close_reason.not_a_violation")]]
            + [[a.camera_id, str(a.false_alarm), str(a.not_a_violation)] for a in f.false_alarms]
        ),
        Paragraph(t("report.section_warnings"), heading),
        table(warning_rows(f, t)),
    ]
    return _build(story, title(f, t))


def title_only_pdf(text: str, font: str | None = None) -> bytes:
    """A page holding just ``text`` where the report puts its title, in ``font`` (default: the
    report's CJK font): the reference the tests compare the report's first page against."""
    _, _, big = _styles(font or _register_font())
    return _build([Paragraph(text, big)], text)


def _styles(font: str) -> tuple[ParagraphStyle, ParagraphStyle, ParagraphStyle]:
    body = ParagraphStyle("body", fontName=font, fontSize=9.5, leading=13)
    heading = ParagraphStyle("heading", parent=body, fontSize=13, leading=18, spaceBefore=6)
    big = ParagraphStyle("title", parent=body, fontSize=17, leading=23)
    return body, heading, big


def _build(story: list[Flowable], document_title: str) -> bytes:
    out = io.BytesIO()
    document = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=14 * mm,
        bottomMargin=14 * mm,
        title=document_title,
        author="civicwatch",
    )
    document.build(story)
    return out.getvalue()


def _trend_of(figures: ReportFigures, department: str) -> float | None:
    found = next((d for d in figures.departments_trend if d.key == department), None)
    return found.change_pct if found else None
