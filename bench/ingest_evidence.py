"""Ingest with evidence: real-size images against the disk's rate, small ones against MQTT's.

Everything in one run, so the ratios compare like with like on a shared machine:

- disk: ``dd if=/dev/zero of=FILE bs=1M count=256 oflag=direct`` in the folder ingest files
  evidence in, before and after the ingest runs (the median is the ceiling);
- raw: paho -> Mosquitto -> paho at QoS 1 with the small-evidence messages (bench.ingest_rate's
  measure_raw), the ceiling of the small runs;
- raw real-size: the same with the real-size opened messages alone (three ~150 KB JPEGs base64
  inline each, or raw in a frame): how fast one broker moves them at all, in messages/s and
  MB/s (decoded image bytes, and bytes on the wire), against the disk's direct write rate; its
  collector reads each message's id from the first 512 bytes (since round 7; before, it ran
  json.loads over each whole message);
- small: bench.ingest_rate's workload (one ~1.5 KB frame per message) stored on PostgreSQL;
- real-size: every opened event carries three ~150 KB JPEGs (re-encoded from the photos in
  ../shared/data/images, each made unique by a comment segment), updates one small frame.

``--event-encoding json frame`` publishes every workload in each encoding (base64 JSON, and the
binary event frame of contracts.event_frame), alternated within each repeat (the order swapped
every repeat): ingest runs, the raw real-size ceiling and the parse are measured per encoding,
and the ingest threads' CPU ms per event of every run (real-size runs included) is reported.

Each ingest run is done per evidence mode, alternating within a repeat (the modes' order
swapped every repeat):
- ``inline_syncfs``: the writer thread writes each file, then one syncfs before the commit
  (before this change);
- ``pool_syncfs``: four threads write the files while the transaction proceeds, then one syncfs
  before the commit;
- ``pool_fsync``: the default: threads (each tree's own default count, four) write and fsync
  each file while the transaction proceeds, then each folder once, before the commit;
- ``pool_fsync_packed_large``: ``pool_fsync`` with ``evidence_pack_max_bytes`` 1 MiB, so the
  real-size images go into the writer's pack too (one append and one fdatasync a batch);
- ``postgresql``: the evidence in a PostgreSQL table (storage/evidence_pg.py), inserted by
  its own transaction on another thread, committed before the batch's.

Reported: the ingest process's threads' CPU ms per small event (writer, paho, evidence
writers, other; from /proc as each small run ends, for trees whose worker reports it), the
private Mosquitto's CPU ms per small event over each small run (this tree's bench measures it
for both trees), events/s,
evidence MB/s (decoded image bytes stored per second, first publish to
last ack), that MB/s as a share of the disk's direct write rate, and the small runs' events/s
as a share of the raw ceiling; the machine's load average before and after; the CPU ms
``parse_violation`` takes per real-size opened event and per small event, in process; and the
writer's ms per small event (CPU, and wall with the database's round trips) in
``IngestService.store_batch``, batches of 500, in process on a fresh database.

``--baseline REF`` also runs REF's ingest (its tree exported with bench.report_cpu's
export_tree; the workers import it first) in the same run: each ingest run is made once per
tree, one right after the other, the order swapped every repeat, and both trees' figures are
printed with this tree's ratio to the baseline's.

``--store-profile 50 500`` (PostgreSQL) also profiles each tree's ``store_batch`` in process on
the real-size events (as frames when ``--event-encoding`` has frame) in batches of each size, on
a fresh database each time: ms per event of wall, the writer thread's CPU, the PostgreSQL
backend's CPU, the statements' wall as the driver sees it, and the wait for the images' fsyncs;
statements (each one round trip) per batch and per event. ``--baseline`` runs with frames when
REF reads them (contracts/event_frame.py).

    .venv/bin/python -m bench.ingest_evidence [--real-events 800] [--small-events 5000]
        [--repeats 2] [--modes inline_syncfs pool_syncfs pool_fsync postgresql]
        [--baseline REF] [--database postgresql|sqlite] [--ingest-processes 1]
        [--event-encoding json frame] [--store-profile 50 500]

The last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from bench.ingest_rate import (
    Message,
    _progress,
    build_registry,
    build_workload,
    measure_ingest,
    measure_raw,
    scratch_database,
)
from contracts.event_frame import encode_event_frame, is_event_frame, split_frame
from contracts.events import ViolationEvent
from contracts.sites import SiteRegistry

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO.parent / "shared" / "data" / "images"
TARGET_BYTES = 150_000
MODES: dict[str, dict[str, Any]] = {
    "inline_syncfs": {"evidence_writer_threads": 0},
    "pool_syncfs": {"evidence_writer_threads": 4, "evidence_sync": "filesystem"},
    # the default: each tree's own thread count (4; round 9 tried 8 for no gain)
    "pool_fsync": {"evidence_sync": "files"},
    # pool_fsync with the real-size images packed too (round 8): one append + fdatasync a batch
    "pool_fsync_packed_large": {
        "evidence_writer_threads": 4,
        "evidence_sync": "files",
        "evidence_pack_max_bytes": 1024 * 1024,
    },
    "postgresql": {"evidence_backend": "postgresql"},
}
THIS_TREE = "this tree"
# --event-encoding: each encoding's suffix on the workload names and summary keys
ENCODINGS = {"json": "", "frame": "_frame"}
# Runs in a child whose ingest is the tree's under test (cwd and PYTHONPATH): CPU ms per event
# of parse_violation, the median and the best of five passes over each message set.
_PARSE_CHILD = """
import json, pickle, statistics, sys, time
from contracts.sites import SiteRegistry
from ingest.validation import parse_violation
registry = SiteRegistry.model_validate_json(open(sys.argv[1]).read())
with open(sys.argv[2], "rb") as handle:
    sets = pickle.load(handle)
