"""The analysis report's render time: a seeded month of N cases (default 10,000) on SQLite, the
monthly street report generated end to end (count, charts, HTML, PDF, stored) R times, with
the phases timed on the last run. Prints a progress bar on a terminal, one summary line, and the
figures as JSON (``--json FILE`` writes them to a file too). Run from the repository root:

    .venv/bin/python -m bench.report [--cases 10000] [--repeats 3] [--language zh-CN] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bench.report_seed import STREET, draw_plan, seed_month, seed_registry
from contracts.sites import SiteRegistry
from dispatch.reports.documents import draw_charts, render_html, render_pdf
from dispatch.reports.figures import count_figures
from dispatch.reports.period import Period, Scope, resolve_place, window
from dispatch.reports.service import ReportRequest, ReportService
from dispatch.web.i18n import translator
from loadgen.measure import Progress
from storage.database import SessionFactory, make_engine, make_session_factory
from storage.schema import migrate

MONTH = date(2026, 5, 1)
LIMIT_SECONDS = 10.0  # the bound for a month of 10,000 cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--language", default="zh-CN", choices=["zh-CN", "en"])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.cases < 1 or args.repeats < 1:
        print("bench.report: --cases and --repeats must be at least 1", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-report-") as folder:
        figures = run(Path(folder), args.cases, args.repeats, args.language)
    met = "met" if figures["max_seconds"] <= LIMIT_SECONDS else "MISSED"
    print(
        f"report: {figures['cases']} cases, {figures['pdf_bytes']} PDF bytes, "
        f"median {figures['median_seconds']:.2f}s (min {figures['min_seconds']:.2f}, "
        f"max {figures['max_seconds']:.2f}) over {args.repeats}; "
        f"bound {LIMIT_SECONDS:.0f}s {met}"
    )
    text = json.dumps(figures, ensure_ascii=False)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


def run(folder: Path, cases: int, repeats: int, language: str) -> dict[str, Any]:
    url = f"sqlite:///{folder / 'report.db'}"
    migrate(url)
    engine = make_engine(url)
    try:
        sessions = make_session_factory(engine)
        registry = seed_registry(draw_plan(folder / "plan.png"))
        started = time.perf_counter()
        seed_month(sessions, registry, MONTH, cases)
        seed_seconds = time.perf_counter() - started
        service = ReportService(sessions, registry, clock=lambda: datetime(2026, 6, 2, tzinfo=UTC))
        request = ReportRequest(Period.MONTH, Scope.STREET, STREET, MONTH, language)
        progress = Progress("report", repeats)
        timings: list[float] = []
        pdf_bytes = 0
        for done in range(repeats):
            progress.show(done, force=True)
            started = time.perf_counter()
            generated = service.generate(request, "bench")
            timings.append(time.perf_counter() - started)
            pdf_bytes = len(generated.pdf)
        progress.show(repeats, force=True)
        progress.finish()
        phases = _phases(sessions, registry, language)
    finally:
        engine.dispose()
    return {
        "cases": cases,
        "repeats": repeats,
        "language": language,
        "seed_seconds": round(seed_seconds, 3),
        "median_seconds": round(statistics.median(timings), 3),
        "min_seconds": round(min(timings), 3),
        "max_seconds": round(max(timings), 3),
        "pdf_bytes": pdf_bytes,
        "phases_seconds": phases,
    }


def _phases(sessions: SessionFactory, registry: SiteRegistry, language: str) -> dict[str, float]:
    """One more run split into its phases (the stored write is the rest of the total)."""
    place = resolve_place(registry, Scope.STREET, STREET)
    t = translator(language)
    marks = [time.perf_counter()]
    with sessions() as session:
        figures = count_figures(session, registry, place, window(Period.MONTH, MONTH, place.zone))
    marks.append(time.perf_counter())
    drawn = draw_charts(figures, t)
    marks.append(time.perf_counter())
    render_html(figures, drawn, t, datetime.now(UTC))
    marks.append(time.perf_counter())
    render_pdf(figures, drawn, t, datetime.now(UTC))
    marks.append(time.perf_counter())
    names = ("count", "charts", "html", "pdf")
    return {name: round(marks[i + 1] - marks[i], 3) for i, name in enumerate(names)}


if __name__ == "__main__":
    sys.exit(main())
