"""`civicwatch server`, `migrate` and `audit verify`: the command centre's processes."""

from __future__ import annotations

import argparse

from civicwatch.config import load_config
from civicwatch.exit_codes import (
    EXIT_AUDIT_BROKEN,
    EXIT_PORT,
    CliError,
)
from loadgen.measure import Progress


def server(args: argparse.Namespace) -> int:
    from civicwatch.serving import ApiPortError, run_server

    try:
        run_server(load_config(args.config))
    except ApiPortError as exc:
        raise CliError(str(exc), EXIT_PORT) from exc
    return 0


def migrate(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from storage.schema import migrate

    config = load_config(args.config)
    migrate(config.server.database_url)
    shown = make_url(config.server.database_url).render_as_string(hide_password=True)
    print(f"database at {shown} is up to date")
    return 0


def audit_verify(args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from storage.audit import verify_chain
    from storage.database import make_engine, make_session_factory
    from storage.tables import CaseTransition

    config = load_config(args.config)
    engine = make_engine(config.server.database_url)
    try:
        with make_session_factory(engine)() as session:
            total = session.scalar(select(func.count()).select_from(CaseTransition)) or 0
            progress = Progress("audit verify", total)
            report = verify_chain(session, progress=progress.show)
            progress.show(report.entries, force=True)
            progress.finish()
    finally:
        engine.dispose()
    for problem in report.problems:
        print(problem)
    if report.intact:
        print(f"audit chain intact: {report.entries} entries")
        return 0
    print(f"audit chain BROKEN: {len(report.problems)} problem(s) in {report.entries} entries")
    return EXIT_AUDIT_BROKEN
