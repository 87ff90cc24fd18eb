"""`civicwatch user add|passwd|list`: people's accounts, the password asked on the terminal."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from civicwatch.config import load_config
from civicwatch.exit_codes import (
    EXIT_ACCOUNT,
    CliError,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from dispatch.accounts import AccountService


PASSWORD_ENV = "CIVICWATCH_PASSWORD"


def _accounts(config_path: Path) -> tuple[AccountService, Engine]:
    from dispatch.accounts import AccountService
    from storage.database import make_engine, make_session_factory
    from storage.schema import upgrade_engine

    config = load_config(config_path)
    engine = make_engine(config.server.database_url)
    upgrade_engine(engine)  # the users table may be newer than the database
    return AccountService(make_session_factory(engine), config.server.api.accounts), engine


def _new_password() -> str:
    """$CIVICWATCH_PASSWORD, or asked twice on the terminal."""
    import getpass
    import os

    given = os.environ.get(PASSWORD_ENV)
    if given:
        return given
    _require_terminal()
    try:
        first = getpass.getpass("new password: ")
        again = getpass.getpass("again: ")
    except EOFError as exc:  # Ctrl-D
        raise CliError("no password entered", EXIT_ACCOUNT) from exc
    if again != first:
        raise CliError("the two passwords differ", EXIT_ACCOUNT)
    return first


def _require_terminal() -> None:
    """getpass asks on /dev/tty, or on stdin if that is a terminal; without either it would
    read stdin with a warning, or fail."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        if not sys.stdin.isatty():
            raise CliError(
                f"no terminal to ask the password on: set ${PASSWORD_ENV}", EXIT_ACCOUNT
            ) from None


def _run_account_command(args: argparse.Namespace, work: Callable[[AccountService], str]) -> int:
    from dispatch.accounts import AccountError

    accounts, engine = _accounts(args.config)
    try:
        print(work(accounts))
    except AccountError as exc:
        raise CliError(str(exc), EXIT_ACCOUNT) from exc
    finally:
        engine.dispose()
    return 0


def user_add(args: argparse.Namespace) -> int:
    from dispatch.config import Department, Role

    try:
        department = Department(args.department) if args.department else None
    except ValueError as exc:
        known = ", ".join(d.value for d in Department)
        raise CliError(f"unknown department {args.department!r}: {known}", EXIT_ACCOUNT) from exc
    if args.site:  # a council account's site must be one the config names (when it names any)
        sites = [site.id for site in load_config(args.config).sites]
        if sites and args.site not in sites:
            raise CliError(f"unknown site {args.site!r}: {', '.join(sites)}", EXIT_ACCOUNT)
    password = _new_password()  # before the database: a refusal or Ctrl-C leaves it untouched

    def add(accounts: AccountService) -> str:
        account = accounts.create_user(
            args.username,
            password,
            Role(args.role),
            department,
            args.display_name,
            args.head,
            site_id=args.site,
        )
        return f"created {account.username} ({account.role}{_where(account.department)})"

    return _run_account_command(args, add)


def user_passwd(args: argparse.Namespace) -> int:
    if not os.environ.get(PASSWORD_ENV):
        _require_terminal()  # before the database is opened and migrated

    def passwd(accounts: AccountService) -> str:
        accounts.get_user(args.username)  # an unknown name fails before the prompt
        accounts.set_password(args.username, _new_password())
        return f"password of {args.username} changed; their sessions ended"

    return _run_account_command(args, passwd)


def user_list(args: argparse.Namespace) -> int:
    def listing(accounts: AccountService) -> str:
        lines = [
            f"{a.username}\t{a.role}{_where(a.department)}\t{'head ' if a.is_head else ''}"
            f"{'active' if a.active else 'deactivated'}\t{a.display_name}"
            for a in accounts.list_users()
        ]
        return "\n".join(lines) if lines else "(no accounts)"

    return _run_account_command(args, listing)


def _where(department: object | None) -> str:
    return f" of {department}" if department is not None else ""
