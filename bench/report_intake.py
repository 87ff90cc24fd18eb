"""Residents' reports: submitted on /report -> in the department's queue, p50/p99, beside camera
load; and the /report page's first-load bytes as a browser fetches them.

Real parts: a private Mosquitto, ``civicwatch server`` in its own process (fresh SQLite or
PostgreSQL database), loadgen's simulated cameras (1,000 cameras, loadgen's default rate of
100 events/s, QoS 1, through the real ingest) publishing for the whole run, and residents'
reports posted as the page posts them (multipart form with its double-submit CSRF cookie)
at a steady open-loop rate: report i is due at start + i/rate whether or not earlier ones have
answered, and its latency counts from then. Each report is a blocked fire lane (department
tier: fire and rescue) at its own building, so it opens its own case, with 0-3 real photos
(../shared/data/images, re-encoded as JPEGs of about 100-300 KB). "In the queue" is when the
fire department's worker first sees the case dispatched on the console's live feed: one
``GET /api/v1/feed`` stream held open as the fire worker (department-scoped), as the worker's
open console holds it. ``--queue-view poll`` measures it the earlier way instead: the worker
asks ``GET /api/v1/cases/<id>`` for each report every 50 ms after the form's answer. That is
up to 20 requests a second per open report, more server work than the reports themselves, and
it grows when a backlog forms, so it feeds the backlog it measures; a worker's console does not
poll per case.

The first-load bytes are the /report page in Chromium (Debian's /usr/bin/chromium, Playwright)
at a phone's size, every response body the browser received (HTML, CSS, JS, images, the
favicon's answer), counted before the load starts.

``--layouts server roles`` runs the same load against each way of deploying the server, one
after the other in the same run: ``server`` is one ``civicwatch server`` process; ``roles`` is
the issue-15 split on the same PostgreSQL, ``civicwatch api --workers 2``, ``civicwatch
ingest`` and ``civicwatch sweep`` as their own processes (PostgreSQL only: SQLite has one
writer).

    .venv/bin/python -m bench.report_intake [--rate 20] [--seconds 60]
        [--backends sqlite postgresql] [--camera-rate 100] [--layouts server roles]
        [--queue-view feed|poll] [--baseline REV]

Progress goes to stderr on a terminal; the last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import shutil
import signal
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
from PIL import Image
from sqlalchemy import Engine, create_engine, select

from bench.ingest_rate import scratch_database
from contracts.kinds import ViolationKind
from contracts.mqtt import BrokerSettings
from contracts.sites import SiteRegistry
from contracts.stats import percentile
from loadgen.events import camera_simulators, evidence_images
from loadgen.measure import Progress
from loadgen.registry import simulated_registry
from loadgen.run import LoadSummary, run_direct
from storage.tables import ResidentReport
from tests.conftest import MosquittoProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT.parent / "shared" / "data" / "images"
CHROMIUM = Path("/usr/bin/chromium")
TARGET_P99_MS = 2000
TARGET_PAGE_BYTES = 150 * 1024
CAMERAS = 1000  # loadgen's defaults: 1,000 cameras, 8 per gateway, 100 events/s
CAMERAS_PER_GATEWAY = 8
CAMERA_RATE = 100.0
WORKER_TOKEN = "bench-fire-worker-token-0001"
CIVICWATCH = (sys.executable, "-m", "civicwatch.cli", "--log-level", "WARNING")
LAYOUTS = ("server", "roles")
API_WORKERS = 2
KIND = ViolationKind.FIRE_LANE_BLOCKING
POLL_SECONDS = 0.05
QUEUE_VIEWS = ("feed", "poll")
DISPATCHED = "dispatched"
QUEUE_TIMEOUT = 60.0
WARMUP_SECONDS = 3.0


# --- photos -------------------------------------------------------------------------------


def real_photos(seed: int) -> list[bytes]:
    """JPEGs of 100-300 KB re-encoded from the shared photos (crops and sizes vary)."""
    rng = random.Random(seed)
    sources = sorted(p for p in IMAGES.iterdir() if p.suffix.lower() in {".png", ".jpg"})
    if not sources:
        raise SystemExit(f"no photos in {IMAGES}")
    out: list[bytes] = []
    attempts = 0
    while len(out) < 12 and attempts < 200:
        attempts += 1
        with Image.open(sources[attempts % len(sources)]) as image:
            picture = image.convert("RGB")
        side = rng.choice([1280, 1600, 2000])
        scale = side / max(picture.size)
        picture = picture.resize(
            (max(1, int(picture.width * scale)), max(1, int(picture.height * scale)))
        )
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=rng.choice([70, 80, 88, 92]))
        if 100_000 <= len(buffer.getvalue()) <= 300_000:
            out.append(buffer.getvalue())
    if not out:
        raise SystemExit("could not make a 100-300 KB JPEG from the shared photos")
    return out


# --- the server ---------------------------------------------------------------------------


@dataclass
class Served:
    base: str
    broker: BrokerSettings
    registry: SiteRegistry
    site_id: str
    database_url: str


def _wait_ready(url: str, processes: Sequence[subprocess.Popen[bytes]], workdir: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not become ready; see {workdir}/server.log")
        time.sleep(0.2)


def _wait_workers(base: str, workers: int, workdir: Path) -> None:
    """Until ``workers`` API processes have answered: /readyz is answered by the first one up,
    while the other may still be importing. Each answers /metrics with its own pid."""
    pids: set[str] = set()
    deadline = time.monotonic() + 120
    while len(pids) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pids)} of {workers} API workers answered; see {workdir}")
        try:
            text = httpx.get(f"{base}/metrics", timeout=5).text  # a new connection each time
        except httpx.HTTPError:
            text = ""
        for line in text.splitlines():
            if line.startswith("civicwatch_process{"):
                pids.add(line.split('pid="', 1)[1].split('"', 1)[0])
        time.sleep(0.1)


@contextmanager
def running_server(
    database_url: str, workdir: Path, layout: str = "server", tree: Path | None = None
) -> Iterator[Served]:
    """The server in its own process(es), with loadgen's cameras and a fire worker: one
    ``civicwatch server`` (layout ``server``), or ``civicwatch api --workers 2``, ``ingest`` and
    ``sweep`` apart (layout ``roles``); the code of ``tree`` (another revision) if given."""
    broker = MosquittoProcess(workdir / "broker")
    broker.start()
    port = free_port()
    registry = simulated_registry(CAMERAS, CAMERAS_PER_GATEWAY)
    config = {
        "sites": registry.model_dump(mode="json", exclude_defaults=True)["sites"],
        "broker": {"host": "127.0.0.1", "port": broker.port},
        "server": {
            "database_url": database_url,
            "ingest": {"evidence_dir": str(workdir / "evidence")},
            "api": {
                "port": port,
                "tokens": [
                    {
                        "name": "firefighter",
                        "token": WORKER_TOKEN,
                        "role": "worker",
                        "department": "fire_rescue",
                    }
                ],
            },
            # One address posts every report here: the per-address limit would be the test.
            "residents": {
                "limits": {"per_address": 1_000_000, "per_phone": 1_000_000, "per_token": 1_000}
            },
        },
    }
    config_file = workdir / "civicwatch.yaml"
    config_file.write_text(yaml.safe_dump(config, allow_unicode=True))
    log = (workdir / "server.log").open("wb")
    config_args = ("--config", str(config_file))
    base = f"http://127.0.0.1:{port}"
    processes: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "PYTHONPATH": str(tree)} if tree is not None else None

    def start(*command: str) -> None:
        processes.append(
            subprocess.Popen(
                [*CIVICWATCH, *command, *config_args],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tree,
                env=env,
                start_new_session=True,  # the API's workers stop with their parent's group
            )
        )

    try:
        if layout == "server":
            start("server")
            _wait_ready(f"{base}/readyz", processes, workdir)
        else:
            subprocess.run(
                [*CIVICWATCH, "migrate", *config_args], check=True, stdout=log, cwd=tree, env=env
            )
            ingest_port, sweep_port = free_port(), free_port()
            start("ingest", "--health-port", str(ingest_port))
            start("sweep", "--health-port", str(sweep_port))
            start("api", "--workers", str(API_WORKERS))
            for url in (f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{sweep_port}", base):
                _wait_ready(f"{url}/readyz", processes, workdir)
            _wait_workers(base, API_WORKERS, workdir)
        yield Served(base, broker.settings, registry, registry.sites[0].id, database_url)
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
        broker.stop()


# --- the page's first load ----------------------------------------------------------------


def first_load_bytes(base: str) -> dict[str, Any]:
    """Every response body Chromium received loading /report at a phone's size."""
    from playwright.sync_api import Response, sync_playwright

    bodies: dict[str, int] = {}

    def received(response: Response) -> None:
        try:
            bodies[response.url.removeprefix(base)] = len(response.body())
        except Exception:  # a redirect or aborted response has no body to count
            bodies.setdefault(response.url.removeprefix(base), 0)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.on("response", received)
        page.goto(f"{base}/report", wait_until="networkidle")
        browser.close()
    total = sum(bodies.values())
    return {
        "bytes": total,
        "kb": round(total / 1024, 1),
        "target_kb": TARGET_PAGE_BYTES // 1024,
        "ratio_to_target": round(total / TARGET_PAGE_BYTES, 2),
        "responses": bodies,
    }


