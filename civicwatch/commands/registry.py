"""`civicwatch registry import|export|list`: the residents' vehicle registry from the shell.

The same import and export as the API and the console (dispatch/registry.py: ``parse_csv``,
``RegistryService.import_rows``, ``export_csv``): all rows or none, every change on the
exemption audit chain, and the site's new rule documents signed and pushed to its gateways
when the server's signing key is configured. A refusal is one line in English and Chinese and
an exit code (README, "exit codes"); personal data never goes into an error line.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from civicwatch.config import CivicwatchConfig, load_config
from civicwatch.exit_codes import EXIT_CONFIG, EXIT_FAILURE, EXIT_REGISTRY, CliError

if TYPE_CHECKING:
    from dispatch.exemptions import Exemptions
    from dispatch.registry import RegistryService

PUSH_WAIT_SECONDS = 5.0  # how long an import waits for the broker before it says "not pushed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    imports = actions.add_parser(
        "import",
        help="import a CSV (plate,category,building,unit,owner_name,phone): all rows or none; "
        "exit 8: refused, nothing stored",
    )
    imports.add_argument("file", type=Path)
    export = actions.add_parser("export", help="write a site's registry as CSV (UTF-8, BOM)")
    export.add_argument("--out", type=Path, help="write here instead of standard output")
    listing = actions.add_parser("list", help="one entry a line, names and phones masked")
    for sub in (imports, export, listing):
        sub.add_argument("--config", type=Path, required=True)
    for sub in (imports, export):
        sub.add_argument("--site", help="the site (compound); default: the config's only site")
    listing.add_argument("--site", help="only this site (default: every site)")
    imports.set_defaults(handler=registry_import)
    export.set_defaults(handler=registry_export)
    listing.set_defaults(handler=registry_list)


def both(code: str, **values: object) -> str:
    """``error.<code>`` in English and Chinese on one line."""
    from dispatch.web.i18n import translator

    english, chinese = translator("en"), translator("zh-CN")
    return f"{english(f'error.{code}', **values)} / {chinese(f'error.{code}', **values)}"


def _site(config: CivicwatchConfig, asked: str | None) -> str:
    ids = [site.id for site in config.sites]
    if asked is None:
        if len(ids) == 1:
            return ids[0]
        raise CliError(
            f"the config has {len(ids)} sites: name one with --site ({', '.join(ids[:10])}) / "
            f"配置中有 {len(ids)} 个小区：请用 --site 指定",
            EXIT_CONFIG,
        )
    if asked not in ids:
        raise CliError(
            f"no site {asked[:64]!r} in the config / 配置中没有小区 {asked[:64]!r}", EXIT_CONFIG
        )
    return asked


def _actor() -> str:
    """The audit chain names the operator's login: ``cli:NAME``."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container): the uid itself
        name = str(os.getuid())
    return f"cli:{name}"[:64]


@contextmanager
def _registry(
    config: CivicwatchConfig, publish: bool
) -> Iterator[tuple[RegistryService, Exemptions | None]]:
    """The registry service on the configured database; with ``publish``, the site's rule
    documents are signed and pushed as the server does (None: no signing key configured)."""
    from dispatch.exemptions import KEY_ENV_VAR, build_exemptions
    from dispatch.registry import RegistryService
    from storage.database import make_engine, make_session_factory
    from storage.schema import upgrade_engine

    engine = make_engine(config.server.database_url)
    exemptions = None
    try:
        upgrade_engine(engine)  # the registry's table may be newer than the database
        sessions = make_session_factory(engine)
        if publish:
            exemptions = build_exemptions(
                sessions,
                config,
                config.broker,
                config.server.exemptions,
                os.environ.get(KEY_ENV_VAR),
            )
            if exemptions is not None:
                exemptions.start()
                exemptions.publisher.wait_connected(PUSH_WAIT_SECONDS)
        service = exemptions.service if exemptions is not None else None
        yield RegistryService(sessions, config, service), exemptions
    finally:
        if exemptions is not None:
            exemptions.stop()
        engine.dispose()


