"""What the evidence lock (storage/evidence_guard.py) costs ingest's writer: two trees' ingest
(a baseline revision without the lock, and one with it; both exported with ``git archive``, so
nobody's uncommitted edits take part) store the same small events (bench.ingest_rate's
workload, one ~1.5 KB frame each) with IngestService.store_batch in process, on a fresh
database each run, in batches of ``--batch`` events; the trees alternate, the order swapped
every pair. Reported per tree: the writer thread's CPU ms and wall ms per event (wall holds the
database's round trips), medians and ranges over the pairs; the load average before and after.

    .venv/bin/python -m bench.evidence_guard_cost --baseline 01d76fa --change 08974cf \
        [--events 2000] [--batch 500 20] [--pairs 5] [--database postgresql|sqlite]

The trees' difference is one statement per batch, below what the machine's noise lets the runs
above resolve; ``--lock-cost`` measures that statement directly, in this tree: 20 alternating
blocks of 500 transactions (a ``SELECT 1`` each) with and without ``hold_for_new_bytes``, on a
scratch PostgreSQL database and on SQLite: thread CPU and wall ms per transaction, the
difference per block pair. ``--hold-time`` measures how long the retention job holds the lock
exclusively: each byte-removal transaction of ``delete_bytes`` over 500 queued 100 KB images
(no rows), folder store and PostgreSQL table store alternately, twice each.

    .venv/bin/python -m bench.evidence_guard_cost --lock-cost
    .venv/bin/python -m bench.evidence_guard_cost --hold-time

The last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.ingest_rate import _progress, build_registry, build_workload, scratch_database
from bench.report_cpu import export_tree

# Runs in a child whose ingest is the tree's under test (cwd and PYTHONPATH).
_CHILD = """
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
url, registry_file, messages_file, evidence_dir, batch = sys.argv[1:6]
batch = int(batch)
registry = SiteRegistry.model_validate_json(open(registry_file).read())
with open(messages_file, "rb") as handle:
    messages = pickle.load(handle)
events = [parse_violation(topic, payload, registry, 64_000_000) for topic, payload in messages]
migrate(url)
settings = IngestSettings(evidence_dir=Path(evidence_dir))
engine = make_engine(url)
service = IngestService(
    make_session_factory(engine), settings.open_evidence_store(url), registry, IngestMetrics(),
    Router(RoutingSettings()).dispatch_new_cases, settings=settings,
)
cpu = wall = 0.0
for start in range(0, len(events), batch):
    chunk = events[start : start + batch]
    cpu_started, wall_started = time.thread_time(), time.perf_counter()
    service.store_batch(chunk)
    cpu += time.thread_time() - cpu_started
    wall += time.perf_counter() - wall_started