# --- the reports --------------------------------------------------------------------------


@dataclass
class Sample:
    due: float
    answered_ms: float  # the form's 303
    queued_ms: float | None  # first seen dispatched by the fire worker; None: never
    photos: int
    status: int
    tracking_code: str = ""


@dataclass
class Camera:
    summary: LoadSummary | None = None
    error: str = ""
    thread: threading.Thread | None = None
    loads: list[float] = field(default_factory=list)


def case_of(engine: Engine, tracking_code: str) -> int | None:
    with engine.connect() as connection:
        return connection.scalar(
            select(ResidentReport.case_id).where(ResidentReport.tracking_code == tracking_code)
        )


def cases_of(engine: Engine, tracking_codes: Sequence[str]) -> dict[str, int]:
    """Tracking code -> case id, in one query after the load (none during it)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(ResidentReport.tracking_code, ResidentReport.case_id).where(
                ResidentReport.tracking_code.in_(list(tracking_codes))
            )
        ).all()
    return {code: case_id for code, case_id in rows if case_id is not None}


@dataclass
class FeedWatch:
    """When the fire worker's live feed first showed each case dispatched (perf_counter)."""

    dispatched_at: dict[int, float] = field(default_factory=dict)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    reconnects: int = 0
    resets: int = 0


async def watch_worker_feed(served: Served, watch: FeedWatch) -> None:
    """Hold GET /api/v1/feed open as the fire worker, as the worker's console does; reconnect
    from the last seq (Last-Event-ID) when the server ends the stream, as EventSource does.
    Runs until cancelled."""
    headers = {"Authorization": f"Bearer {WORKER_TOKEN}", "Accept": "text/event-stream"}
    last_seq: str | None = None
    timeout = httpx.Timeout(10, read=None)
    async with httpx.AsyncClient(base_url=served.base, timeout=timeout) as client:
        while True:
            resume = {"Last-Event-ID": last_seq} if last_seq is not None else {}
            try:
                async with client.stream(
                    "GET", "/api/v1/feed", headers={**headers, **resume}
                ) as response:
                    response.raise_for_status()
                    async for line in response.aiter_lines():
                        watch.opened.set()  # the first line comes once the hub has subscribed
                        if line.startswith("id:"):
                            last_seq = line[3:].strip()
                        elif line.startswith("event: reset"):
                            watch.resets += 1
                        elif line.startswith("data:"):
                            seen = time.perf_counter()
                            data = json.loads(line[5:])
                            case_id = data.get("case_id")
                            if data.get("to_state") == DISPATCHED and case_id is not None:
                                watch.dispatched_at.setdefault(int(case_id), seen)
            except httpx.HTTPError:
                pass
            watch.reconnects += 1
            await asyncio.sleep(0.2)