def _refused(work: Callable[[], int]) -> int:
    """Run ``work``; a RegistryError becomes its one bilingual line and exit 8 (2: no site)."""
    from dispatch.registry import RegistryError

    try:
        return work()
    except RegistryError as exc:
        code = EXIT_CONFIG if exc.code == "not_found" else EXIT_REGISTRY
        raise CliError(both(exc.code, **exc.params), code) from exc


def registry_import(args: argparse.Namespace) -> int:
    from dispatch.registry import MAX_CSV_BYTES, MAX_ERRORS, parse_csv

    config = load_config(args.config)
    site_id = _site(config, args.site)
    path: Path = args.file
    if not path.is_file():
        raise CliError(f"no such file: {path} / 找不到文件：{path}", EXIT_CONFIG)
    if path.stat().st_size > MAX_CSV_BYTES:
        raise CliError(both("csv_too_large", limit=MAX_CSV_BYTES), EXIT_REGISTRY)
    data = path.read_bytes()

    def work() -> int:
        parsed = parse_csv(data, site_id)
        if parsed.errors:
            for error in parsed.errors[:MAX_ERRORS]:  # the per-row report, as the API's
                shown = error.as_json()
                print(
                    f"row {error.row} / 第{error.row}行, {error.column}: {error.code}: "
                    f"{shown['message']['en']} / {shown['message']['zh-CN']} "
                    f"[{error.value}]"
                )
            counts = {"count": len(parsed.errors), "rows": parsed.row_count}
            raise CliError(both("csv_rows_invalid", **counts), EXIT_REGISTRY)
        with _registry(config, publish=True) as (service, exemptions):
            result = service.import_rows(site_id, parsed.rows, _actor())
            print(
                f"{site_id}: {len(parsed.rows)} rows, {result.created} created, "
                f"{result.updated} updated / {len(parsed.rows)} 行，新增 {result.created}，"
                f"更新 {result.updated}"
            )
            return _pushed(exemptions, result.created + result.updated)

    return _refused(work)


def _pushed(exemptions: Exemptions | None, changed: int) -> int:
    """Say whether the gateways got the new documents; exit 1 when the broker never answered
    (stored: the server's next republish, at start or daily, sends them)."""
    if not changed:
        return 0
    if exemptions is None:
        print(
            "no rules signing key configured: stored, no document pushed / "
            "未配置规则签名密钥：已保存，未推送",
            file=sys.stderr,
        )
        return 0
    if exemptions.publisher.failures or not exemptions.publisher.published:
        raise CliError(
            "stored, but the gateways' rule documents were not pushed (broker unreachable): "
            "the server sends them at its next start or daily republish / "
            "已保存，但规则文件未推送到网关（无法连接消息代理）：服务器下次启动或每日重发时推送",
            EXIT_FAILURE,
        )
    return 0


def registry_export(args: argparse.Namespace) -> int:
    from dispatch.registry import export_csv

    config = load_config(args.config)
    site_id = _site(config, args.site)

    def work() -> int:
        with _registry(config, publish=False) as (service, _):
            data = export_csv(service.rows_for_export(site_id))
        if args.out is None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            args.out.write_bytes(data)
        return 0

    return _refused(work)


def registry_list(args: argparse.Namespace) -> int:
    from dispatch.registry import mask_name
    from dispatch.residents.privacy import mask_phone

    config = load_config(args.config)
    site_id = None if args.site is None else _site(config, args.site)
    with _registry(config, publish=False) as (service, _):
        rows = service.entries(site_id, limit=10_000_000)
    for row in rows:
        place = "-".join(part for part in (row.building, row.unit) if part) or "-"
        print(
            f"{row.site_id}\t{row.plate}\t{row.category}\t{place}\t"
            f"{mask_name(row.owner_name)}\t{mask_phone(row.phone)}"
        )
    return 0
