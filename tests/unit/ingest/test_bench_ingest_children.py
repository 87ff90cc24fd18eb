"""bench.ingest_evidence's in-process children (parse and store), run on this tree as its
--baseline runs them on another: each answers with its figures, or the bench stops."""

from __future__ import annotations

from pathlib import Path

from bench.ingest_evidence import REPO, parse_cpu_ms, store_ms
from bench.ingest_rate import build_registry, build_workload


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