out = {}
for name, messages in sets.items():
    passes = []
    for _ in range(5):
        started = time.process_time()
        for topic, payload in messages:
            parse_violation(topic, payload, registry, 64_000_000)
        passes.append((time.process_time() - started) * 1000 / len(messages))
    out[name] = {"median": round(statistics.median(passes), 3), "min": round(min(passes), 3)}
print(json.dumps(out))
"""
# The same for the writer: the tree's IngestService stores the small messages (parsed first)
# in batches of 500 on a fresh database, wired as bench.ingest_rate's worker wires it; the
# writer thread's CPU ms and wall ms per event, database round trips included in the wall.
_STORE_CHILD = """
import json, pickle, sys, time
from pathlib import Path
from contracts.sites import SiteRegistry
from dispatch.config import RoutingSettings
from dispatch.routing import Router
from ingest.config import IngestSettings
from ingest.metrics import IngestMetrics
from ingest.store import IngestService
from ingest.validation import parse_violation
from storage.database import make_engine, make_session_factory
from storage.schema import migrate
url, registry_file, messages_file, evidence_dir = sys.argv[1:5]
registry = SiteRegistry.model_validate_json(open(registry_file).read())
with open(messages_file, "rb") as handle:
    messages = pickle.load(handle)["small"]
events = [parse_violation(topic, payload, registry, 64_000_000) for topic, payload in messages]
migrate(url)
settings = IngestSettings(evidence_dir=Path(evidence_dir))
engine = make_engine(url)
service = IngestService(
    make_session_factory(engine), settings.open_evidence_store(url), registry, IngestMetrics(),
    Router(RoutingSettings()).dispatch_new_cases, settings=settings,
)
cpu = wall = 0.0
for start in range(0, len(events), 500):
    chunk = events[start : start + 500]
    cpu_started, wall_started = time.thread_time(), time.perf_counter()
    service.store_batch(chunk)
    cpu += time.thread_time() - cpu_started
    wall += time.perf_counter() - wall_started
engine.dispose()
print(json.dumps({"cpu": round(cpu * 1000 / len(events), 3),
                  "wall": round(wall * 1000 / len(events), 3)}))
