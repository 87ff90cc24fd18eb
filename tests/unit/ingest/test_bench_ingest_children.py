"""bench.ingest_evidence's in-process children (parse and store), run on this tree as its
--baseline runs them on another: each answers with its figures, or the bench stops."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from bench.ingest_evidence import REPO, parse_cpu_ms, store_ms
from bench.ingest_rate import build_registry, build_workload, thread_cpu_seconds


def test_the_parse_child_times_each_message_set(tmp_path: Path) -> None:
    registry = build_registry(4)
    messages = build_workload(registry, 8, seed=1)
    figures = parse_cpu_ms(REPO, registry, {"small": messages}, tmp_path)
    assert set(figures) == {"small"}
    assert 0 < figures["small"]["min"] <= figures["small"]["median"]


def test_the_store_child_stores_through_the_trees_writer(tmp_path: Path) -> None:
    registry = build_registry(4)
    messages = build_workload(registry, 12, seed=2)
    figures = store_ms(REPO, registry, messages, "sqlite", tmp_path / "store")
    assert 0 < figures["cpu"] <= figures["wall"] * 4  # CPU of one thread, within reason
    assert figures["wall"] > 0


def test_thread_cpu_is_told_by_role() -> None:
    """bench.ingest_rate's workers report their threads' CPU by role, from /proc."""
    done = threading.Event()

    def busy() -> None:
        started = time.thread_time()
        while time.thread_time() - started < 0.05:
            pass
        done.wait(5)

    thread = threading.Thread(target=busy, name="ingest-writer-test")
    thread.start()
    try:
        time.sleep(0.2)
        figures = thread_cpu_seconds()
    finally:
        done.set()
        thread.join()
    assert figures["writer"] >= 0.03
    assert set(figures) <= {"writer", "paho", "evidence", "other"}
