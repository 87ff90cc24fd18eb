"""Serving the API of a built server: its port taken before anything starts, uvicorn in the
foreground until a signal (run_server) or in a thread (BackgroundApi), the consoles' live feeds
ended first on shutdown.

Several API workers (run_api_workers): the parent binds the port and migrates the database, then
uvicorn's own supervisor (``uvicorn.supervisors.Multiprocess``) starts N *spawned* processes on
that one socket. Each imports :func:`api_worker_app`, which builds an API-only server from the
config file named in ``$CIVICWATCH_API_CONFIG``: every worker has its own engine and pool (spawn,
not fork, so no connection is shared), and uvicorn restarts a worker that dies.

Ingest and sweep processes (run_roles) serve no API; with a health port they answer /healthz,
/readyz and /metrics there.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import FrameType

import uvicorn
from fastapi import FastAPI
from uvicorn.config import LOGGING_CONFIG
from uvicorn.supervisors import Multiprocess

from civicwatch.config import CivicwatchConfig, load_config
from civicwatch.logformat import LogFormat, configure_logging
from civicwatch.server import ALL_ROLES, Role, build_server, prepare_database
from dispatch.web.feed import end_streams

log = logging.getLogger("civicwatch.server")  # the name these lines always had in the log

# An open console's live feed (SSE) never ends by itself: shutting down, uvicorn waits this long
# for open requests, then cancels them (browsers reconnect and resume from Last-Event-ID).
SHUTDOWN_GRACE_SECONDS = 3
# What an API worker process reads: the config file's path, and "LEVEL FORMAT" for its log.
CONFIG_ENV = "CIVICWATCH_API_CONFIG"
LOG_ENV = "CIVICWATCH_API_LOG"


class ApiPortError(Exception):
    """The API's address cannot be listened on (the port is taken, or the host is not ours)."""


