"""The console's charts: inline SVG bar and column charts (no script, no CDN), and the figures
each chart of the console shows.

Type size is a parameter, in the chart's own units: the SVG scales to its box, so a label shows
at ``font_size * shown width / width`` pixels. The size is set on the <svg> element (CSS may not
be inlined under the page's Content-Security-Policy); plans.css lets it through style.css's old
12-unit rule for ``svg.chart text``. The wall (大屏) draws them larger still.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

from dispatch.web.i18n import Translator
from dispatch.web.stats import Stats

BAR_COLOURS = ("#2f6fb0", "#d9822b")
INK = "#1f2937"
CONSOLE_FONT = 16  # about 14 px in the console's 360 px figures (labels were ~9 px)
WALL_FONT = 30  # about 25 px in the wall's 620 px figures, read from 4 m


def _svg_open(width: int, height: float, font_size: int) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height:.0f}" width="100%" '
        f'font-size="{font_size}" fill="{INK}" role="img" xmlns="http://www.w3.org/2000/svg">'
    )


def bar_chart(
    bars: Sequence[tuple[str, Sequence[float]]],
    series: Sequence[str] = (),
    width: int = 420,
    bar_height: int = 18,
    unit: str = "",
    empty: str = "",
    font_size: int = CONSOLE_FONT,
    label_width: int | None = None,
) -> Markup:
    """Horizontal bars, one row per label, one bar per series value; labels escaped. Bars are
    at least as tall as the type, so a larger font never overlaps the next row."""
    if not bars:
        return Markup('<p class="muted">{}</p>').format(empty)
    bar_height = max(bar_height, font_size + 4)
    label_width = label_width or font_size * 8
    value_width = font_size * 3
    plot = max(width - label_width - value_width, 10)
    groups = max(len(values) for _, values in bars)
    row = bar_height * groups + font_size // 2
    legend = font_size + 8 if series else 0
    height = legend + row * len(bars)
    top = max((v for _, values in bars for v in values), default=0) or 1
    parts = [_svg_open(width, height, font_size)]
    for n, name in enumerate(series):
        x = label_width + n * font_size * 7
        parts.append(
            f'<rect x="{x}" y="3" width="{font_size * 0.7:.0f}" height="{font_size * 0.7:.0f}" '
            f'fill="{BAR_COLOURS[n % 2]}"/>'
            f'<text x="{x + font_size}" y="{font_size * 0.85:.0f}" class="legend">'
            f"{escape(name)}</text>"
        )
    for index, (label, values) in enumerate(bars):
        y = legend + index * row
        parts.append(
            f'<text x="{label_width - 6}" y="{y + row / 2 + font_size * 0.35:.0f}" '
            f'text-anchor="end">{escape(label)}</text>'
        )
        for n, value in enumerate(values):
            length = plot * value / top
            by = y + 2 + n * bar_height
            parts.append(
                f'<rect x="{label_width}" y="{by}" width="{length:.1f}" '
                f'height="{bar_height - 3}" fill="{BAR_COLOURS[n % 2]}"/>'
                f'<text x="{label_width + length + 4:.1f}" '
                f'y="{by + bar_height / 2 + font_size * 0.35:.0f}">'
                f"{_number(value)}{escape(unit)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def column_chart(
    columns: Sequence[tuple[str, int]],
    width: int = 560,
    height: int = 200,
    empty: str = "",
    font_size: int = CONSOLE_FONT,
) -> Markup:
    """Vertical columns (cases per day), the value above each, the label below."""
    if not any(value for _, value in columns):
        return Markup('<p class="muted">{}</p>').format(empty)
    top = max(value for _, value in columns) or 1
    slot = width / len(columns)
    plot = height - font_size * 2.6
    parts = [_svg_open(width, height, font_size)]
    # Larger type fits fewer date labels: every step-th one, so they never overlap.
    step = max(1, math.ceil(font_size * 2.8 / slot))
    for index, (label, value) in enumerate(columns):
        bar = plot * value / top
        x = index * slot + slot * 0.15
        y = font_size * 1.2 + plot - bar
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{bar:.1f}" '
            f'fill="{BAR_COLOURS[0]}"/>'
            f'<text x="{x + slot * 0.35:.1f}" y="{y - 3:.1f}" text-anchor="middle">{value}</text>'
        )
        if index % step == 0:
            parts.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{height - 4}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def console_charts(stats: Stats, t: Translator, font_size: int = CONSOLE_FONT) -> dict[str, Any]:
    local_days = [(f"{d.day.month}/{d.day.day}", d.cases) for d in stats.days]
    empty = t("ui.no_data")
    series = (t("ui.median"), t("ui.p90"))
    return {
        "per_day": column_chart(local_days, empty=empty, font_size=font_size),
        "per_department": bar_chart(
            [(t.name("department", k), [v]) for k, v in sorted(stats.per_department.items())],
            empty=empty,
            font_size=font_size,
        ),
        "per_kind": bar_chart(
            [(t.name("kind", k), [v]) for k, v in sorted(stats.per_kind.items())],
            empty=empty,
            font_size=font_size,
        ),
        "close_by_kind": bar_chart(
            [
                (t.name("kind", c.key), [c.median_minutes, c.p90_minutes])
                for c in stats.close_time_by_kind
            ],
            series=series,
            empty=empty,
            font_size=font_size,
        ),
        "close_by_department": bar_chart(
            [
                (t.name("department", c.key), [c.median_minutes, c.p90_minutes])
                for c in stats.close_time_by_department
            ],
            series=series,
            empty=empty,
            font_size=font_size,
        ),
    }