async def drive_reports(
    served: Served,
    rate: float,
    seconds: float,
    photos: list[bytes],
    seed: int,
    queue_view: str = "feed",
) -> tuple[list[Sample], float, FeedWatch]:
    rng = random.Random(seed)
    watch = FeedWatch()
    total = int(rate * (seconds + WARMUP_SECONDS))
    samples: list[Sample] = []
    progress = Progress(f"reports {rate:.0f}/s", total)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    worker = {"Authorization": f"Bearer {WORKER_TOKEN}"}
    engine = create_engine(served.database_url)
    # The fire worker's console polls on its own connections, as a worker's browser would: on
    # the residents' shared connection pool its requests would queue behind their uploads.
    async with (
        httpx.AsyncClient(base_url=served.base, limits=limits, timeout=60) as client,
        httpx.AsyncClient(base_url=served.base, limits=limits, timeout=60) as console,
    ):
        form = await client.get("/report")
        marker = 'name="csrf" value="'
        csrf = form.text.split(marker, 1)[1].split('"', 1)[0]

        async def one(index: int, due: float, attached: list[bytes]) -> None:
            data = {
                "csrf": csrf,
                "category": KIND.value,
                "site_id": served.site_id,
                "building": f"B{index}",
                "description": f"消防通道被堵 #{index}",
            }
            files = [
                ("photos", (f"p{n}.jpg", body, "image/jpeg")) for n, body in enumerate(attached)
            ]
            try:
                response = await client.post("/report", data=data, files=files or None)
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            answered = (time.perf_counter() - due) * 1000
            if status != 303:
                samples.append(Sample(due, answered, None, len(attached), status))
                return
            code = response.headers["location"].rsplit("/", 1)[1]
            if queue_view == "feed":  # the worker's feed tells when it is queued
                samples.append(Sample(due, answered, None, len(attached), status, code))
                return
            # The case behind the code, by its unique index (once); then the worker's own view of
            # that case, by id. A text search (q=) per poll would load the server more than the
            # reports do.
            case_id = await asyncio.to_thread(case_of, engine, code)
            queued: float | None = None
            deadline = time.perf_counter() + QUEUE_TIMEOUT
            while case_id is not None and time.perf_counter() < deadline:
                try:
                    shown = await console.get(f"/api/v1/cases/{case_id}", headers=worker)
                    if shown.status_code == 200 and shown.json().get("state") == "dispatched":
                        queued = (time.perf_counter() - due) * 1000
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(POLL_SECONDS)
            samples.append(Sample(due, answered, queued, len(attached), status))

        watcher = None
        if queue_view == "feed":
            watcher = asyncio.create_task(watch_worker_feed(served, watch))
            await asyncio.wait_for(watch.opened.wait(), 30)
        start = time.perf_counter() + 0.1
        tasks = []
        for index in range(total):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            attached = [rng.choice(photos) for _ in range(rng.randint(0, 3))]
            tasks.append(asyncio.create_task(one(index, due, attached)))
            progress.show(index + 1, f"done {len(samples)}")
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
        progress.finish()
        if watcher is not None:
            await _settle_from_feed(engine, samples, watch, start + total / rate + QUEUE_TIMEOUT)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    engine.dispose()
    warm = start + WARMUP_SECONDS
    measured = [sample for sample in samples if sample.due >= warm]
    accepted = sum(1 for sample in measured if sample.status == 303)
    return measured, accepted / max(elapsed - WARMUP_SECONDS, 1e-9), watch  # accepted a second