engine.dispose()
print(json.dumps({"cpu": cpu * 1000 / len(events), "wall": wall * 1000 / len(events)}))
"""


def run_tree(
    tree: Path, database: str, workdir: Path, registry_file: Path, messages_file: Path, batch: int
) -> dict[str, float]:
    shutil.rmtree(workdir / "run", ignore_errors=True)
    (workdir / "run").mkdir(parents=True)
    with scratch_database(database, workdir / "run") as url:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _CHILD,
                url,
                str(registry_file),
                str(messages_file),
                str(workdir / "run" / "evidence"),
                str(batch),
            ],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            capture_output=True,
            text=True,
            check=True,
        )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def lock_cost(url: str, blocks: int = 20, per_block: int = 500) -> dict[str, object]:
    """Thread CPU and wall ms per transaction with and without hold_for_new_bytes."""
    from sqlalchemy import text

    from storage.database import make_engine, make_session_factory
    from storage.evidence_guard import hold_for_new_bytes
    from storage.schema import migrate

    migrate(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    probe = text("SELECT 1")
    found: dict[str, dict[str, list[float]]] = {
        label: {"cpu": [], "wall": []} for label in ("plain", "lock")
    }
    for block in range(blocks):
        for label in ["plain", "lock"][:: 1 if block % 2 == 0 else -1]:
            cpu, wall = time.thread_time(), time.perf_counter()
            for _ in range(per_block):
                with sessions.begin() as session:
                    session.execute(probe)
                    if label == "lock":
                        hold_for_new_bytes(session)
            found[label]["cpu"].append((time.thread_time() - cpu) * 1000 / per_block)
            found[label]["wall"].append((time.perf_counter() - wall) * 1000 / per_block)
    engine.dispose()
    out: dict[str, object] = {}
    for kind in ("cpu", "wall"):
        plain, lock = found["plain"][kind], found["lock"][kind]
        out[f"{kind}_ms_plain"] = _spread(plain)
        out[f"{kind}_ms_lock"] = _spread(lock)
        out[f"{kind}_ms_added"] = _spread([b - a for a, b in zip(plain, lock, strict=True)])
    return out


def hold_time(url: str, scratch: Path, names: int = 500, size: int = 100_000) -> dict[str, object]:
    """ms each byte-removal transaction of delete_bytes holds the lock exclusively."""
    import hashlib
    from collections.abc import Iterator
    from contextlib import contextmanager

    from sqlalchemy import event, insert
    from sqlalchemy.orm import Session

    import storage.evidence_retention as retention
    from storage.database import make_engine, make_session_factory
    from storage.evidence_pg import open_evidence_store
    from storage.schema import migrate
    from storage.tables import EvidenceDeletion, utcnow

    migrate(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    started: dict[int, float] = {}
    holds: dict[str, list[float]] = {"local": [], "postgresql": []}
    backend = ""
    from storage.evidence_guard import hold_for_removal as plain

    @contextmanager
    def timed(session: Session) -> Iterator[None]:
        started[id(session)] = time.perf_counter()
        with plain(session):
            yield

    def committed(session: Session) -> None:
        begun = started.pop(id(session), None)
        if begun is not None:
            holds[backend].append((time.perf_counter() - begun) * 1000)

    setattr(retention, "hold_for_removal", timed)  # noqa: B010 (a module's name, for the run)
    event.listen(Session, "after_commit", committed)
    totals: dict[str, list[float]] = {"local": [], "postgresql": []}
    try:
        for backend in ("local", "postgresql", "local", "postgresql"):
            store = open_evidence_store(backend, scratch / backend, url)
            hashes = []
            for _ in range(names):
                data = os.urandom(size)
                sha256 = hashlib.sha256(data).hexdigest()
                store.put(data, sha256)
                hashes.append(sha256)
            with sessions.begin() as session:
                queued = [{"sha256": sha, "queued_at": utcnow()} for sha in hashes]
                session.execute(insert(EvidenceDeletion), queued)
            job = retention.EvidenceRetention(sessions, engine, store, None, packs=False)
            begun = time.perf_counter()
            freed = job.delete_bytes()
            totals[backend].append(round((time.perf_counter() - begun) * 1000, 1))
            assert freed >= names * size, freed
            store.close()
    finally:
        event.remove(Session, "after_commit", committed)
        setattr(retention, "hold_for_removal", plain)  # noqa: B010
        engine.dispose()
    return {
        "names_per_transaction": retention.DELETION_BATCH,
        "hold_ms": {name: _spread(values) for name, values in holds.items()},
        f"delete_bytes_ms_for_{names}_names": totals,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="a revision without the lock")
    parser.add_argument("--change", help="a revision with the lock")
    parser.add_argument("--lock-cost", action="store_true", help="the lock statement alone")
    parser.add_argument("--hold-time", action="store_true", help="the job's exclusive holds")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--batch", type=int, nargs="*", default=[500, 20])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--database", default="postgresql", choices=["sqlite", "postgresql"])
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    if args.lock_cost or args.hold_time:
        scratch = Path(tempfile.mkdtemp(prefix="evidence-guard-cost-"))
        try:
            with scratch_database("postgresql", scratch) as url:
                found: dict[str, object]
                if args.lock_cost:
                    found = {
                        "postgresql": lock_cost(url),
                        "sqlite": lock_cost(f"sqlite:///{scratch / 'lock.db'}"),
                    }
                else:
                    found = hold_time(url, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        load = [[round(x, 2) for x in load_before], [round(x, 2) for x in os.getloadavg()]]
        print(json.dumps({**found, "load_before_after": load}))
        return 0
    if not args.baseline or not args.change:
        parser.error("--baseline and --change are needed (or --lock-cost / --hold-time)")
    registry = build_registry(100)
    small = build_workload(registry, args.events, seed=12)
    scratch = Path(tempfile.mkdtemp(prefix="evidence-guard-cost-"))
    try:
        trees = {
            "baseline": export_tree(args.baseline, scratch / "a"),
            "change": export_tree(args.change, scratch / "b"),
        }
        registry_file = scratch / "registry.json"
        registry_file.write_text(registry.model_dump_json())
        messages_file = scratch / "messages.pickle"
        with messages_file.open("wb") as handle:
            pickle.dump([(m.topic, m.payload) for m in small], handle)
        runs: dict[int, dict[str, list[dict[str, float]]]] = {
            batch: {label: [] for label in trees} for batch in args.batch
        }
        for pair in range(args.pairs):
            for batch in args.batch:
                order = list(trees.items())[:: 1 if pair % 2 == 0 else -1]
                for label, tree in order:
                    _progress(f"pair {pair + 1}, batch {batch}: {label}")
                    runs[batch][label].append(
                        run_tree(tree, args.database, scratch, registry_file, messages_file, batch)
                    )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary: dict[str, object] = {
        "baseline": args.baseline,
        "change": args.change,
        "database": args.database,
        "events": args.events,
        "pairs": args.pairs,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    for batch, per_tree in runs.items():
        for label, results in per_tree.items():
            for kind in ("cpu", "wall"):
                values = [r[kind] for r in results]
                summary[f"batch{batch}_{label}_{kind}_ms"] = {
                    "median": round(statistics.median(values), 4),
                    "min": round(min(values), 4),
                    "max": round(max(values), 4),
                }
        for kind in ("cpu", "wall"):
            ratios = [
                change[kind] / base[kind]
                for base, change in zip(per_tree["baseline"], per_tree["change"], strict=True)
            ]
            summary[f"batch{batch}_{kind}_ratio_per_pair"] = [round(r, 3) for r in ratios]
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