def bind_api_socket(host: str, port: int) -> socket.socket:
    """Listen on the API's address before anything else starts, so a taken port fails fast."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Named TCP, not protocol 0: asyncio turns Nagle off (TCP_NODELAY) only on accepted sockets
    # whose proto says TCP. With Nagle on, a response's body waited for the client's delayed
    # ACK of its headers: ~40 ms on every request after the first on a kept-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: restart at once
    try:
        sock.bind((host, port))
        sock.listen()
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise ApiPortError(
            f"cannot serve the API on {host}:{port}: {reason} "
            "(another server running? set server.api.port or $CIVICWATCH_API_PORT)"
        ) from exc
    return sock


def freeze_startup_heap() -> None:
    """Move every object alive now out of the cyclic collector's reach (gc.freeze); called once
    per process by the functions below, after the server is built and started.

    What exists then (modules, the registry, SQLAlchemy's tables and caches, pydantic's
    validators) lives as long as the process. Ingest's batches of a thousand events survive long
    enough to be promoted, so the collector runs full collections every few batches, and each
    one walked that whole heap again: a sixth of ingest's writer CPU on small events (0.03-0.04
    of 0.19 ms an event, issue 15). One collection first, so what is garbage already is freed
    rather than frozen; objects made later are collected as before. A process concern, so the
    process's entry points do it, not a component that tests start many times in one process.
    """
    gc.collect()
    gc.freeze()


def run_server(config: CivicwatchConfig, roles: Iterable[Role] = ALL_ROLES) -> None:
    """Run ingest, the SLA sweep and the API (or only ``roles``, which include the API) until
    SIGINT or SIGTERM, then stop cleanly.

    Call from the main thread. Returns normally after a signal; raises ApiPortError, before
    anything starts, when the API's port is taken.
    """
    api = config.server.api
    listener = bind_api_socket(api.host, api.port)
    try:
        server = build_server(config, roles)
    except BaseException:
        listener.close()
        raise
    # uvicorn re-raises the signal it caught once it has shut down; with the default handler
    # that would kill the process before ingest disconnects, so catch it here instead.
    previous = {sig: signal.signal(sig, _log_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server.start()
    freeze_startup_heap()
    try:
        log.info("civicwatch API on http://%s:%d", api.host, api.port)
        # The app logs each request itself (dispatch/ops.py) through our log format.
        ApiServer(
            server.app,
            uvicorn.Config(
                server.app,
                host=api.host,
                port=api.port,
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
            ),
        ).run(sockets=[listener])
    finally:
        listener.close()
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("civicwatch server stopped")


def run_api_workers(
    config_path: Path, config: CivicwatchConfig, workers: int, log: tuple[str, LogFormat]
) -> None:
    """Serve the API from ``workers`` spawned processes on one socket until SIGINT/SIGTERM.

    The port is taken and the database migrated here, once, before any worker starts; each
    worker then builds its own API-only server (:func:`api_worker_app`).
    """
    api = config.server.api
    listener = bind_api_socket(api.host, api.port)
    try:
        prepare_database(config)
        os.environ[CONFIG_ENV] = str(config_path.resolve())
        os.environ[LOG_ENV] = f"{log[0]} {log[1].value}"
        uvicorn_config = uvicorn.Config(
            f"{__name__}:api_worker_app",
            factory=True,
            host=api.host,
            port=api.port,
            workers=workers,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        )
        logging.getLogger("civicwatch.server").info(
            "civicwatch API on http://%s:%d with %d worker processes", api.host, api.port, workers
        )
        Multiprocess(uvicorn_config, sockets=[listener]).run()
    finally:
        listener.close()
    logging.getLogger("civicwatch.server").info("civicwatch API stopped")


def api_worker_app() -> FastAPI:
    """One API worker's app (uvicorn's factory, in a spawned process): an API-only server
    built from the config file in ``$CIVICWATCH_API_CONFIG``, with its own engine."""
    level, _, log_format = os.environ.get(LOG_ENV, "INFO text").partition(" ")
    configure_logging(level, LogFormat(log_format or LogFormat.TEXT.value))
    config = load_config(Path(os.environ[CONFIG_ENV]))
    server = build_server(config, {Role.API})
    server.start()
    freeze_startup_heap()
    log.info("API worker pid %d serving", os.getpid())
    return server.app


def run_roles(
    config: CivicwatchConfig, roles: Iterable[Role], health_port: int | None = None
) -> None:
    """Run ingest and/or the sweep (no API) until SIGINT or SIGTERM, then stop cleanly; with
    ``health_port``, /healthz, /readyz and /metrics on the API's host at that port."""
    roles = frozenset(roles)
    if Role.API in roles:
        raise ValueError("the API runs through run_server or run_api_workers")
    health = None if health_port is None else bind_api_socket(config.server.api.host, health_port)
    if health is not None:
        health.close()  # taken and freed: a taken port fails before anything is built
    server = build_server(config, roles)
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        _log_signal(signum, _frame)
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    background: BackgroundApi | None = None
    try:
        if health_port is not None:
            background = BackgroundApi(
                server.app, config.server.api.host, health_port, our_log=True
            )
            background.start()
        server.start()
        freeze_startup_heap()
        log.info(
            "civicwatch %s running (pid %d)%s",
            "+".join(sorted(roles)),
            os.getpid(),
            "" if health_port is None else f"; health on port {health_port}",
        )
        stopping.wait()
    finally:
        if background is not None:
            background.stop()
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("civicwatch %s stopped", "+".join(sorted(roles)))


class ApiServer(uvicorn.Server):
    """uvicorn that first ends the consoles' live feeds, which would otherwise hold shutdown up
    until SHUTDOWN_GRACE_SECONDS and then be cancelled with an error logged."""

    def __init__(self, app: FastAPI, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        end_streams(self._app)
        super().handle_exit(sig, frame)


class BackgroundApi:
    """The HTTP API served from a thread, for processes whose main thread does other work (demo)."""

    def __init__(self, app: FastAPI, host: str, port: int, *, our_log: bool = False) -> None:
        """Takes the port at once: raises ApiPortError when it is taken. ``our_log``: uvicorn
        logs through the process's own log format, without a line per request."""
        self._listener = bind_api_socket(host, port)
        self._server = ApiServer(
            app,
            uvicorn.Config(
                app,
                host=host,
                port=port,
                timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
                log_config=None if our_log else LOGGING_CONFIG,
                access_log=not our_log,
            ),
        )
        self._thread = threading.Thread(
            target=self._server.run, args=([self._listener],), name="api", daemon=True
        )

    def start(self, timeout: float = 15.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP API did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.handle_exit(signal.SIGTERM, None)
        self._thread.join(timeout=15)
        self._listener.close()


def _log_signal(signum: int, _frame: FrameType | None) -> None:
    log.info("received %s: shutting down", signal.Signals(signum).name)
