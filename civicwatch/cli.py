"""The ``civicwatch`` command: the composition root for every process.

Server packages are imported only by the subcommands that need them, so a gateway that installed
``civicwatch[edge]`` alone can run ``edge`` and ``replay``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from civicwatch import dynsec
from civicwatch.config import CivicwatchConfig, ConfigError, load_config
from civicwatch.exit_codes import (
    EXIT_ACCOUNT,
    EXIT_AUDIT_BROKEN,
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_MODEL,
    EXIT_PORT,
    EXIT_SOURCE,
    EXIT_UNCONFIRMED,
)
from civicwatch.logformat import LogFormat, configure_logging
from contracts.mqtt import BrokerSettings
from contracts.sites import GatewayConfig, SiteConfig, SiteRegistry
from loadgen.measure import Progress
from loadgen.run import LoadOutcome
from loadgen.run import add_arguments as add_loadgen_arguments
from loadgen.run import run as run_loadgen

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from dispatch.accounts import AccountService
    from edge.detector import Detector

log = logging.getLogger("civicwatch")


class CliError(Exception):
    """A mistake the user can fix: its one-line message and exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, LogFormat(args.log_format))
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    except CliError as exc:
        _say(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        if sys.stderr.isatty():
            print(file=sys.stderr)  # off the line ^C (or a prompt) was left on
        _say("interrupted")
        return EXIT_INTERRUPTED
    except OSError as exc:  # the file system or the network refused: the message says why
        _say(str(exc))
        return EXIT_FAILURE
    except Exception as exc:
        return _unexpected(exc)


def _say(message: str) -> None:
    print(f"civicwatch: {message}", file=sys.stderr)


def _unexpected(exc: Exception) -> int:
    """A bug, not a mistake: one line that names it, the traceback in a file to report."""
    try:
        handle, name = tempfile.mkstemp(prefix="civicwatch-crash-", suffix=".log")
        with os.fdopen(handle, "w", encoding="utf-8") as report:
            traceback.print_exception(exc, file=report)
    except OSError:
        traceback.print_exception(exc)  # no file to keep it in: show it here
        name = "the lines above"
    _say(f"unexpected error {type(exc).__name__}: {exc} (traceback in {name}; please report it)")
    return EXIT_FAILURE


def _not_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="civicwatch", description=__doc__)
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--log-format",
        default=LogFormat.TEXT.value,
        choices=[f.value for f in LogFormat],
        help="json: one JSON object per line (time, level, logger, message, request_id, extras)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("config", type=Path)
    check.set_defaults(handler=_check_config)

    schema = commands.add_parser("schema", help="print or write the wire contract as JSON Schema")
    schema.add_argument("--out", type=Path, help="write one file per message into this folder")
    schema.set_defaults(handler=_schema)

    server = commands.add_parser("server", help="run ingest, dispatch and the HTTP API")
    server.add_argument("--config", type=Path, required=True)
    server.set_defaults(handler=_server)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date and exit")
    migrate.add_argument("--config", type=Path, required=True)
    migrate.set_defaults(handler=_migrate)

    edge = commands.add_parser("edge", help="run every camera of one gateway")
    edge.add_argument("--config", type=Path, required=True)
    edge.add_argument("--gateway", help="gateway id; default: the config's only gateway")
    edge.set_defaults(handler=_edge)

    replay = commands.add_parser(
        "replay", help="run one video file through the edge pipeline as fast as the CPU allows"
    )
    replay.add_argument("--config", type=Path, required=True)
    replay.add_argument("--camera", required=True, help="the camera id whose zones apply")
    replay.add_argument("--source", type=Path, required=True, help="a video file")
    replay.add_argument(
        "--loop", type=_count, default=0, help="play the clip this many extra times"
    )
    replay.add_argument(
        "--hold-last",
        type=_not_negative,
        default=0.0,
        help="hold the last frame this many clip seconds",
    )
    replay.add_argument(
        "--confirm-timeout",
        type=float,
        default=120.0,
        help="seconds to wait at the end for ingest to confirm every event",
    )
    replay.set_defaults(handler=_replay)

    demo = commands.add_parser("demo", help="run the server and the config's first gateway")
    demo.add_argument("--config", type=Path, required=True)
    demo.set_defaults(handler=_demo)

    evaluate = commands.add_parser(
        "eval", help="score plate reading or structure change detection on a labelled folder"
    )
    what = evaluate.add_subparsers(dest="what", required=True)
    plates = what.add_parser("plates", help="a folder of plate crops, each named by its plate")
    plates.add_argument("directory", type=Path)
    plates.add_argument("--config", type=Path, help="take the plate settings from this config")
    plates.set_defaults(handler=_eval_plates)
    structures = what.add_parser("structures", help="a folder with A/ (before), B/ and label/")
    structures.add_argument("directory", type=Path)
    structures.add_argument("--config", type=Path, help="take the structure settings from here")
    structures.set_defaults(handler=_eval_structures)

    baseline = commands.add_parser(
        "baseline", help="the registered views no-build zones and health checks compare against"
    )
    baseline_commands = baseline.add_subparsers(dest="action", required=True)
    accept = baseline_commands.add_parser(
        "accept", help="make a camera's current view (or an image) its new baseline"
    )
    accept.add_argument("--config", type=Path, required=True)
    accept.add_argument("--camera", required=True)
    accept.add_argument("--preset", help="the PTZ preset the view belongs to")
    accept.add_argument("--image", type=Path, help="use this image instead of a live frame")
    accept.add_argument("--note", required=True, help="why, e.g. the case that closed")
    accept.add_argument("--by", default="dispatcher", help="who accepts it")
    accept.set_defaults(handler=_baseline_accept)

    audit = commands.add_parser("audit", help="the hash-chained audit log of case actions")
    audit_commands = audit.add_subparsers(dest="action", required=True)
    verify = audit_commands.add_parser(
        "verify", help="check every entry's hash and link; exit 1 naming each broken entry"
    )
    verify.add_argument("--config", type=Path, required=True)
    verify.set_defaults(handler=_audit_verify)

    user = commands.add_parser("user", help="people's accounts (integrations use config tokens)")
    user_commands = user.add_subparsers(dest="action", required=True)
    add = user_commands.add_parser(
        "add", help="create an account; the password is asked twice or read from $" + PASSWORD_ENV
    )
    add.add_argument("username")
    add.add_argument(
        "--role", required=True, choices=["admin", "dispatcher", "supervisor", "worker"]
    )
    add.add_argument("--department", help="supervisors and workers: their department")
    add.add_argument("--head", action="store_true", help="the department's head (escalations)")
    add.add_argument("--display-name", default="", help="the name the console shows")
    add.add_argument("--config", type=Path, required=True)
    add.set_defaults(handler=_user_add)
    passwd = user_commands.add_parser("passwd", help="set a new password; their sessions end")
    passwd.add_argument("username")
    passwd.add_argument("--config", type=Path, required=True)
    passwd.set_defaults(handler=_user_passwd)
    users = user_commands.add_parser("list", help="every account, one a line")
    users.add_argument("--config", type=Path, required=True)
    users.set_defaults(handler=_user_list)

    broker_users = commands.add_parser(
        "broker-users",
        help="Mosquitto's dynamic-security file: each user's login and topics, from the config",
    )
    dynsec.add_arguments(broker_users)
    broker_users.set_defaults(handler=_broker_users)

    load = commands.add_parser(
        "loadgen", help="simulated gateways publish violation events at a set rate"
    )
    add_loadgen_arguments(load)
    load.set_defaults(handler=_loadgen)
    return parser


