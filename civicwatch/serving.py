"""Serving the API of a built server: its port taken before anything starts, uvicorn in the
foreground until a signal (run_server) or in a thread (BackgroundApi), the consoles' live feeds
ended first on shutdown."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from civicwatch.config import CivicwatchConfig
from civicwatch.server import build_server
from dispatch.web.feed import end_streams

log = logging.getLogger("civicwatch.server")  # the name these lines always had in the log

# An open console's live feed (SSE) never ends by itself: shutting down, uvicorn waits this long
# for open requests, then cancels them (browsers reconnect and resume from Last-Event-ID).
SHUTDOWN_GRACE_SECONDS = 3


class ApiPortError(Exception):
    """The API's address cannot be listened on (the port is taken, or the host is not ours)."""


def bind_api_socket(host: str, port: int) -> socket.socket:
    """Listen on the API's address before anything else starts, so a taken port fails fast."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
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


def run_server(config: CivicwatchConfig) -> None:
    """Run ingest, the SLA sweep and the API until SIGINT or SIGTERM, then stop cleanly.

    Call from the main thread. Returns normally after a signal; raises ApiPortError, before
    anything starts, when the API's port is taken.
    """
    api = config.server.api
    listener = bind_api_socket(api.host, api.port)
    try:
        server = build_server(config)
    except BaseException:
        listener.close()
        raise
    # uvicorn re-raises the signal it caught once it has shut down; with the default handler
    # that would kill the process before ingest disconnects, so catch it here instead.
    previous = {sig: signal.signal(sig, _log_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server.start()
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

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        """Takes the port at once: raises ApiPortError when it is taken."""
        self._listener = bind_api_socket(host, port)
        self._server = ApiServer(
            app,
            uvicorn.Config(
                app, host=host, port=port, timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS
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
