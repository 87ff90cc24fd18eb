"""`civicwatch integrations add|list|revoke`: Open311 integrations' api keys (shown once)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from civicwatch.config import load_config
from civicwatch.exit_codes import EXIT_ACCOUNT, CliError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="a new integration; prints its api_key once")
    add.add_argument("name")
    add.add_argument("--config", type=Path, required=True)
    add.set_defaults(handler=integrations_add)
    listing = actions.add_parser("list", help="every integration, one a line")
    listing.add_argument("--config", type=Path, required=True)
    listing.set_defaults(handler=integrations_list)
    revoke = actions.add_parser("revoke", help="refuse the integration's key from now on")
    revoke.add_argument("name")
    revoke.add_argument("--config", type=Path, required=True)
    revoke.set_defaults(handler=integrations_revoke)


def _run(config_path: Path, work: Callable[[Session], str]) -> int:
    from dispatch.residents.integrations import IntegrationError
    from storage.database import make_engine, make_session_factory
    from storage.schema import upgrade_engine

    config = load_config(config_path)
    engine = make_engine(config.server.database_url)
    try:
        upgrade_engine(engine)
        with make_session_factory(engine)() as session:
            try:
                out = work(session)
            except IntegrationError as exc:
                raise CliError(str(exc), EXIT_ACCOUNT) from exc
            session.commit()
    finally:
        engine.dispose()
    print(out)
    return 0


def integrations_add(args: argparse.Namespace) -> int:
    from dispatch.residents.integrations import add_integration

    def add(session: Session) -> str:
        key = add_integration(session, args.name)
        return f"created integration {args.name}; its api_key (shown only now):\n{key}"

    return _run(args.config, add)


def integrations_list(args: argparse.Namespace) -> int:
    from dispatch.residents.integrations import list_integrations

    def listing(session: Session) -> str:
        rows = list_integrations(session)
        lines = [
            f"{row.name}\t{'active' if row.active else 'revoked'}\t{row.created_at.isoformat()}"
            for row in rows
        ]
        return "\n".join(lines) if lines else "(no integrations)"

    return _run(args.config, listing)


def integrations_revoke(args: argparse.Namespace) -> int:
    from dispatch.residents.integrations import revoke_integration

    def revoke(session: Session) -> str:
        revoke_integration(session, args.name)
        return f"revoked integration {args.name}"

    return _run(args.config, revoke)
