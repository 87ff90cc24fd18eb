"""`civicwatch api`, `ingest` and `sweep`: the server's roles as processes of their own."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from civicwatch.config import CivicwatchConfig, load_config
from civicwatch.exit_codes import EXIT_PORT, CliError
from civicwatch.logformat import LogFormat

if TYPE_CHECKING:  # the server packages load only when a role runs
    from civicwatch.server import Role


def api(args: argparse.Namespace) -> int:
    from civicwatch.server import Role
    from civicwatch.serving import ApiPortError, run_api_workers, run_server

    config = load_config(args.config)
    try:
        if args.workers == 1:
            run_server(config, {Role.API})
        else:
            run_api_workers(
                args.config, config, args.workers, (args.log_level, LogFormat(args.log_format))
            )
    except ApiPortError as exc:
        raise CliError(str(exc), EXIT_PORT) from exc
    return 0


def ingest(args: argparse.Namespace) -> int:
    from civicwatch.server import Role

    config = load_config(args.config)
    if args.instance:
        config = with_ingest_instance(config, args.instance)
    return _run(config, Role.INGEST, args.health_port)


def sweep(args: argparse.Namespace) -> int:
    from civicwatch.server import Role

    return _run(load_config(args.config), Role.SWEEP, args.health_port)


def _run(config: CivicwatchConfig, role: Role, health_port: int | None) -> int:
    from civicwatch.serving import ApiPortError, run_roles

    try:
        run_roles(config, {role}, health_port)
    except ApiPortError as exc:
        raise CliError(str(exc), EXIT_PORT) from exc
    return 0


def with_ingest_instance(config: CivicwatchConfig, instance: str) -> CivicwatchConfig:
    """``config`` whose ingest client id ends in ``-{instance}``: several ingest processes on
    one host each keep a stable id of their own (a persistent session survives restarts), in
    the deployment's one shared-subscription group."""
    from civicwatch.mqtt_identity import resolve_ingest

    server = config.server
    resolved = resolve_ingest(server.ingest, server.database_url)
    ingest = server.ingest.model_copy(update={"client_id": f"{resolved.client_id}-{instance}"})
    return config.model_copy(update={"server": server.model_copy(update={"ingest": ingest})})
