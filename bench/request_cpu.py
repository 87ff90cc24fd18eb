"""CPU per request, by request kind, in process: what each kind of the API mix costs the server.

A fresh PostgreSQL database is seeded as bench.api_load seeds it (``--cases`` cases, their audit
trails and evidence), the API is built as ``civicwatch api`` builds it (civicwatch.server with
the API role only) and each kind of bench.api_load's mix, plus /healthz and a live-feed connect,
is called ``--calls`` times straight through the ASGI app: no sockets, no HTTP client, so
``time.process_time`` around the calls is the server's own CPU (every thread of the process:
the event loop, the threadpool the sync routes run in, the database driver). PostgreSQL's own
CPU is in other processes: ``pg_cpu_ms`` is the CPU its backends serving this database used
over the same calls (psutil, the backends named by pg_stat_activity, the one asking excluded;
the server's background jobs' statements, if any ran meanwhile, fall in it too); wall time per
call is reported beside them.

A feed connect is timed until the stream's first bytes (``retry:``), then disconnected.

With ``--count`` each kind is also called ``--calls`` times more, counted: the Python function
calls per call (cProfile, with the sync routes run on the event loop's thread for those calls,
since cProfile sees one thread) and the SQL statements per call (SQLAlchemy's
``before_cursor_execute``). Unlike CPU time these do not move with the machine's load.

    .venv/bin/python -m bench.request_cpu [--cases 20000] [--calls 200] [--kinds ...]
        [--keep-seeded] [--count]

Progress goes to stderr on a terminal; one summary line, then the JSON summary (last line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import pstats
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
import psutil
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine

from bench.api_load import Mix, Request, seeded_database, server_config
from civicwatch.config import CivicwatchConfig
from civicwatch.server import Role, build_server
from loadgen.measure import Progress

BROKER_PORT = 1883  # the API role connects to no broker; the configuration names one
EXTRA_KINDS = ("healthz", "feed_connect")
Asgi = Any  # an ASGI application (FastAPI)


class Answer:
    """What one ASGI call answered: its status and the body bytes seen."""

    def __init__(self) -> None:
        self.status = 0
        self.body = bytearray()
        self.first_bytes = asyncio.Event()


async def call(app: Asgi, request: Request, stream: bool = False) -> Answer:
    """One request through ``app``; with ``stream`` it ends at the first body bytes."""
    parts = urlsplit(request.path)
    body = json.dumps(request.body).encode() if request.body is not None else b""
    headers = [
        (b"host", b"bench"),
        (b"authorization", f"Bearer {request.token}".encode()),
        (b"accept", b"application/json"),
    ]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": parts.path,
        "raw_path": parts.path.encode(),
        "query_string": parts.query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("bench", 80),
    }
    answer = Answer()
    sent = False
    disconnected = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")
            if answer.body:
                answer.first_bytes.set()

    if not stream:
        await app(scope, receive, send)
        return answer
    task = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(answer.first_bytes.wait(), timeout=30)
    disconnected.set()
    with contextlib.suppress(TimeoutError):  # cancelled by wait_for: the stream is gone
        await asyncio.wait_for(task, timeout=10)
    return answer


def make_request(mix: Mix, kind: str) -> Request:
    if kind == "healthz":
        return Request(kind, "GET", "/healthz")
    if kind == "feed_connect":
        return Request(kind, "GET", "/api/v1/feed")
    return mix.make(kind)


@contextlib.contextmanager
def sync_routes_inline() -> Iterator[None]:
    """Sync routes and dependencies run on the calling thread instead of the threadpool (for
    cProfile, which sees one thread); restored on leaving."""
    threaded = anyio.to_thread.run_sync

    async def inline(func: Callable[..., Any], *args: Any, **_options: Any) -> Any:
        return func(*args)

    anyio.to_thread.run_sync = inline  # type: ignore[assignment]
    try:
        yield
    finally:
        anyio.to_thread.run_sync = threaded


async def count(app: Asgi, mix: Mix, kind: str, calls: int) -> dict[str, float]:
    """``calls`` more calls of one kind: Python function calls and SQL statements per call."""
    stream = kind == "feed_connect"
    requests = [make_request(mix, kind) for _ in range(calls)]
    statements = 0

    def one_statement(*_args: Any, **_kwargs: Any) -> None:
        nonlocal statements
        statements += 1

    profile = cProfile.Profile()
    event.listen(Engine, "before_cursor_execute", one_statement)
    try:
        with sync_routes_inline():
            for request in requests:
                profile.enable()
                await call(app, request, stream)
                profile.disable()
    finally:
        event.remove(Engine, "before_cursor_execute", one_statement)
    total_calls: int = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
    return {
        "python_calls": round(total_calls / calls),
        "statements": round(statements / calls, 2),
    }


def backend_seconds(url: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend on ``url``'s database, by pid (the
    backend answering this question excluded)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            pids = connection.scalars(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                )
            ).all()
    finally:
        engine.dispose()
    seconds = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        seconds[int(pid)] = float(times.user + times.system)
    return seconds


async def measure(
    app: Asgi, mix: Mix, kind: str, calls: int, counted: bool = False, url: str | None = None
) -> dict[str, Any]:
    """``calls`` calls of one kind after a few warm-up ones: CPU and wall time per call (and,
    ``counted``, the counts of as many calls more)."""
    stream = kind == "feed_connect"
    statuses: dict[int, int] = {}
    for _ in range(3):  # warm caches, pools and lazy imports
        await call(app, make_request(mix, kind), stream)
    progress = Progress(kind, calls)
    backends = backend_seconds(url) if url else {}
    cpu = 0.0
    wall = 0.0
    size = 0
    for index in range(calls):
        request = make_request(mix, kind)  # drawn outside the timed part
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        answer = await call(app, request, stream)
        cpu += time.process_time() - cpu_start
        wall += time.perf_counter() - wall_start
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        size += len(answer.body)
        progress.show(index + 1)
    progress.finish()
    pg_ms = None
    if url:  # a backend born during the calls counts whole
        after = backend_seconds(url)
        used = sum(max(value - backends.get(pid, 0.0), 0.0) for pid, value in after.items())
        pg_ms = round(used / calls * 1000, 2)
    return {
        "kind": kind,
        "calls": calls,
        "cpu_ms": round(cpu / calls * 1000, 2),
        "pg_cpu_ms": pg_ms,
        "wall_ms": round(wall / calls * 1000, 2),
        "bytes": size // calls,
        "statuses": {str(code): n for code, n in sorted(statuses.items())},
        **(await count(app, mix, kind, calls) if counted else {}),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="request-cpu-"))
    try:
        with seeded_database(workdir, args.cases, args.seed, args.keep_seeded) as (url, seeded):
            config = CivicwatchConfig.model_validate(server_config(url, workdir, BROKER_PORT, 8080))
            server = build_server(config, roles={Role.API})
            try:
                mix = Mix(seeded, random.Random(args.seed + 1))
                kinds = args.kinds or [*mix.weights, *EXTRA_KINDS]
                results = []

                async def all_kinds() -> None:
                    for kind in kinds:
                        results.append(
                            await measure(server.app, mix, kind, args.calls, args.count, url)
                        )

                asyncio.run(all_kinds())
            finally:
                server.stop()
        return {
            "bench": "request_cpu",
            "cases": args.cases,
            "calls": args.calls,
            "seed_s": round(seeded.seconds, 1),
            "kinds": results,
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=200, help="timed calls per kind")
    parser.add_argument("--kinds", nargs="+", help="only these kinds (default: all)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--keep-seeded",
        action="store_true",
        help="seed once into a kept PostgreSQL database (as bench.api_load --keep-seeded does) "
        "and measure on a fresh copy of it",
    )
    parser.add_argument(
        "--count",
        action="store_true",
        help="also count the Python function calls and SQL statements per call of each kind "
        "(on as many calls more)",
    )
    args = parser.parse_args(argv)
    summary = run(args)
    line = ", ".join(
        f"{k['kind']} {k['cpu_ms']} ms (PostgreSQL {k['pg_cpu_ms']} ms)" for k in summary["kinds"]
    )
    print(f"CPU per request ({args.cases} cases, PostgreSQL): {line}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