"""
# Where a real-size event's store_batch time goes (issue 15, ingest round 9): the tree's
# IngestService stores the real-size workload (frames, parsed first) in batches of argv[5] on a
# fresh PostgreSQL database, after a 20-event warm-up. Per event: the wall and the writer
# thread's CPU, the PostgreSQL backend's CPU (its /proc entry: the database is on this host),
# the statements' wall as the driver sees it (round trip and execution), and the wait in the
# evidence store's sync() for the images' fsyncs; per batch: statements (= round trips) sent.
_STORE_PROFILE_CHILD = """
import collections, json, os, pickle, sys, time
from pathlib import Path
from sqlalchemy import event
from contracts.sites import SiteRegistry
from dispatch.config import RoutingSettings
from dispatch.routing import Router
from ingest.config import IngestSettings
from ingest.metrics import IngestMetrics
from ingest.store import IngestService
from ingest.validation import parse_violation
from storage.database import make_engine, make_session_factory
from storage.schema import migrate
url, registry_file, messages_file, evidence_dir, size = sys.argv[1:6]
size = int(size)
registry = SiteRegistry.model_validate_json(open(registry_file).read())
with open(messages_file, "rb") as handle:
    messages = pickle.load(handle)["real"]
events = [parse_violation(topic, payload, registry, 64_000_000) for topic, payload in messages]
migrate(url)
settings = IngestSettings(evidence_dir=Path(evidence_dir))
engine = make_engine(url)
backends = set()
sent = collections.Counter()
statement_s = [0.0]
@event.listens_for(engine, "connect")
def _connected(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("SELECT pg_backend_pid()")
    backends.add(cursor.fetchone()[0])
    cursor.close()
@event.listens_for(engine, "before_cursor_execute")
def _before(conn, _cursor, _statement, _parameters, _context, _many):
    conn.info["sent_at"] = time.perf_counter()
@event.listens_for(engine, "after_cursor_execute")
def _after(conn, _cursor, statement, _parameters, _context, _many):
    statement_s[0] += time.perf_counter() - conn.info["sent_at"]
    sent[" ".join(statement.split()[:3])] += 1
def backend_cpu():
    total = 0.0
    for pid in backends:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total
store = settings.open_evidence_store(url)
synced = [0.0]
plain_sync = store.sync
def timed_sync():
    started = time.perf_counter()
    try:
        plain_sync()
    finally:
        synced[0] += time.perf_counter() - started
store.sync = timed_sync
service = IngestService(
    make_session_factory(engine), store, registry, IngestMetrics(),
    Router(RoutingSettings()).dispatch_new_cases, settings=settings,
)
service.store_batch(events[:20])
events = events[20:]
sent.clear(); statement_s[0] = synced[0] = 0.0
database_before = backend_cpu()
cpu = wall = 0.0
batches = 0
for start in range(0, len(events), size):
    cpu_started, wall_started = time.thread_time(), time.perf_counter()
    service.store_batch(events[start : start + size])
    cpu += time.thread_time() - cpu_started
    wall += time.perf_counter() - wall_started
    batches += 1
database_after = backend_cpu()
engine.dispose()
count = len(events)
print(json.dumps({
    "batch": size, "events": count, "batches": batches,
    "wall_ms": round(wall * 1000 / count, 3), "writer_cpu_ms": round(cpu * 1000 / count, 3),
    "database_cpu_ms": None if database_before is None or database_after is None
    else round((database_after - database_before) * 1000 / count, 3),
    "statements_wall_ms": round(statement_s[0] * 1000 / count, 3),
    "evidence_sync_wait_ms": round(synced[0] * 1000 / count, 3),
    "statements_per_batch": round(sum(sent.values()) / batches, 2),
    "statements_per_event": round(sum(sent.values()) / count, 3),
    "statement_kinds_per_batch": {k: round(v / batches, 2) for k, v in sent.most_common()},
}))
"""
_DD_RATE = re.compile(r"([0-9.,]+)\s*([kMG]?B)/s")
_UNITS = {"B": 1e-6, "kB": 1e-3, "MB": 1.0, "GB": 1e3}


def disk_direct_write_mb_s(folder: Path) -> float:
    """dd's own figure for 256 MiB written with O_DIRECT in ``folder``, in MB/s (10^6 B)."""
    target = folder / "dd-direct.bin"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["dd", "if=/dev/zero", f"of={target}", "bs=1M", "count=256", "oflag=direct"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "LC_ALL": "C"},
        )
    finally:
        target.unlink(missing_ok=True)
    match = _DD_RATE.search(done.stderr.strip().splitlines()[-1])
    if match is None:
        raise RuntimeError(f"cannot read dd's rate from {done.stderr!r}")
    return float(match.group(1).replace(",", ".")) * _UNITS[match.group(2)]


