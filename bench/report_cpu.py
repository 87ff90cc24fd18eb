"""Server CPU per resident's report, in process: ``submit_report`` and its commit with 0, 1 and 3
photos, the photo check alone and the merge search alone, on this tree and (``--baseline REF``)
on another revision's.

Real parts: a fresh PostgreSQL database (or SQLite) brought to the newest schema by the real
migrations, the intake wired as ``civicwatch server`` wires it (loadgen's 1,000-camera registry,
the default routing, a real evidence store on disk), and the photos bench.report_intake posts
(../shared/data/images re-encoded as 100-300 KB JPEGs, made once by the parent so every tree
gets the same bytes). Each report is a blocked fire lane at its own building: it opens its own
case and is dispatched to fire and rescue, as in the load bench. A report's figure is
``time.process_time`` around ``submit_report`` and ``commit`` (this process's CPU; the
database's own is not counted) and the wall time of the same span, after a few warm-up reports.
The merge search (``find_case_to_join``) is then timed alone, the reports' open cases in its
window (50, as many as it reads) and a building none of them names, so it weighs every one.

``--baseline REF`` exports ``git archive REF`` into a temporary folder and runs the same
measurement there in a child process (its own imports, nothing of this tree's), alternating
with this tree's for ``--rounds`` rounds, so both see the same machine load.

    .venv/bin/python -m bench.report_cpu [--calls 30] [--rounds 2] [--baseline HEAD~3]
        [--backend postgresql]

Progress goes to stderr on a terminal; the last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PHOTO_COUNTS = (0, 1, 3)
WARMUP = 3
CAMERAS = 1000
CAMERAS_PER_GATEWAY = 8
MERGE_CALLS = 40


# --- the child: one tree's measurement ----------------------------------------------------


def measure(backend: str, calls: int, photo_dir: Path, workdir: Path, label: str) -> dict[str, Any]:
    """The figures for the tree this process imports from (PYTHONPATH)."""
    import dispatch
    from bench.ingest_rate import scratch_database
    from contracts.kinds import ViolationKind
    from dispatch.config import ReportRateLimits, ResidentSettings, RoutingSettings
    from dispatch.residents.intake import IntakeDeps, ReportSubmission, submit_report
    from dispatch.residents.photos import clean_photo
    from dispatch.residents.tiers import ResidentAwareRouter
    from loadgen.measure import Progress
    from loadgen.registry import simulated_registry
    from storage.database import make_engine, make_session_factory
    from storage.evidence_store import EvidenceStore
    from storage.schema import migrate

    photos = [path.read_bytes() for path in sorted(photo_dir.glob("*.jpg"))]
    registry = simulated_registry(CAMERAS, CAMERAS_PER_GATEWAY)
    site_id = registry.sites[0].id
    routing = RoutingSettings()
    settings = ResidentSettings(
        limits=ReportRateLimits(per_address=1_000_000, per_phone=1_000_000, per_token=1_000)
    )
    figures: dict[str, Any] = {
        "tree": label,
        "imports_from": str(Path(dispatch.__file__).resolve().parent.parent),
    }
    started = time.process_time()
    for photo in photos * 3:
        clean_photo(photo, settings.photos)
    figures["photo_check_cpu_ms"] = round(
        (time.process_time() - started) * 1000 / (len(photos) * 3), 2
    )
    with scratch_database(backend, workdir) as url:
        migrate(url)
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        deps = IntakeDeps(
            settings=settings,
            registry=registry,
            router=ResidentAwareRouter(routing, registry=registry),
            routing=routing,
            evidence_store=EvidenceStore(workdir / "evidence"),
        )
        progress = Progress(f"{label} reports", len(PHOTO_COUNTS) * (calls + WARMUP))
        done = 0
        number = 0
        for count in PHOTO_COUNTS:
            cpu: list[float] = []
            wall: list[float] = []
            for call in range(calls + WARMUP):
                number += 1
                attached = [photos[(number + n) % len(photos)] for n in range(count)]
                submission = ReportSubmission(
                    category=ViolationKind.FIRE_LANE_BLOCKING,
                    site_id=site_id,
                    building=f"B{number}",
                    description=f"消防通道被堵 #{number}",
                    photos=attached,
                    client_address="127.0.0.1",
                )
                cpu_start, wall_start = time.process_time(), time.perf_counter()
                with sessions() as session:
                    submit_report(session, submission, deps=deps)
                    session.commit()
                if call >= WARMUP:
                    cpu.append((time.process_time() - cpu_start) * 1000)
                    wall.append((time.perf_counter() - wall_start) * 1000)
                done += 1
                progress.show(done, f"{count} photos")
            figures[f"photos_{count}"] = {
                "cpu_ms_median": round(statistics.median(cpu), 2),
                "cpu_ms_p90": round(sorted(cpu)[int(0.9 * (len(cpu) - 1))], 2),
                "wall_ms_median": round(statistics.median(wall), 2),
            }
        progress.finish()
        figures["merge_search"] = _merge_search(sessions, deps, site_id)
        engine.dispose()
    return figures


def _merge_search(sessions: Any, deps: Any, site_id: str) -> dict[str, Any]:
    """``find_case_to_join`` alone, with the reports' open cases (as many as the search reads)
    in the window and a building none of them names, so every candidate is weighed; each call
    in a fresh session, as a report's is."""
    from contracts.kinds import ViolationKind
    from dispatch.residents.merge import Place, find_case_to_join

    cpu: list[float] = []
    for call in range(MERGE_CALLS + WARMUP):
        started = time.process_time()
        with sessions() as session:
            found = find_case_to_join(
                session,
                deps.registry,
                kind=ViolationKind.FIRE_LANE_BLOCKING,
                site_id=site_id,
                place=Place(building="nowhere"),
                now=deps.clock(),
                window_minutes=deps.settings.merge_window_minutes,
                radius=deps.settings.merge_radius,
            )
        if call >= WARMUP:
            cpu.append((time.process_time() - started) * 1000)
        assert found is None
    return {"cpu_ms_median": round(statistics.median(cpu), 2), "calls": MERGE_CALLS}


