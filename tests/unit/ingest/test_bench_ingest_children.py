"""bench.ingest_evidence's in-process children (parse and store), run on this tree as its
--baseline runs them on another: each answers with its figures, or the bench stops."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from bench.ingest_evidence import REPO, as_frames, parse_cpu_ms, store_ms, store_profile
from bench.ingest_rate import _JPEG_START, build_registry, build_workload, thread_cpu_seconds


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


@pytest.mark.postgres
def test_the_store_profile_child_counts_statements_and_times_the_store(tmp_path: Path) -> None:
    """Frames with two 20 KB images per opened event stored in batches of 10 on a real
    PostgreSQL: every figure is there, and the statements counted are the batches' own."""
    registry = build_registry(4)
    messages = as_frames(
        build_workload(
            registry,
            60,
            seed=3,
            opened_images=lambda: [_JPEG_START + os.urandom(20_000) for _ in range(2)],
        )
    )
    figures = store_profile(REPO, registry, messages, 10, tmp_path / "profile")
    assert figures["events"] == 40  # the first 20 warm up
    assert figures["batches"] == 4
    assert figures["writer_cpu_ms"] > 0
    assert 0 < figures["statements_wall_ms"] < figures["wall_ms"]
    assert figures["database_cpu_ms"] is not None  # the backend's /proc entry was read
    # each batch sends at least its events', evidence and cases' statements, counted once each
    assert figures["statements_per_batch"] >= 4
    assert figures["statements_per_event"] == pytest.approx(figures["statements_per_batch"] / 10)
    assert sum(figures["statement_kinds_per_batch"].values()) == pytest.approx(
        figures["statements_per_batch"], abs=0.1
    )
    assert figures["evidence_sync_wait_ms"] >= 0


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