def _loadgen(args: argparse.Namespace) -> int:
    exit_codes = {
        LoadOutcome.COMPLETE: 0,
        LoadOutcome.UNCONFIRMED: EXIT_UNCONFIRMED,
        LoadOutcome.REFUSED: EXIT_CONFIG,
    }
    return exit_codes[run_loadgen(args, _registry_and_broker)]


def _registry_and_broker(path: Path) -> tuple[SiteRegistry, BrokerSettings]:
    config = load_config(path)  # a CivicwatchConfig is the site registry
    return config, config.broker


def _broker_users(args: argparse.Namespace) -> int:
    try:
        users = dynsec.write_dynsec(args, os.environ)
    except (OSError, ValueError) as exc:  # a file or a password: the user's to fix
        raise CliError(str(exc), EXIT_CONFIG) from exc
    print(f"{args.out}: {len(users)} clients ({', '.join(users)})")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    cameras = [c for s in config.sites for g in s.gateways for c in g.cameras]
    zones = sum(len(c.zones) for c in cameras)
    gateways = sum(len(s.gateways) for s in config.sites)
    print(
        f"{args.config}: ok ({len(config.sites)} sites, {gateways} gateways, "
        f"{len(cameras)} cameras, {zones} zones)"
    )
    return 0


def _schema(args: argparse.Namespace) -> int:
    from contracts.schema import json_schemas

    schemas = json_schemas()
    if args.out is None:
        json.dump(schemas, sys.stdout, indent=2, ensure_ascii=False)
        print()
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for stem, schema in schemas.items():
        path = args.out / f"{stem}.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(path)
    return 0