def real_size_jpegs(target: int = TARGET_BYTES) -> list[bytes]:
    """The shared photos re-encoded at the quality that brings each nearest ``target`` bytes."""
    photos = sorted(PHOTOS.glob("*.jpg")) + sorted(PHOTOS.glob("*.png"))
    if not photos:
        raise RuntimeError(f"no photos in {PHOTOS}")
    encoded = []
    for photo in photos:
        with Image.open(photo) as image:
            rgb = image.convert("RGB")
            rgb.thumbnail((1920, 1080))
        sizes = {}
        for quality in range(100, 20, -2):
            buffer = io.BytesIO()
            rgb.save(buffer, "JPEG", quality=quality)
            sizes[quality] = buffer.getvalue()
        best = min(sizes.values(), key=lambda data: abs(len(data) - target))
        encoded.append(best)
    return encoded


def unique_frames(bases: list[bytes], per_event: int = 3) -> Callable[[], list[bytes]]:
    """A source of ``per_event`` distinct JPEGs per call: a base photo with a fresh comment
    segment right after its SOI marker (evidence is filed by hash: equal bytes are stored once).
    """
    counter = 0

    def frames() -> list[bytes]:
        nonlocal counter
        out = []
        for _ in range(per_event):
            base = bases[counter % len(bases)]
            comment = os.urandom(16)
            segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
            out.append(base[:2] + segment + base[2:])
            counter += 1
        return out

    return frames


def evidence_megabytes(messages: list[Message]) -> float:
    """The decoded image bytes the messages carry, in MB (10^6 B), JSON or frames."""
    total = 0
    for message in messages:
        if is_event_frame(message.payload):
            total += len(split_frame(message.payload)[1])  # the blob section: the images
            continue
        for frame in json.loads(message.payload)["evidence"]:
            total += len(frame["data"]) * 3 // 4 - frame["data"][-2:].count("=")
            if frame.get("redacted"):
                data = frame["redacted"]["data"]
                total += len(data) * 3 // 4 - data[-2:].count("=")
    return total / 1e6


def as_frames(messages: list[Message]) -> list[Message]:
    """The same events (same message ids) as binary event frames."""
    return [
        Message(
            m.topic,
            encode_event_frame(ViolationEvent.model_validate_json(m.payload)),
            m.message_id,
        )
        for m in messages
    ]


