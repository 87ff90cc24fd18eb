"""The ``civicwatch`` command: the composition root for every process.

Server packages are imported only by the subcommands that need them, so a gateway that installed
``civicwatch[edge]`` alone can run ``edge`` and ``replay``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path

from civicwatch import dynsec
from civicwatch.commands import accounts, gateway, integrations, operations, reports, roles, tools
from civicwatch.commands import posters as poster_command
from civicwatch.commands import registry as registry_command
from civicwatch.config import ConfigError
from civicwatch.exit_codes import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    CliError,
)
from civicwatch.logformat import LogFormat, configure_logging
from loadgen.run import add_arguments as add_loadgen_arguments


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


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text}")
    return value


def _instance(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,20}", text):
        raise argparse.ArgumentTypeError(f"letters, digits, - and _ only (1-20): {text!r}")
    return text


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
    check.set_defaults(handler=tools.check_config)

    schema = commands.add_parser("schema", help="print or write the wire contract as JSON Schema")
    schema.add_argument("--out", type=Path, help="write one file per message into this folder")
    schema.set_defaults(handler=tools.schema)

    server = commands.add_parser("server", help="run ingest, dispatch and the HTTP API")
    server.add_argument("--config", type=Path, required=True)
    server.set_defaults(handler=operations.server)

    api = commands.add_parser(
        "api", help="serve the HTTP API and consoles only (run as many as needed)"
    )
    api.add_argument("--config", type=Path, required=True)
    api.add_argument(
        "--workers", type=_positive, default=1, help="API worker processes on the one port"
    )
    api.set_defaults(handler=roles.api)

    ingest = commands.add_parser(
        "ingest", help="consume the broker's events into cases only (run as many as needed)"
    )
    ingest.add_argument("--config", type=Path, required=True)
    ingest.add_argument(
        "--instance",
        type=_instance,
        help="a stable name for this process among several ingest processes on one host",
    )
    ingest.add_argument(
        "--health-port", type=_port, help="serve /healthz, /readyz and /metrics on this port"
    )
    ingest.set_defaults(handler=roles.ingest)

    sweep = commands.add_parser(
        "sweep",
        help="run the periodic jobs (SLA sweep, notifications ...); one leads, others wait",
    )
    sweep.add_argument("--config", type=Path, required=True)
    sweep.add_argument(
        "--health-port", type=_port, help="serve /healthz, /readyz and /metrics on this port"
    )
    sweep.set_defaults(handler=roles.sweep)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date and exit")
    migrate.add_argument("--config", type=Path, required=True)
    migrate.set_defaults(handler=operations.migrate)

    edge = commands.add_parser("edge", help="run every camera of one gateway")
    edge.add_argument("--config", type=Path, required=True)
    edge.add_argument("--gateway", help="gateway id; default: the config's only gateway")
    edge.set_defaults(handler=gateway.edge)

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
    replay.set_defaults(handler=gateway.replay)

    demo = commands.add_parser("demo", help="run the server and the config's first gateway")
    demo.add_argument("--config", type=Path, required=True)
    demo.set_defaults(handler=gateway.demo)

    evaluate = commands.add_parser(
        "eval", help="score plate reading or structure change detection on a labelled folder"
    )
    what = evaluate.add_subparsers(dest="what", required=True)
    plates = what.add_parser(
        "plates",
        help="a folder of plate crops (or whole scenes, --frames), each named by its plate; "
        "exit 2: bad folder, 3: no detector",
    )
    plates.add_argument("directory", type=Path)
    plates.add_argument("--config", type=Path, help="take the plate settings from this config")
    plates.add_argument(
        "--frames",
        action="store_true",
        help="whole scenes: the detector finds the vehicles, then each one's plate is read",
    )
    plates.add_argument(
        "--floor",
        type=_share,
        help="--frames: readings below this confidence are not decided on "
        "(default: the calibrated plate confidence floor)",
    )
    plates.set_defaults(handler=gateway.eval_plates)
    structures = what.add_parser("structures", help="a folder with A/ (before), B/ and label/")
    structures.add_argument("directory", type=Path)
    structures.add_argument("--config", type=Path, help="take the structure settings from here")
    structures.set_defaults(handler=gateway.eval_structures)

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
    accept.set_defaults(handler=gateway.baseline_accept)

    report = commands.add_parser(
        "report", help="write a joint analysis report (社情研判) as PDF or HTML; exit 2: bad input"
    )
    reports.add_arguments(report)
    poster_command.add_arguments(commands.add_parser("posters", help="A4 QR posters"))

    audit = commands.add_parser("audit", help="the hash-chained audit log of case actions")
    audit_commands = audit.add_subparsers(dest="action", required=True)
    verify = audit_commands.add_parser(
        "verify", help="check every entry's hash and link; exit 1 naming each broken entry"
    )
    verify.add_argument("--config", type=Path, required=True)
    verify.set_defaults(handler=operations.audit_verify)

    user = commands.add_parser("user", help="people's accounts (integrations use config tokens)")
    user_commands = user.add_subparsers(dest="action", required=True)
    add = user_commands.add_parser(
        "add",
        help="create an account; the password is asked twice or read from $"
        + accounts.PASSWORD_ENV,
    )
    add.add_argument("username")
    add.add_argument(
        "--role", required=True, choices=["admin", "dispatcher", "supervisor", "worker", "council"]
    )
    add.add_argument("--department", help="supervisors and workers: their department")
    add.add_argument("--site", help="council members and building leads: their site (compound)")
    add.add_argument("--head", action="store_true", help="the department's head (escalations)")
    add.add_argument("--display-name", default="", help="the name the console shows")
    add.add_argument("--config", type=Path, required=True)
    add.set_defaults(handler=accounts.user_add)
    passwd = user_commands.add_parser("passwd", help="set a new password; their sessions end")
    passwd.add_argument("username")
    passwd.add_argument("--config", type=Path, required=True)
    passwd.set_defaults(handler=accounts.user_passwd)
    users = user_commands.add_parser("list", help="every account, one a line")
    users.add_argument("--config", type=Path, required=True)
    users.set_defaults(handler=accounts.user_list)

    integrations.add_arguments(
        commands.add_parser("integrations", help="Open311 integrations' api keys; exit 6: refused")
    )
    registry_command.add_arguments(
        commands.add_parser(
            "registry", help="the residents' vehicle registry: import, export, list (exit 8)"
        )
    )

    broker_users = commands.add_parser(
        "broker-users",
        help="Mosquitto's dynamic-security file: each user's login and topics, from the config",
    )
    dynsec.add_arguments(broker_users)
    broker_users.set_defaults(handler=tools.broker_users)

    load = commands.add_parser(
        "loadgen", help="simulated gateways publish violation events at a set rate"
    )
    add_loadgen_arguments(load)
    load.set_defaults(handler=tools.loadgen)
    return parser


if __name__ == "__main__":
    sys.exit(main())