async def _settle_from_feed(
    engine: Engine, samples: list[Sample], watch: FeedWatch, deadline: float
) -> None:
    """Wait (to ``deadline``) until the feed has shown every accepted report's case dispatched,
    then give each sample its time in the queue."""
    accepted = [sample for sample in samples if sample.tracking_code]
    case_ids = await asyncio.to_thread(cases_of, engine, [s.tracking_code for s in accepted])
    wanted = set(case_ids.values())
    while not wanted <= watch.dispatched_at.keys() and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    for sample in accepted:
        seen = watch.dispatched_at.get(case_ids.get(sample.tracking_code, -1))
        if seen is not None:
            sample.queued_ms = (seen - sample.due) * 1000


def cameras_beside(served: Served, seconds: float, rate: float, seed: int) -> Camera:
    """loadgen's direct publisher in a thread for the whole run."""
    camera = Camera()
    simulators = camera_simulators(served.registry, evidence_images(40, seed), seed, 0.3)

    def publish() -> None:
        try:
            camera.summary, _ids = run_direct(
                served.broker, served.registry, simulators, rate, seconds, 8, 30.0
            )
        except Exception as exc:  # reported in the summary, not raised past the report load
            camera.error = repr(exc)

    camera.thread = threading.Thread(target=publish, name="cameras", daemon=True)
    camera.thread.start()
    return camera


def _ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "p50": round(percentile(ordered, 0.50), 1),
        "p90": round(percentile(ordered, 0.90), 1),
        "p99": round(percentile(ordered, 0.99), 1),
        "max": round(ordered[-1], 1),
        "mean": round(statistics.fmean(ordered), 1),
    }