# --- the parent: photos, trees, rounds ----------------------------------------------------


def export_tree(ref: str, into: Path) -> Path:
    """``git archive ref`` unpacked under ``into`` (the repository itself is left alone)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref],
        check=True,
        capture_output=True,
    ).stdout
    tree = into / "baseline"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    shared = ROOT.parent / "shared"
    if not (into / "shared").exists() and shared.exists():
        (into / "shared").symlink_to(shared)  # the tree's ../shared, as in this checkout
    return tree


def run_child(tree: Path, label: str, args: argparse.Namespace, photo_dir: Path) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"cw-report-cpu-{label}-"))
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        label,
        "--calls",
        str(args.calls),
        "--backend",
        args.backend,
        "--photo-dir",
        str(photo_dir),
        "--workdir",
        str(workdir),
    ]
    try:
        done = subprocess.run(
            command, cwd=tree, env=env, stdout=subprocess.PIPE, text=True, check=True
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _median(runs: list[dict[str, Any]], key: str, field: str) -> float:
    return round(float(statistics.median(run[key][field] for run in runs)), 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=30, help="measured reports per photo count")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs per tree")
    parser.add_argument("--baseline", default="", help="a git revision to compare against")
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--photo-dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        figures = measure(
            args.backend, args.calls, Path(args.photo_dir), Path(args.workdir), args.child
        )
        print(json.dumps(figures, ensure_ascii=False))
        return 0

    from bench.report_intake import real_photos

    scratch = Path(tempfile.mkdtemp(prefix="cw-report-cpu-"))
    try:
        photo_dir = scratch / "photos"
        photo_dir.mkdir()
        for number, photo in enumerate(real_photos(args.seed)):
            (photo_dir / f"{number:02d}.jpg").write_bytes(photo)
        trees = [("this tree", ROOT)]
        if args.baseline:
            trees.insert(0, (f"baseline {args.baseline}", export_tree(args.baseline, scratch)))
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _tree in trees}
        loads = [round(os.getloadavg()[0], 2)]
        for _round in range(args.rounds):
            for label, tree in trees:
                runs[label].append(run_child(tree, label, args, photo_dir))
                loads.append(round(os.getloadavg()[0], 2))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary: dict[str, Any] = {"bench": "report_cpu", "backend": args.backend, "trees": {}}
    for label, tree_runs in runs.items():
        summary["trees"][label] = {
            "photo_check_cpu_ms": round(
                statistics.median(run["photo_check_cpu_ms"] for run in tree_runs), 2
            ),
            **{
                f"photos_{count}": {
                    "cpu_ms_median": _median(tree_runs, f"photos_{count}", "cpu_ms_median"),
                    "cpu_ms_spread": [
                        min(run[f"photos_{count}"]["cpu_ms_median"] for run in tree_runs),
                        max(run[f"photos_{count}"]["cpu_ms_median"] for run in tree_runs),
                    ],
                    "wall_ms_median": _median(tree_runs, f"photos_{count}", "wall_ms_median"),
                }
                for count in PHOTO_COUNTS
            },
            "merge_search_cpu_ms": round(
                statistics.median(run["merge_search"]["cpu_ms_median"] for run in tree_runs), 2
            ),
            "runs": tree_runs,
        }
    summary["load_average_1m"] = loads
    line = []
    if args.baseline:
        before = summary["trees"][trees[0][0]]
        after = summary["trees"]["this tree"]
        ratios = {
            count: round(
                after[f"photos_{count}"]["cpu_ms_median"]
                / max(before[f"photos_{count}"]["cpu_ms_median"], 1e-9),
                2,
            )
            for count in PHOTO_COUNTS
        }
        summary["cpu_ratio_this_to_baseline"] = {f"photos_{c}": r for c, r in ratios.items()}
        merge_ratio = round(
            after["merge_search_cpu_ms"] / max(before["merge_search_cpu_ms"], 1e-9), 2
        )
        summary["cpu_ratio_this_to_baseline"]["merge_search"] = merge_ratio
        line = [f"{c} photos x{r}" for c, r in ratios.items()] + [f"merge search x{merge_ratio}"]
    for label, figures in summary["trees"].items():
        per = ", ".join(
            f"{count} photos {figures[f'photos_{count}']['cpu_ms_median']} ms"
            for count in PHOTO_COUNTS
        )
        print(
            f"{label}: {per}; photo check {figures['photo_check_cpu_ms']} ms;"
            f" merge search {figures['merge_search_cpu_ms']} ms",
            file=sys.stderr,
        )
    if line:
        print("this tree / baseline CPU: " + ", ".join(line), file=sys.stderr)
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
