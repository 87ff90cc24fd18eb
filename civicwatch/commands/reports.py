"""`civicwatch report`: one joint analysis report (社情研判) to a file, stored in the database too.

A mistake (unknown period, place or date, a period not ended, an output name that is neither
.pdf nor .html) is one line and exit 2 (EXIT_CONFIG); see docs/reports.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from civicwatch.config import load_config
from civicwatch.exit_codes import EXIT_CONFIG, CliError

FORMATS = (".pdf", ".html")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--period", required=True, help="week (Monday to Sunday) or month")
    parser.add_argument("--site", help="a compound's site id")
    parser.add_argument("--street", help="a street: every site whose street it is")
    parser.add_argument(
        "--start", required=True, help="YYYY-MM-DD, any day of the period (site-local)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the file to write: .pdf or .html")
    parser.add_argument("--language", default="zh-CN", help="zh-CN (default) or en")
    parser.set_defaults(handler=report)


def report(args: argparse.Namespace) -> int:
    from dispatch.reports.charts import ReportFontMissingError
    from dispatch.reports.period import ReportError, Scope, parse_day, parse_period
    from dispatch.reports.service import ReportRequest, ReportService
    from storage.database import make_engine, make_session_factory

    out: Path = args.out
    if out.suffix.lower() not in FORMATS:
        raise CliError(f"--out {out}: name a .pdf or .html file", EXIT_CONFIG)
    if (args.site is None) == (args.street is None):
        raise CliError("give exactly one of --site or --street", EXIT_CONFIG)
    if not out.parent.is_dir():
        raise CliError(f"--out {out}: folder {out.parent} does not exist", EXIT_CONFIG)
    config = load_config(args.config)
    engine = make_engine(config.server.database_url)
    try:
        service = ReportService(
            make_session_factory(engine),
            config,
            plate_confidence_floor=config.server.exemptions.plate_confidence_floor,
        )
        request = ReportRequest(
            period=parse_period(args.period),
            scope=Scope.SITE if args.site is not None else Scope.STREET,
            scope_id=args.site if args.site is not None else args.street,
            day=parse_day(args.start),
            language=args.language,
        )
        generated = service.generate(request, "cli")
    except ReportError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from exc
    except ReportFontMissingError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from exc
    finally:
        engine.dispose()
    if out.suffix.lower() == ".pdf":
        out.write_bytes(generated.pdf)
    else:
        out.write_text(generated.html, encoding="utf-8")
    figures = generated.figures
    print(
        f"report {generated.report_id}: {figures.window.period.value} "
        f"{figures.window.first_day}..{figures.window.last_day} {figures.place.scope.value} "
        f"{figures.place.scope_id}, {figures.total} cases -> {out}"
    )
    return 0