def run(
    backend: str,
    layout: str,
    args: argparse.Namespace,
    photos: list[bytes],
    code: tuple[str, Path | None] = ("this tree", None),
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"cw-report-intake-{backend}-{layout}-"))
    try:
        with (
            scratch_database(backend, workdir) as url,
            running_server(url, workdir, layout, code[1]) as served,
        ):
            page = first_load_bytes(served.base) if not args.no_page else None
            loads = [os.getloadavg()[0]]
            camera = cameras_beside(served, args.seconds + WARMUP_SECONDS + 5, args.camera_rate, 7)
            samples, achieved, watch = asyncio.run(
                drive_reports(served, args.rate, args.seconds, photos, args.seed, args.queue_view)
            )
            loads.append(os.getloadavg()[0])
            if camera.thread is not None:
                camera.thread.join(timeout=120)
            queued = [s.queued_ms for s in samples if s.queued_ms is not None]
            answered = [s.answered_ms for s in samples if s.status == 303]
            p99 = _ms(queued).get("p99")
            cameras: dict[str, Any] = {"error": camera.error} if camera.error else {}
            if camera.summary is not None:
                cameras = {
                    "rate_target": camera.summary.rate_target,
                    "published": camera.summary.published,
                    "confirmed": camera.summary.confirmed,
                    "publish_rate": camera.summary.publish_rate,
                    "ack_latency_ms": camera.summary.latency_ms,
                }
            return {
                "backend": backend,
                "layout": layout,
                "code": code[0],
                "queue_view": args.queue_view,
                "feed": {"reconnects": watch.reconnects, "resets": watch.resets},
                "offered_rate": args.rate,
                "achieved_rate": round(achieved, 1),
                "reports": len(samples),
                "refused_or_failed": sum(1 for s in samples if s.status != 303),
                "never_queued": sum(1 for s in samples if s.status == 303 and s.queued_ms is None),
                "photos_sent": sum(s.photos for s in samples),
                # Failed or never queued reports count as over the target here.
                "queued_within_target_share": round(
                    sum(1 for q in queued if q <= TARGET_P99_MS) / max(len(samples), 1), 3
                ),
                "submitted_to_queue_ms": _ms(queued),
                "submitted_to_answer_ms": _ms(answered),
                "target_p99_ms": TARGET_P99_MS,
                "p99_ratio_to_target": round(p99 / TARGET_P99_MS, 2) if p99 else None,
                "cameras": cameras,
                "load_average_1m": [round(value, 2) for value in loads],
                "first_load": page,
            }
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=20.0, help="reports per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--camera-rate", type=float, default=CAMERA_RATE, help="events/s")
    parser.add_argument(
        "--backends", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    parser.add_argument(
        "--layouts",
        nargs="+",
        choices=LAYOUTS,
        default=["server"],
        help="server: one civicwatch server; roles: api --workers 2, ingest and sweep apart",
    )
    parser.add_argument(
        "--baseline",
        default="",
        help="a git revision whose server (layout server) runs first, in the same run",
    )
    parser.add_argument(
        "--queue-view",
        choices=QUEUE_VIEWS,
        default="feed",
        help="feed: the fire worker's live feed shows the case dispatched (default); "
        "poll: the worker asks for each report's case every 50 ms",
    )
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--no-page", action="store_true", help="skip the first-load bytes")
    parser.add_argument("--keep", action="store_true", help="keep the work folders")
    args = parser.parse_args(argv)
    photos = real_photos(args.seed)
    runs = []
    scratch = Path(tempfile.mkdtemp(prefix="cw-report-intake-baseline-"))
    this: tuple[str, Path | None] = ("this tree", None)
    plan = [
        (backend, layout, this)
        for backend in args.backends
        for layout in args.layouts
        if backend == "postgresql" or layout == "server"
    ]
    if args.baseline:
        from bench.report_cpu import export_tree

        tree = export_tree(args.baseline, scratch)
        plan = [
            (backend, "server", (f"baseline {args.baseline}", tree)) for backend in args.backends
        ] + plan
    try:
        for backend, layout, code in plan:
            runs.append(run(backend, layout, args, photos, code))
            _show(runs[-1])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        json.dumps(
            {
                "bench": "report_intake",
                "photo_kb": [round(len(p) / 1024) for p in photos],
                "runs": runs,
            },
            ensure_ascii=False,
        )
    )
    return 0


def _show(summary: dict[str, Any]) -> None:
    """One run's summary on stderr: the JSON (kept if a later run fails) and one line."""
    print(json.dumps(summary, ensure_ascii=False), file=sys.stderr)  # kept if a later one fails
    queue = summary["submitted_to_queue_ms"]
    print(
        f"{summary['backend']} ({summary['layout']}, {summary['code']}, "
        f"{summary['queue_view']}): "
        f"{summary['achieved_rate']}/s offered {summary['reports']}, "
        f"{summary['refused_or_failed']} failed, {summary['never_queued']} never queued, "
        f"{summary['queued_within_target_share']:.1%} queued within {TARGET_P99_MS} ms, "
        f"submitted -> queue p50 {queue.get('p50')} "
        f"ms p99 {queue.get('p99')} ms (target {TARGET_P99_MS}), page "
        f"{(summary['first_load'] or {}).get('kb')} KB, load {summary['load_average_1m']}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    raise SystemExit(main())
