"""Where a machine's cores go over a window: CPU seconds of named process groups, by psutil.

A group is a set of root processes; its CPU is the roots' own user + system time, their live
descendants' and the children they have reaped (``children_user``/``children_system``), so a
process that starts and ends inside the window (a PostgreSQL backend for a new connection) is
counted once its parent has reaped it. ``machine`` is every core's busy time (not idle, not
iowait); ``other`` is what the machine spent outside the groups.

    meter = CpuMeter({"server": [pid], "postgres": postgres_roots()})
    meter.start(); ...; shares = meter.stop(requests=answered)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil


def _own(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _reaped(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.children_user + times.children_system)


def tree_seconds(roots: Iterable[int], exclude_children: bool = False) -> float:
    """CPU seconds so far of ``roots`` and everything under them (see the module's doc);
    with ``exclude_children`` only the roots' own threads (e.g. the bench itself, whose
    children are the server it measures)."""
    total = 0.0
    seen: set[int] = set()
    for pid in roots:
        try:
            root = psutil.Process(pid)
            members = [root] if exclude_children else [root, *root.children(recursive=True)]
            if not exclude_children:
                total += _reaped(root)
            for member in members:
                if member.pid in seen:
                    continue
                seen.add(member.pid)
                total += _own(member)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def machine_busy_seconds() -> float:
    """Every core's busy seconds so far (all but idle and iowait)."""
    times = psutil.cpu_times()
    busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
    return float(busy - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0))


def postgres_roots() -> list[int]:
    """The PostgreSQL postmaster(s) on this machine: ``postgres`` processes whose parent is not
    one (their backends and helpers are their children)."""
    roots = []
    for process in psutil.process_iter(["name", "ppid"]):
        if process.info["name"] != "postgres":
            continue
        try:
            parent = psutil.Process(process.info["ppid"])
            if parent.name() != "postgres":
                roots.append(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            roots.append(process.pid)
    return roots


@dataclass
class CpuMeter:
    """CPU seconds per group between ``start`` and ``stop``."""

    groups: Mapping[str, Sequence[int]]
    own_only: frozenset[str] = frozenset()  # groups counted without their children
    result: dict[str, Any] = field(default_factory=dict)  # the last ``stop``'s, kept by callers
    _started: dict[str, float] = field(default_factory=dict)
    _wall: float = 0.0

    def _sample(self) -> dict[str, float]:
        sample = {
            name: tree_seconds(pids, exclude_children=name in self.own_only)
            for name, pids in self.groups.items()
        }
        sample["machine"] = machine_busy_seconds()
        return sample

    def start(self) -> None:
        self._started = self._sample()
        self._wall = time.perf_counter()

    def stop(self, requests: int | None = None) -> dict[str, Any]:
        """Each group's cores used over the window (CPU seconds / wall seconds), ``other`` and
        ``machine`` included, the machine's core count, and with ``requests`` each group's CPU
        milliseconds per answered request."""
        ended = self._sample()
        wall = time.perf_counter() - self._wall
        used = {name: max(ended[name] - self._started.get(name, 0.0), 0.0) for name in ended}
        in_groups = sum(value for name, value in used.items() if name != "machine")
        used["other"] = max(used["machine"] - in_groups, 0.0)
        result: dict[str, Any] = {
            "seconds": round(wall, 2),
            "cores_available": psutil.cpu_count() or 0,
            "cores": {name: round(value / wall, 3) for name, value in used.items()},
        }
        if requests:
            result["cpu_ms_per_request"] = {
                name: round(value * 1000 / requests, 3) for name, value in used.items()
            }
            result["requests"] = requests
        return result


def one_line(shares: Mapping[str, Any]) -> str:
    """``server 0.91, generator 0.55, postgres 0.40, mosquitto 0.00, other 0.10 of 2 cores``."""
    cores = shares["cores"]
    parts = [f"{name} {value:.2f}" for name, value in cores.items() if name != "machine"]
    return f"{', '.join(parts)} of {shares['cores_available']} cores"
