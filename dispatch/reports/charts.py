"""The report's charts, drawn on the server with matplotlib (Agg) as PNG images.

Chinese labels need a CJK font: Debian's fonts-wqy-microhei (deploy/system-deps.sh installs it).
Without one every label would be empty boxes, so the report refuses with a clear message instead.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a server; must precede pyplot-free Figure use anywhere

from matplotlib import font_manager
from matplotlib.figure import Figure
from PIL import Image

from dispatch.reports.figures import CameraUptime, DepartmentFigures, SitePlan, Trend
from dispatch.web.i18n import Translator

# Font files that hold Simplified Chinese, best first (file names as Debian installs them).
CJK_FONT_FILES = ("wqy-microhei.ttc", "wqy-zenhei.ttc", "NotoSansCJK-Regular.ttc")
DPI = 100
# matplotlib's font settings are process-wide: draw one chart at a time.
_DRAWING = threading.Lock()


class ReportFontMissingError(RuntimeError):
    """No CJK font is installed, so Chinese text would render as boxes."""


@cache
def cjk_font_path() -> Path:
    """The CJK font file of the charts and the PDF; ReportFontMissingError names the fix."""
    return find_cjk_font(font_manager.findSystemFonts())


def find_cjk_font(installed: Iterable[str]) -> Path:
    """The best CJK font among the ``installed`` font files."""
    by_name = {Path(found).name: Path(found) for found in installed}
    for wanted in CJK_FONT_FILES:
        if wanted in by_name:
            return by_name[wanted]
    raise ReportFontMissingError(
        "no Chinese font found (looked for " + ", ".join(CJK_FONT_FILES) + "): install "
        "fonts-wqy-microhei (deploy/system-deps.sh) so the report's Chinese text renders"
    )


@cache
def _font_family() -> str:
    path = cjk_font_path()
    font_manager.fontManager.addfont(str(path))
    return font_manager.FontProperties(fname=str(path)).get_name()


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return figure


def _png(figure: Figure) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def _drawn(draw: Callable[[], Figure]) -> bytes:
    with (
        _DRAWING,
        matplotlib.rc_context(
            {"font.family": [_font_family(), "DejaVu Sans"], "axes.unicode_minus": False}
        ),
    ):
        return _png(draw())


def kinds_chart(kinds: tuple[Trend, ...], t: Translator) -> bytes:
    """Cases by kind, this period beside the previous one."""

    def draw() -> Figure:
        figure = _figure(7.5, 3.2)
        axes = figure.add_subplot()
        names = [t.name("kind", k.key) for k in kinds] or ["—"]
        positions = list(range(len(names)))
        current = [k.current for k in kinds] or [0]
        previous = [k.previous for k in kinds] or [0]
        axes.barh([p + 0.2 for p in positions], current, 0.4, label=t("report.this_period"))
        axes.barh([p - 0.2 for p in positions], previous, 0.4, label=t("report.previous_period"))
        axes.set_yticks(positions, names)
        axes.invert_yaxis()
        axes.set_xlabel(t("report.cases"))
        axes.set_title(t("report.chart_kinds"))
        axes.legend(loc="lower right")
        return figure

    return _drawn(draw)


def hour_weekday_chart(grid: tuple[tuple[int, ...], ...], t: Translator) -> bytes:
    """Cases by local hour of day (columns) and weekday (rows)."""

    def draw() -> Figure:
        figure = _figure(7.5, 3.0)
        axes = figure.add_subplot()
        image = axes.imshow(grid, aspect="auto", cmap="YlOrRd", interpolation="nearest")
        axes.set_yticks(range(7), [t(f"report.weekday_{day}") for day in range(7)])
        axes.set_xticks(range(0, 24, 2), [f"{hour:02d}" for hour in range(0, 24, 2)])
        axes.set_xlabel(t("report.hour"))
        axes.set_title(t("report.chart_hours"))
        figure.colorbar(image, ax=axes, label=t("report.cases"))
        return figure

    return _drawn(draw)


def departments_chart(departments: tuple[DepartmentFigures, ...], t: Translator) -> bytes:
    """Per department: the three rates (response, resolution, satisfaction) and the share
    resolved in time."""

    def draw() -> Figure:
        figure = _figure(7.5, 3.2)
        axes = figure.add_subplot()
        names = [t.name("department", d.department) for d in departments] or ["—"]
        series = [
            (t("report.response_rate"), [d.response_rate for d in departments]),
            (t("report.resolution_rate"), [d.resolution_rate for d in departments]),
            (t("report.satisfaction_rate"), [d.satisfaction_rate for d in departments]),
            (t("report.in_time_share"), [d.in_time_share for d in departments]),
        ]
        width = 0.2
        for offset, (label, values) in enumerate(series):
            axes.bar(
                [i + (offset - 1.5) * width for i in range(len(departments))],
                [100 * (v or 0.0) for v in values],
                width,
                label=label,
            )
        axes.set_xticks(range(len(names)), names)
        axes.set_ylim(0, 105)
        axes.set_ylabel("%")
        axes.set_title(t("report.chart_departments"))
        axes.legend(loc="lower right", fontsize="small")
        return figure

    return _drawn(draw)


def plan_chart(plan: SitePlan, t: Translator) -> bytes:
    """Cases per place drawn over the site plan: bigger, redder dots for more cases."""

    def draw() -> Figure:
        figure = _figure(6.0, 4.5)
        axes = figure.add_subplot()
        if plan.image is not None:
            with Image.open(plan.image) as picture:
                axes.imshow(picture.convert("RGB"), extent=(0, 1, 1, 0), alpha=0.6)
        else:
            axes.set_facecolor("#f4f4f4")
            axes.grid(True, color="#dddddd")
        axes.set_xlim(0, 1)
        axes.set_ylim(1, 0)  # plan fractions count down from the top, as on the image
        axes.set_xticks([])
        axes.set_yticks([])
        if plan.points:
            most = max(p.cases for p in plan.points)
            dots = axes.scatter(
                [p.x for p in plan.points],
                [p.y for p in plan.points],
                s=[80 + 1400 * p.cases / most for p in plan.points],
                c=[p.cases for p in plan.points],
                cmap="Reds",
                vmin=0,
                vmax=most,
                alpha=0.75,
                edgecolors="black",
            )
            for point in plan.points:
                axes.annotate(
                    f"{point.label} ({point.cases})",
                    (point.x, point.y),
                    textcoords="offset points",
                    xytext=(0, 12),
                    ha="center",
                    fontsize=8,
                )
            figure.colorbar(dots, ax=axes, label=t("report.cases"))
        title = t("report.chart_plan", site=plan.site_name)
        if plan.unplaced:
            title += " · " + t("report.unplaced", count=plan.unplaced)
        axes.set_title(title)
        return figure

    return _drawn(draw)


def uptime_chart(uptime: tuple[CameraUptime, ...], t: Translator) -> bytes:
    """Each camera's healthy share of the time its health was known."""

    def draw() -> Figure:
        figure = _figure(7.5, max(1.6, 0.35 * len(uptime) + 1.0))
        axes = figure.add_subplot()
        names = [u.camera_name for u in uptime] or ["—"]
        values = [100 * (u.healthy_share or 0.0) for u in uptime] or [0.0]
        colours = [
            "#bbbbbb" if u.healthy_share is None else "#2e7d32" if v >= 95 else "#ef6c00"
            for u, v in zip(uptime, values, strict=False)
        ] or ["#bbbbbb"]
        axes.barh(range(len(names)), values, color=colours)
        axes.set_yticks(range(len(names)), names)
        axes.invert_yaxis()
        axes.set_xlim(0, 100)
        axes.set_xlabel("%")
        axes.set_title(t("report.chart_uptime"))
        return figure

    return _drawn(draw)
