"""The console's charts: inline SVG bar and column charts (no script, no CDN), and the figures
each chart of the console shows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

from dispatch.web.i18n import Translator
from dispatch.web.stats import Stats

BAR_COLOURS = ("#2f6fb0", "#d9822b")


def bar_chart(
    bars: Sequence[tuple[str, Sequence[float]]],
    series: Sequence[str] = (),
    width: int = 420,
    bar_height: int = 18,
    unit: str = "",
    empty: str = "",
) -> Markup:
    """Horizontal bars, one row per label, one bar per series value; labels escaped."""
    if not bars:
        return Markup('<p class="muted">{}</p>').format(empty)
    label_width = 130
    value_width = 60
    plot = width - label_width - value_width
    groups = max(len(values) for _, values in bars)
    row = bar_height * groups + 8
    legend = 18 if series else 0
    height = legend + row * len(bars)
    top = max((v for _, values in bars for v in values), default=0) or 1
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" xmlns="http://www.w3.org/2000/svg">'
    ]
    for n, name in enumerate(series):
        x = label_width + n * 120
        parts.append(
            f'<rect x="{x}" y="3" width="10" height="10" fill="{BAR_COLOURS[n % 2]}"/>'
            f'<text x="{x + 14}" y="12" class="legend">{escape(name)}</text>'
        )
    for index, (label, values) in enumerate(bars):
        y = legend + index * row
        parts.append(
            f'<text x="{label_width - 6}" y="{y + row / 2 + 4:.0f}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        for n, value in enumerate(values):
            length = plot * value / top
            by = y + 4 + n * bar_height
            parts.append(
                f'<rect x="{label_width}" y="{by}" width="{length:.1f}" '
                f'height="{bar_height - 3}" fill="{BAR_COLOURS[n % 2]}"/>'
                f'<text x="{label_width + length + 4:.1f}" y="{by + bar_height - 6}">'
                f"{_number(value)}{escape(unit)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def column_chart(
    columns: Sequence[tuple[str, int]], width: int = 560, height: int = 160, empty: str = ""
) -> Markup:
    """Vertical columns (cases per day), the value above each, the label below."""
    if not any(value for _, value in columns):
        return Markup('<p class="muted">{}</p>').format(empty)
    top = max(value for _, value in columns) or 1
    slot = width / len(columns)
    plot = height - 36
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" xmlns="http://www.w3.org/2000/svg">'
    ]
    for index, (label, value) in enumerate(columns):
        bar = plot * value / top
        x = index * slot + slot * 0.15
        y = 16 + plot - bar
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{bar:.1f}" '
            f'fill="{BAR_COLOURS[0]}"/>'
            f'<text x="{x + slot * 0.35:.1f}" y="{y - 3:.1f}" text-anchor="middle">{value}</text>'
            f'<text x="{x + slot * 0.35:.1f}" y="{height - 4}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def console_charts(stats: Stats, t: Translator) -> dict[str, Any]:
    local_days = [(f"{d.day.month}/{d.day.day}", d.cases) for d in stats.days]
    empty = t("ui.no_data")
    series = (t("ui.median"), t("ui.p90"))
    return {
        "per_day": column_chart(local_days, empty=empty),
        "per_department": bar_chart(
            [(t.name("department", k), [v]) for k, v in sorted(stats.per_department.items())],
            empty=empty,
        ),
        "per_kind": bar_chart(
            [(t.name("kind", k), [v]) for k, v in sorted(stats.per_kind.items())], empty=empty
        ),
        "close_by_kind": bar_chart(
            [
                (t.name("kind", c.key), [c.median_minutes, c.p90_minutes])
                for c in stats.close_time_by_kind
            ],
            series=series,
            empty=empty,
        ),
        "close_by_department": bar_chart(
            [
                (t.name("department", c.key), [c.median_minutes, c.p90_minutes])
                for c in stats.close_time_by_department
            ],
            series=series,
            empty=empty,
        ),
    }
