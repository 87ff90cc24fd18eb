"""What the evidence lock (storage/evidence_guard.py) costs ingest's writer: two trees' ingest
(a baseline revision without the lock, and one with it; both exported with ``git archive``, so
nobody's uncommitted edits take part) store the same small events (bench.ingest_rate's
workload, one ~1.5 KB frame each) with IngestService.store_batch in process, on a fresh
database each run, in batches of ``--batch`` events; the trees alternate, the order swapped
every pair. Reported per tree: the writer thread's CPU ms and wall ms per event (wall holds the
database's round trips), medians and ranges over the pairs; the load average before and after.

    .venv/bin/python -m bench.evidence_guard_cost --baseline 01d76fa --change 08974cf \
        [--events 2000] [--batch 500 20] [--pairs 5] [--database postgresql|sqlite]

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="a revision without the lock")
    parser.add_argument("--change", required=True, help="a revision with the lock")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--batch", type=int, nargs="*", default=[500, 20])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--database", default="postgresql", choices=["sqlite", "postgresql"])
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
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