def parse_cpu_ms(
    tree: Path, registry: SiteRegistry, sets: dict[str, list[Message]], workdir: Path
) -> dict[str, dict[str, float]]:
    """CPU ms per message of ``tree``'s parse_violation over each named message set."""
    workdir.mkdir(parents=True, exist_ok=True)
    registry_file = workdir / "registry.json"
    registry_file.write_text(registry.model_dump_json())
    messages_file = workdir / "messages.pickle"
    with messages_file.open("wb") as handle:
        plain = {name: [(m.topic, m.payload) for m in messages] for name, messages in sets.items()}
        pickle.dump(plain, handle)
    done = subprocess.run(
        [sys.executable, "-c", _PARSE_CHILD, str(registry_file), str(messages_file)],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, dict[str, float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def store_ms(
    tree: Path, registry: SiteRegistry, small: list[Message], database: str, workdir: Path
) -> dict[str, float]:
    """Writer ms per small event (CPU and wall) of ``tree``'s IngestService.store_batch."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    registry_file = workdir / "registry.json"
    registry_file.write_text(registry.model_dump_json())
    messages_file = workdir / "messages.pickle"
    with messages_file.open("wb") as handle:
        pickle.dump({"small": [(m.topic, m.payload) for m in small]}, handle)
    with scratch_database(database, workdir) as url:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _STORE_CHILD,
                url,
                str(registry_file),
                str(messages_file),
                str(workdir / "evidence"),
            ],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            capture_output=True,
            text=True,
            check=True,
        )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def store_profile(
    tree: Path, registry: SiteRegistry, real: list[Message], size: int, workdir: Path
) -> dict[str, Any]:
    """Where ``tree``'s store_batch spends a real-size event's time, batches of ``size``, on a
    fresh PostgreSQL database (see _STORE_PROFILE_CHILD): ms per event and statements."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    registry_file = workdir / "registry.json"
    registry_file.write_text(registry.model_dump_json())
    messages_file = workdir / "messages.pickle"
    with messages_file.open("wb") as handle:
        pickle.dump({"real": [(m.topic, m.payload) for m in real]}, handle)
    with scratch_database("postgresql", workdir) as url:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _STORE_PROFILE_CHILD,
                url,
                str(registry_file),
                str(messages_file),
                str(workdir / "evidence"),
                str(size),
            ],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            capture_output=True,
            text=True,
            check=True,
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_1m"] = round(os.getloadavg()[0], 2)
    return result


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cameras", type=int, default=100)
    parser.add_argument("--real-events", type=int, default=800)
    parser.add_argument("--small-events", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    parser.add_argument("--database", default="postgresql", choices=["sqlite", "postgresql"])
    parser.add_argument(
        "--ingest-processes",
        type=int,
        default=1,
        help="ingest worker processes on one shared subscription (each tree's ingest runs)",
    )
    parser.add_argument(
        "--baseline", default="", help="a git revision whose ingest runs beside this tree's"
    )
    parser.add_argument(
        "--event-encoding",
        nargs="+",
        default=["json"],
        choices=list(ENCODINGS),
        help="publish every workload in each of these encodings, alternated (same run)",
    )
    parser.add_argument(
        "--store-profile",
        type=int,
        nargs="*",
        default=[],
        metavar="BATCH",
        help="PostgreSQL: also profile each tree's store_batch on the real-size events (frames "
        "when --event-encoding has frame) in batches of each BATCH: ms per event (wall, writer "
        "CPU, database CPU, statements, the images' sync wait) and statements per batch",
    )
    args = parser.parse_args(argv)
    encodings: list[str] = list(dict.fromkeys(args.event_encoding))
    if args.store_profile and args.database != "postgresql":
        parser.error("--store-profile reads the PostgreSQL backend's CPU: --database postgresql")
    load_before = os.getloadavg()
    registry = build_registry(args.cameras)
    _progress("building the workloads")
    bases = real_size_jpegs()
    real = build_workload(registry, args.real_events, seed=11, opened_images=unique_frames(bases))
    small = build_workload(registry, args.small_events, seed=12)
    # the workloads by name: "real" and "small" in JSON, "real_frame" and "small_frame" as frames
    workloads: dict[str, list[Message]] = {}
    for encoding in encodings:
        for name, messages in (("real", real), ("small", small)):
            encoded = messages if encoding == "json" else as_frames(messages)
            workloads[name + ENCODINGS[encoding]] = encoded
    sizes = {name: (evidence_megabytes(m), len(m)) for name, m in workloads.items()}
    real_mb = evidence_megabytes(real)
    small_mb = evidence_megabytes(small)
    opened: dict[str, list[Message]] = {
        encoding: [
            m for m in workloads["real" + ENCODINGS[encoding]] if b'"phase":"opened"' in m.payload
        ]
        for encoding in encodings
    }
    parse_sets: dict[str, list[Message]] = {}
    for encoding in encodings:
        parse_sets["real_size_opened" + ENCODINGS[encoding]] = opened[encoding][:60]
        parse_sets["small" + ENCODINGS[encoding]] = workloads["small" + ENCODINGS[encoding]][:400]
    scratch = Path(tempfile.mkdtemp(prefix="ingest-evidence-", dir=os.environ.get("TMPDIR")))
    trees: dict[str, Path] = {THIS_TREE: REPO}
    if args.baseline:
        from bench.report_cpu import export_tree

        trees = {f"baseline {args.baseline}": export_tree(args.baseline, scratch), **trees}
        if (
            "frame" in encodings
            and not (trees[f"baseline {args.baseline}"] / "contracts" / "event_frame.py").is_file()
        ):
            parser.error(f"--baseline {args.baseline} does not read frames: json only")
    rates: dict[str, dict[str, list[float]]] = {label: {} for label in trees}
    workload_of: dict[str, str] = {}  # run key -> workload name
    parse_ms: dict[str, list[dict[str, dict[str, float]]]] = {label: [] for label in trees}
    writer_ms: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
    # --store-profile: per tree, per batch size, each repeat's profile
    profiles: dict[str, dict[int, list[dict[str, Any]]]] = {
        label: {size: [] for size in args.store_profile} for label in trees
    }
    profiled = workloads["real_frame" if "frame" in encodings else "real"]
    # each small run's ingest threads' CPU ms per event, by role (trees whose worker says it)
    thread_ms: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
    # the same for every run, by run key (real-size runs too)
    run_thread_ms: dict[str, dict[str, list[dict[str, float]]]] = {label: {} for label in trees}
    # each small run's private Mosquitto: CPU ms per event over the run (ingest's acks included)
    broker_ms: dict[str, list[float]] = {label: [] for label in trees}
    raw_rates: list[float] = []
    # the real-size opened messages alone, messages/s, per encoding
    raw_real_rates: dict[str, list[float]] = {encoding: [] for encoding in encodings}
    disk: list[float] = []
    loads = [round(load_before[0], 2)]
    try:
        workdir = scratch / "work"
        _progress("disk direct write rate")
        disk.append(disk_direct_write_mb_s(workdir))
        for repeat in range(args.repeats):
            # Swapped every repeat, so neither tree (nor encoding) always runs first.
            order = list(trees.items())[:: 1 if repeat % 2 == 0 else -1]
            encoding_order = encodings[:: 1 if repeat % 2 == 0 else -1]
            for label, tree in order:
                _progress(f"repeat {repeat + 1}: parse, {label}")
                parse_ms[label].append(parse_cpu_ms(tree, registry, parse_sets, workdir / "parse"))
                _progress(f"repeat {repeat + 1}: store_batch, {label}")
                writer_ms[label].append(
                    store_ms(tree, registry, small, args.database, workdir / "store")
                )
                for size in args.store_profile:
                    _progress(f"repeat {repeat + 1}: store_batch profile {size}, {label}")
                    profiles[label][size].append(
                        store_profile(tree, registry, profiled, size, workdir / "profile")
                    )
            _progress(f"repeat {repeat + 1}: raw MQTT")
            raw_rates.append(measure_raw(small, workdir / "raw"))
            for encoding in encoding_order:
                _progress(f"repeat {repeat + 1}: raw MQTT, real-size, {encoding}")
                raw_real_rates[encoding].append(measure_raw(opened[encoding], workdir / "raw-real"))
            for mode in args.modes[:: 1 if repeat % 2 == 0 else -1]:
                for base in ("real", "small"):
                    for encoding in encoding_order:
                        name = base + ENCODINGS[encoding]
                        messages = workloads[name]
                        key = f"{name}_{mode}"
                        workload_of[key] = name
                        for label, tree in order:
                            _progress(f"repeat {repeat + 1}: {name} evidence, {mode}, {label}")
                            run = measure_ingest(
                                messages,
                                registry,
                                args.database,
                                workdir / f"{name}-{mode}",
                                workers=args.ingest_processes,
                                ingest_options=MODES[mode],
                                code_root=None if tree == REPO else tree,
                            )
                            if run.stored != len(messages):
                                raise RuntimeError(
                                    f"{label} {name}/{mode}: stored {run.stored} of {len(messages)}"
                                )
                            rates[label].setdefault(key, []).append(run.rate)
                            if name == "small" and run.broker_cpu_s:
                                broker_ms[label].append(run.broker_cpu_s * 1000 / len(messages))
                            cpus = [w["thread_cpu_s"] for w in run.writers if w.get("thread_cpu_s")]
                            if cpus:  # all ingest processes together
                                roles = {role for cpu in cpus for role in cpu}
                                per_event = {
                                    role: sum(cpu.get(role, 0.0) for cpu in cpus)
                                    * 1000
                                    / len(messages)
                                    for role in roles
                                }
                                run_thread_ms[label].setdefault(key, []).append(per_event)
                                if name == "small":
                                    thread_ms[label].append(per_event)
            loads.append(round(os.getloadavg()[0], 2))
        _progress("disk direct write rate")
        disk.append(disk_direct_write_mb_s(workdir))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    disk_mb_s = statistics.median(disk)
    raw = statistics.median(raw_rates)
    summary: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, shared",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "load_average_1m_each_repeat": loads,
        "database": args.database,
        "ingest_processes": args.ingest_processes,
        "cameras": args.cameras,
        "repeats": args.repeats,
        "event_encodings": encodings,
        "disk_direct_write_mb_s": [round(x, 1) for x in disk],
        "raw_small_qos1_events_per_s": round(raw, 1),
        "raw_small_qos1_each": [round(x, 1) for x in raw_rates],
    }
    for encoding in encodings:
        messages, each = opened[encoding], raw_real_rates[encoding]
        per_message_mb = evidence_megabytes(messages) / len(messages)
        wire_mb = sum(len(m.payload) for m in messages) / 1e6 / len(messages)
        summary["raw_real_size_opened_qos1" + ENCODINGS[encoding]] = {
            "messages": len(messages),
            "messages_per_s": round(statistics.median(each), 1),
            "messages_per_s_each": [round(x, 1) for x in each],
            "evidence_mb_s": round(statistics.median(each) * per_message_mb, 1),
            "wire_mb_s": round(statistics.median(each) * wire_mb, 1),
            "wire_bytes_per_message_mean": round(wire_mb * 1e6),
            "evidence_share_of_disk_direct_write": round(
                statistics.median(each) * per_message_mb / disk_mb_s, 3
            ),
        }
    summary["real_size"] = {
        "events": len(real),
        "jpeg_bytes_mean": round(statistics.mean(len(b) for b in bases)),
        "evidence_mb": round(real_mb, 1),
    }
    summary["small"] = {"events": len(small), "evidence_mb": round(small_mb, 2)}
    per_tree: dict[str, Any] = {}
    for label in trees:
        runs: dict[str, Any] = {}
        for key, values in rates[label].items():
            name = workload_of[key]
            events_per_s = statistics.median(values)
            megabytes, count = sizes[name]
            mb_s = events_per_s * megabytes / count
            entry: dict[str, Any] = {
                "events_per_s": _median(values),
                "events_per_s_each": [round(v, 1) for v in values],
                "evidence_mb_s": round(mb_s, 2),
            }
            if name.startswith("real"):
                entry["share_of_disk_direct_write"] = round(mb_s / disk_mb_s, 3)
            else:
                entry["share_of_raw_mqtt"] = round(events_per_s / raw, 3)
            threads = run_thread_ms[label].get(key, [])
            if threads:
                entry["ingest_thread_cpu_ms_per_event"] = {
                    role: round(statistics.median(t.get(role, 0.0) for t in threads), 3)
                    for role in sorted({role for t in threads for role in t})
                } | {
                    "total": round(statistics.median(sum(t.values()) for t in threads), 3),
                    "total_each": [round(sum(t.values()), 3) for t in threads],
                }
            runs[key] = entry
        parse = {
            name: {
                "cpu_ms_median": _median([p[name]["median"] for p in parse_ms[label]]),
                "cpu_ms_each": [p[name]["median"] for p in parse_ms[label]],
            }
            for name in parse_sets
        }
        writer = {
            f"{kind}_ms_median": _median([w[kind] for w in writer_ms[label]])
            for kind in ("cpu", "wall")
        } | {f"{kind}_ms_each": [w[kind] for w in writer_ms[label]] for kind in ("cpu", "wall")}
        per_tree[label] = {
            "runs": runs,
            "store_batch_profile_real_size": {
                str(size): {
                    key: _median([p[key] for p in each])
                    for key in (
                        "wall_ms",
                        "writer_cpu_ms",
                        "database_cpu_ms",
                        "statements_wall_ms",
                        "evidence_sync_wait_ms",
                        "statements_per_batch",
                        "statements_per_event",
                    )
                    if all(p[key] is not None for p in each)
                }
                | {"each": each}
                for size, each in profiles[label].items()
            },
            "parse_violation_cpu_ms_per_event": parse,
            "store_batch_ms_per_small_event": writer,
            # the ingest process's threads in the small JSON runs (all modes), median per role
            "ingest_thread_cpu_ms_per_small_event": {
                role: round(statistics.median(t.get(role, 0.0) for t in thread_ms[label]), 3)
                for role in sorted({role for t in thread_ms[label] for role in t})
            },
            "mosquitto_cpu_ms_per_small_event": {
                "median": round(statistics.median(broker_ms[label]), 3)
                if broker_ms[label]
                else None,
                "each": [round(ms, 3) for ms in broker_ms[label]],
            },
        }
    summary["runs"] = per_tree[THIS_TREE]["runs"]
    summary["parse_violation_cpu_ms_per_event"] = per_tree[THIS_TREE][
        "parse_violation_cpu_ms_per_event"
    ]
    summary["store_batch_ms_per_small_event"] = per_tree[THIS_TREE][
        "store_batch_ms_per_small_event"
    ]
    if args.store_profile:
        summary["store_batch_profile_real_size"] = per_tree[THIS_TREE][
            "store_batch_profile_real_size"
        ]
    summary["ingest_thread_cpu_ms_per_small_event"] = per_tree[THIS_TREE][
        "ingest_thread_cpu_ms_per_small_event"
    ]
    summary["mosquitto_cpu_ms_per_small_event"] = per_tree[THIS_TREE][
        "mosquitto_cpu_ms_per_small_event"
    ]
    if "frame" in encodings and "json" in encodings:
        runs = summary["runs"]
        summary["ratio_frame_to_json"] = {
            **{
                key: round(
                    runs[key]["events_per_s"] / runs[key.replace("_frame", "", 1)]["events_per_s"],
                    2,
                )
                for key in runs
                if "_frame_" in key
            },
            "raw_real_size_opened_messages_per_s": round(
                summary["raw_real_size_opened_qos1_frame"]["messages_per_s"]
                / summary["raw_real_size_opened_qos1"]["messages_per_s"],
                2,
            ),
            **{
                f"parse_cpu_ms_{name}": round(
                    entry["cpu_ms_median"]
                    / summary["parse_violation_cpu_ms_per_event"][name.replace("_frame", "")][
                        "cpu_ms_median"
                    ],
                    2,
                )
                for name, entry in summary["parse_violation_cpu_ms_per_event"].items()
                if name.endswith("_frame")
            },
        }
    if args.baseline:
        base = per_tree[f"baseline {args.baseline}"]
        summary["baseline"] = {"ref": args.baseline, **base}
        summary["ratio_this_to_baseline"] = {
            **{
                key: round(entry["events_per_s"] / base["runs"][key]["events_per_s"], 2)
                for key, entry in summary["runs"].items()
            },
            **{
                f"parse_cpu_ms_{name}": round(
                    entry["cpu_ms_median"]
                    / base["parse_violation_cpu_ms_per_event"][name]["cpu_ms_median"],
                    2,
                )
                for name, entry in summary["parse_violation_cpu_ms_per_event"].items()
            },
            **{
                f"store_batch_{kind}_ms_small": round(
                    summary["store_batch_ms_per_small_event"][f"{kind}_ms_median"]
                    / base["store_batch_ms_per_small_event"][f"{kind}_ms_median"],
                    2,
                )
                for kind in ("cpu", "wall")
            },
        }
    _progress("")
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