def _server(args: argparse.Namespace) -> int:
    from civicwatch.server import ApiPortError, run_server

    try:
        run_server(load_config(args.config))
    except ApiPortError as exc:
        raise CliError(str(exc), EXIT_PORT) from exc
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from storage.schema import migrate

    config = load_config(args.config)
    migrate(config.server.database_url)
    shown = make_url(config.server.database_url).render_as_string(hide_password=True)
    print(f"database at {shown} is up to date")
    return 0


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


def _user_add(args: argparse.Namespace) -> int:
    from dispatch.config import Department, Role

    try:
        department = Department(args.department) if args.department else None
    except ValueError as exc:
        known = ", ".join(d.value for d in Department)
        raise CliError(f"unknown department {args.department!r}: {known}", EXIT_ACCOUNT) from exc
    password = _new_password()  # before the database: a refusal or Ctrl-C leaves it untouched

    def add(accounts: AccountService) -> str:
        account = accounts.create_user(
            args.username,
            password,
            Role(args.role),
            department,
            args.display_name,
            args.head,
        )
        return f"created {account.username} ({account.role}{_where(account.department)})"

    return _run_account_command(args, add)


def _user_passwd(args: argparse.Namespace) -> int:
    if not os.environ.get(PASSWORD_ENV):
        _require_terminal()  # before the database is opened and migrated

    def passwd(accounts: AccountService) -> str:
        accounts.get_user(args.username)  # an unknown name fails before the prompt
        accounts.set_password(args.username, _new_password())
        return f"password of {args.username} changed; their sessions ended"

    return _run_account_command(args, passwd)


def _user_list(args: argparse.Namespace) -> int:
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


def _audit_verify(args: argparse.Namespace) -> int:
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


