"""Chaos, at length: every case of tests/chaos 20 times, plus a 10-minute broker outage.

Real processes on this machine: a private Mosquitto, `civicwatch server` on SQLite, and an edge
(`civicwatch loadgen --outbox-dir`: the real outbox and publisher, synthetic events). Each run
breaks one part mid-stream, brings it back, and compares what the edge's outboxes accepted with
what the database holds. Run from the repository root:

    .venv/bin/python -m bench.chaos [--runs 20] [--long-outage 600] [--cases broker_kill ...]

Prints one JSON line per run, then a one-line JSON summary (last line): per case the runs, lost,
duplicated cases and recovery time (median, max), and the long outage on its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadgen.measure import Progress
from tests.chaos.rig import CASES, ChaosRig, RunResult, Timing

LONG_OUTAGE_CASE = "broker_outage"


def run_case(case: str, runs: int, timing: Timing, workdir: Path) -> list[RunResult]:
    rig = ChaosRig(workdir / case, timing)
    rig.workdir.mkdir(parents=True, exist_ok=True)
    rig.start()
    progress = Progress(case, runs)
    results = []
    try:
        for run in range(1, runs + 1):
            result = rig.run_case(case, run)
            results.append(result)
            print(result.to_json(), flush=True)
            progress.show(run, f"lost {sum(r.lost for r in results)}", force=True)
    finally:
        progress.finish()
        rig.close()
    return results


def summarise(results: Sequence[RunResult]) -> dict[str, Any]:
    recoveries = [r.recovery_s for r in results]
    return {
        "runs": len(results),
        "published": sum(r.published for r in results),
        "lost": sum(r.lost for r in results),
        "duplicate_cases": sum(r.duplicate_cases for r in results),
        "edge_failures": sum(1 for r in results if r.edge_exit != 0),
        "backlog_median": statistics.median(r.backlog for r in results) if results else None,
        "recovery_s_median": round(statistics.median(recoveries), 2) if recoveries else None,
        "recovery_s_max": max(recoveries) if recoveries else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per case")
    parser.add_argument("--long-outage", type=float, default=600.0, help="seconds; 0 skips it")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--rate", type=float, default=30.0, help="edge events per second")
    args = parser.parse_args(argv)
    timing = Timing(rate=args.rate)
    summary: dict[str, Any] = {"machine_note": "timings are wall-clock on a shared machine"}
    with tempfile.TemporaryDirectory(prefix="civicwatch-chaos-") as tmp:
        workdir = Path(tmp)
        for case in args.cases:
            summary[case] = summarise(run_case(case, args.runs, timing, workdir))
        if args.long_outage > 0:
            # The edge's default resend interval: a 2 s one would resend the whole backlog
            # again and again while ingest drains it.
            long_timing = Timing(
                rate=args.rate,
                long_outage_s=args.long_outage,
                resend_after_s=10.0,
                settle_timeout_s=900.0,
            )
            long = run_case(LONG_OUTAGE_CASE, 1, long_timing, workdir / "long")
            summary[f"{LONG_OUTAGE_CASE}_{int(args.long_outage)}s"] = summarise(long)
    print(json.dumps(summary))
    failed = any(
        isinstance(value, dict) and (value["lost"] or value["duplicate_cases"])
        for value in summary.values()
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
