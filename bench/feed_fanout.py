"""Time from an event stored to its case on EVERY open console, across several API processes.

Real parts: a fresh PostgreSQL database; the API as ``civicwatch api --workers 3`` (uvicorn's
supervisor, one port) or, with ``--mode ports``, three ``civicwatch api`` processes on three
ports over the same database; 50 consoles holding GET /api/v1/feed open (one asyncio loop in
this process, spread round-robin over the ports); and a writer storing one new violation at a
steady rate through ingest's real store (IngestService, its own engine: a third party to every
API process). Each API process learns of an entry by PostgreSQL NOTIFY (dispatch/web/feed.py),
not by its poll.

"Stored" is when ``IngestService.store`` returns, after its commit. For every event and every
console the time until the case's first feed entry arrives is one delivery; the summary gives
their median, p99 and max, the per-event spread (last console minus first), how many listening
connections the API processes held (pg_stat_activity: one per process with consoles) and the
load average seen.

    .venv/bin/python -m bench.feed_fanout [--seconds 60] [--rate 5] [--consoles 50] \
        [--processes 3] [--mode workers|ports]

The last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import create_engine, text

from bench.ingest_rate import scratch_database
from contracts.events import Phase
from contracts.stats import percentile
from storage.database import make_engine, make_session_factory
from storage.schema import migrate
from tests.conftest import free_port
from tests.factories import EventFactory, make_ingest, make_registry
from tests.unit.ingest.helpers import with_plate

TARGET_P99_MS = 500
DISPATCHER_TOKEN = "bench-feed-dispatcher-token-0001"
CIVICWATCH = str(Path(sys.executable).with_name("civicwatch"))


@dataclass
class Seen:
    """When each console first saw each plate."""

    stored: dict[str, float] = field(default_factory=dict)
    seen: list[dict[str, float]] = field(default_factory=list)  # one per console
    opened: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def write_config(workdir: Path, database_url: str, port: int) -> Path:
    config = {
        "sites": [site.model_dump(mode="json") for site in make_registry().sites],
        "broker": {"host": "127.0.0.1", "port": 1883},
        "server": {
            "database_url": database_url,
            "ingest": {"evidence_dir": str(workdir / "evidence")},
            "api": {
                "port": port,
                "tokens": [{"name": "desk", "token": DISPATCHER_TOKEN, "role": "dispatcher"}],
            },
        },
    }
    path = workdir / f"civicwatch-{port}.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


@contextmanager
def running_apis(
    database_url: str, workdir: Path, processes: int, mode: str
) -> Iterator[list[str]]:
    """The API processes, ready; yields the base URLs the consoles spread over."""
    ports = [free_port()] if mode == "workers" else [free_port() for _ in range(processes)]
    children = []
    logs = []
    try:
        for port in ports:
            config = write_config(workdir, database_url, port)
            command = [CIVICWATCH, "api", "--config", str(config)]
            if mode == "workers":
                command += ["--workers", str(processes)]
            log = (workdir / f"api-{port}.log").open("wb")
            logs.append(log)
            children.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        deadline = time.monotonic() + 120
        for base in bases:
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if any(c.poll() is not None for c in children) or time.monotonic() > deadline:
                    raise RuntimeError(f"the API did not become ready; see {workdir}/api-*.log")
                time.sleep(0.2)
        yield bases
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for log in logs:
            log.close()


async def console(base: str, index: int, seen: Seen, stop: asyncio.Event) -> None:
    """One console's EventSource: note when each plate's case first shows."""
    mine: dict[str, float] = {}
    with seen.lock:
        seen.seen.append(mine)
    # Opened one by one, as browsers would: a burst on one port is accepted by one worker.
    await asyncio.sleep(index * 0.05)
    headers = {"Authorization": f"Bearer {DISPATCHER_TOKEN}", "Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", "/api/v1/feed", headers=headers) as response,
    ):
        response.raise_for_status()
        lines = response.aiter_lines()
        async for line in lines:
            if line.startswith("retry:"):
                with seen.lock:
                    seen.opened += 1
            if stop.is_set():
                return
            if not line.startswith("data:"):
                continue
            now = time.perf_counter()
            plate = (json.loads(line[5:]).get("case") or {}).get("plate_text")
            if plate is not None and plate not in mine:
                mine[plate] = now


def run_consoles(bases: Sequence[str], consoles: int, seen: Seen, stop: threading.Event) -> None:
    async def main() -> None:
        stopping = asyncio.Event()
        tasks = [
            asyncio.create_task(console(bases[i % len(bases)], i, seen, stopping))
            for i in range(consoles)
        ]
        while not stop.is_set():
            await asyncio.sleep(0.1)
        stopping.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def listeners(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND query LIKE 'LISTEN %'"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def run(seconds: float, rate: float, consoles: int, processes: int, mode: str) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="feed-fanout-"))
    seen = Seen()
    loads: list[float] = []
    try:
        with scratch_database("postgresql", workdir) as url:
            migrate(url)
            engine = make_engine(url)
            rig = make_ingest(make_session_factory(engine), workdir / "writer-evidence")
            factory = EventFactory()
            with running_apis(url, workdir, processes, mode) as bases:
                stop = threading.Event()
                reader = threading.Thread(
                    target=run_consoles, args=(bases, consoles, seen, stop), daemon=True
                )
                reader.start()
                deadline = time.monotonic() + 30 + consoles * 0.05
                while seen.opened < consoles and time.monotonic() < deadline:
                    time.sleep(0.1)
                time.sleep(1.0)  # every console subscribed and every process listening
                listening = listeners(url)
                events = int(seconds * rate)
                start = time.perf_counter()
                for index in range(events):
                    delay = start + index / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    plate = f"浙F{index:05d}"
                    rig.service.store(with_plate(factory.event(Phase.OPENED, frames=1), plate))
                    seen.stored[plate] = time.perf_counter()
                    if index % max(1, int(rate)) == 0:
                        loads.append(os.getloadavg()[0])
                settle = time.monotonic() + 5
                while time.monotonic() < settle and sum(map(len, seen.seen)) < events * consoles:
                    time.sleep(0.1)
                stop.set()
                reader.join(timeout=10)
            engine.dispose()
        return summarise(seen, seconds, rate, consoles, processes, mode, listening, loads)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def summarise(
    seen: Seen,
    seconds: float,
    rate: float,
    consoles: int,
    processes: int,
    mode: str,
    listening: int,
    loads: Sequence[float],
) -> dict[str, Any]:
    deliveries: list[float] = []
    spreads: list[float] = []
    for plate, stored in seen.stored.items():
        times = [mine[plate] for mine in seen.seen if plate in mine]
        deliveries.extend((t - stored) * 1000 for t in times)
        if len(times) == len(seen.seen) and times:
            spreads.append((max(times) - min(times)) * 1000)
    expected = len(seen.stored) * consoles

    def figures(values: Sequence[float]) -> dict[str, float | None]:
        if not values:
            return {"p50_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
        return {
            "p50_ms": round(percentile(values, 0.5), 1),
            "p99_ms": round(percentile(values, 0.99), 1),
            "max_ms": round(max(values), 1),
            "mean_ms": round(statistics.fmean(values), 1),
        }

    stored_to_console = figures(deliveries)
    p99 = stored_to_console["p99_ms"]
    return {
        "mode": mode,
        "processes": processes,
        "consoles": consoles,
        "consoles_opened": seen.opened,
        "listening_connections": listening,
        "seconds": seconds,
        "rate": rate,
        "events": len(seen.stored),
        "deliveries": len(deliveries),
        "deliveries_expected": expected,
        "stored_to_console": stored_to_console,
        "spread_first_to_last_console": figures(spreads),
        "load_average_1m": {
            "min": round(min(loads), 2) if loads else None,
            "max": round(max(loads), 2) if loads else None,
        },
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": p99 is not None and p99 <= TARGET_P99_MS and len(deliveries) == expected,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=5.0, help="new violations per second")
    parser.add_argument("--consoles", type=int, default=50)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--mode", choices=["workers", "ports"], default="workers")
    args = parser.parse_args(argv)
    summary = run(args.seconds, args.rate, args.consoles, args.processes, args.mode)
    print(json.dumps(summary, ensure_ascii=False))
    return 0 if summary["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