def _edge(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    site, gateway = _pick_gateway(config, args.gateway)
    detector = _detector(config)
    if detector is None:
        # A fallback, not the default: fire lanes and no-build zones keep working, and every
        # camera's status says no_detector, so the command centre sees it.
        log.error("running without a detector: class-agnostic paths only")
    _run_gateway(config, site, gateway, detector, _stop_on_signals())
    return 0


def _eval_plates(args: argparse.Namespace) -> int:
    from edge.config import PlateSettings
    from edge.plate_eval import PlateFolderError, compare_with_baseline

    settings = load_config(args.config).edge.plates if args.config else PlateSettings()
    try:
        result = compare_with_baseline(_labelled_folder(args.directory), settings)
    except PlateFolderError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from exc
    print(result.model_dump_json())
    return 0


def _eval_structures(args: argparse.Namespace) -> int:
    from edge.config import StructureSettings
    from edge.structure_eval import PairFolderError, run_structure_evaluation

    settings = load_config(args.config).edge.structures if args.config else StructureSettings()
    try:
        run_structure_evaluation(_labelled_folder(args.directory), settings)
    except PairFolderError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from exc
    return 0


def _labelled_folder(directory: Path) -> Path:
    if not directory.is_dir():
        raise ConfigError(directory, [f"{directory}: not a folder"])
    return directory


def _baseline_accept(args: argparse.Namespace) -> int:
    from edge.capture import SourceError, grab_frame, read_image
    from edge.structures import BaselineStore

    config = load_config(args.config)
    found = config.camera(args.camera)
    if found is None:
        raise ConfigError(args.config, [f"{args.config}: no camera with id {args.camera!r}"])
    camera = found[2]
    try:
        image = read_image(args.image) if args.image else grab_frame(camera)
    except SourceError as exc:
        raise CliError(str(exc), EXIT_SOURCE) from exc
    store = BaselineStore(config.edge.baselines_dir)
    info = store.accept(camera.id, image, args.preset, note=args.note, by=args.by)
    print(info.model_dump_json())
    return 0


def _run_gateway(
    config: CivicwatchConfig,
    site: SiteConfig,
    gateway: GatewayConfig,
    detector: Detector | None,
    stop: threading.Event,
) -> None:
    from civicwatch.gateway import build_gateway

    build_gateway(site, gateway, config.edge, config.broker, detector).run(stop)


def _replay(args: argparse.Namespace) -> int:
    from civicwatch.replay import replay
    from edge.capture import ReplaySource, SourceError

    config = load_config(args.config)
    found = config.camera(args.camera)
    if found is None:
        raise ConfigError(args.config, [f"{args.config}: no camera with id {args.camera!r}"])
    site, gateway, camera = found
    # FFmpeg would print its own lines about a file it cannot read; ours says it in one.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        ReplaySource(args.source)  # a missing or unreadable clip fails before the model loads
        detector = _detector(config)
        if detector is None:
            return EXIT_MODEL
        summary = replay(
            site,
            gateway,
            camera,
            config.edge,
            config.broker,
            detector,
            args.source,
            loop=args.loop,
            hold_last_seconds=args.hold_last,
            confirm_timeout_seconds=args.confirm_timeout,
        )
    except SourceError as exc:
        raise CliError(str(exc), EXIT_SOURCE) from exc
    print(summary.model_dump_json(indent=2))
    return 0 if summary.all_confirmed else EXIT_UNCONFIRMED


def _demo(args: argparse.Namespace) -> int:
    from civicwatch.server import ApiPortError, BackgroundApi, build_server

    config = load_config(args.config)
    site, gateway = _pick_gateway(config, None)
    detector = _detector(config)  # before the server starts: a missing model fails fast
    if detector is None:
        return EXIT_MODEL
    stop = _stop_on_signals()
    server = build_server(config)
    api = config.server.api
    try:
        http = BackgroundApi(server.app, api.host, api.port)
    except ApiPortError as exc:
        server.engine.dispose()
        raise CliError(str(exc), EXIT_PORT) from exc
    server.start()
    http.start()
    token = next((t for t in api.tokens if t.role.value == "dispatcher"), None)
    print(f"civicwatch demo: API on http://{api.host}:{api.port}/docs", file=sys.stderr)
    if token is not None:
        print(
            "  cases: curl -H 'Authorization: Bearer "
            f"{token.token.get_secret_value()}' http://{api.host}:{api.port}/api/v1/cases",
            file=sys.stderr,
        )
    try:
        _run_gateway(config, site, gateway, detector, stop)
    finally:
        http.stop()
        server.stop()
    return 0


def _detector(config: CivicwatchConfig) -> Detector | None:
    """The configured detector, or None after saying in one line why it cannot load."""
    from edge.detector import (
        ModelUnavailableError,
        create_detector,
        prepare_ultralytics_environment,
    )

    prepare_ultralytics_environment(config.edge.data_dir)
    try:
        return create_detector(config.edge.detector)
    except ModelUnavailableError as exc:
        print(f"civicwatch: {exc}", file=sys.stderr)
        return None


def _pick_gateway(
    config: CivicwatchConfig, gateway_id: str | None
) -> tuple[SiteConfig, GatewayConfig]:
    gateways = [(s, g) for s in config.sites for g in s.gateways]
    if gateway_id is None:
        if len(gateways) != 1:
            names = ", ".join(g.id for _, g in gateways)
            raise ConfigError(Path("--gateway"), [f"name one gateway with --gateway: {names}"])
        return gateways[0]
    found = config.gateway(gateway_id)
    if found is None:
        raise ConfigError(Path("--gateway"), [f"no gateway with id {gateway_id!r}"])
    return found


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def _handle(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)
    return stop


if __name__ == "__main__":
    sys.exit(main())
