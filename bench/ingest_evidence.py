"""Ingest with evidence: real-size images against the disk's rate, small ones against MQTT's.

Everything in one run, so the ratios compare like with like on a shared machine:

- disk: ``dd if=/dev/zero of=FILE bs=1M count=256 oflag=direct`` in the folder ingest files
  evidence in, before and after the ingest runs (the median is the ceiling);
- raw: paho -> Mosquitto -> paho at QoS 1 with the small-evidence messages (bench.ingest_rate's
  measure_raw), the ceiling of the small runs;
- small: bench.ingest_rate's workload (one ~1.5 KB frame per message) stored on PostgreSQL;
- real-size: every opened event carries three ~150 KB JPEGs (re-encoded from the photos in
  ../shared/data/images, each made unique by a comment segment), updates one small frame.

Each ingest run is done per evidence mode, alternating within a repeat:
- ``inline_syncfs``: the writer thread writes each file, then one syncfs before the commit
  (before this change);
- ``pool_syncfs``: four threads write the files while the transaction proceeds, then one syncfs
  before the commit;
- ``pool_fsync``: four threads write and fsync each file while the transaction proceeds, then
  each folder once, before the commit (after: the default);
- ``postgresql``: the evidence in a PostgreSQL table (storage/evidence_pg.py), inserted by
  its own transaction on another thread, committed before the batch's.

Reported: events/s, evidence MB/s (decoded image bytes stored per second, first publish to
last ack), that MB/s as a share of the disk's direct write rate, and the small runs' events/s
as a share of the raw ceiling; the machine's load average before and after.

    .venv/bin/python -m bench.ingest_evidence [--real-events 800] [--small-events 5000]
        [--repeats 2] [--modes inline_syncfs pool_syncfs pool_fsync postgresql]

The last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
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
)

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO.parent / "shared" / "data" / "images"
TARGET_BYTES = 150_000
MODES: dict[str, dict[str, Any]] = {
    "inline_syncfs": {"evidence_writer_threads": 0},
    "pool_syncfs": {"evidence_writer_threads": 4, "evidence_sync": "filesystem"},
    "pool_fsync": {"evidence_writer_threads": 4, "evidence_sync": "files"},
    "postgresql": {"evidence_backend": "postgresql"},
}
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
    """The decoded image bytes the messages carry, in MB (10^6 B)."""
    total = 0
    for message in messages:
        for frame in json.loads(message.payload)["evidence"]:
            total += len(frame["data"]) * 3 // 4 - frame["data"][-2:].count("=")
    return total / 1e6


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
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    registry = build_registry(args.cameras)
    _progress("building the workloads")
    bases = real_size_jpegs()
    real = build_workload(registry, args.real_events, seed=11, opened_images=unique_frames(bases))
    small = build_workload(registry, args.small_events, seed=12)
    real_mb = evidence_megabytes(real)
    small_mb = evidence_megabytes(small)
    rates: dict[str, list[float]] = {}
    disk: list[float] = []
    with tempfile.TemporaryDirectory(
        prefix="ingest-evidence-", dir=os.environ.get("TMPDIR")
    ) as tmp:
        workdir = Path(tmp)
        _progress("disk direct write rate")
        disk.append(disk_direct_write_mb_s(workdir))
        for repeat in range(args.repeats):
            _progress(f"repeat {repeat + 1}: raw MQTT")
            rates.setdefault("raw_small", []).append(measure_raw(small, workdir / "raw"))
            for mode in args.modes:
                for name, messages in (("real", real), ("small", small)):
                    _progress(f"repeat {repeat + 1}: {name} evidence, {mode}")
                    run = measure_ingest(
                        messages,
                        registry,
                        args.database,
                        workdir / f"{name}-{mode}",
                        ingest_options=MODES[mode],
                    )
                    if run.stored != len(messages):
                        raise RuntimeError(f"{name}/{mode}: stored {run.stored} of {len(messages)}")
                    rates.setdefault(f"{name}_{mode}", []).append(run.rate)
        _progress("disk direct write rate")
        disk.append(disk_direct_write_mb_s(workdir))
    disk_mb_s = statistics.median(disk)
    raw = statistics.median(rates.pop("raw_small"))
    summary: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, shared",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "database": args.database,
        "cameras": args.cameras,
        "repeats": args.repeats,
        "disk_direct_write_mb_s": [round(x, 1) for x in disk],
        "raw_small_qos1_events_per_s": round(raw, 1),
        "real_size": {
            "events": len(real),
            "jpeg_bytes_mean": round(statistics.mean(len(b) for b in bases)),
            "evidence_mb": round(real_mb, 1),
        },
        "small": {"events": len(small), "evidence_mb": round(small_mb, 2)},
        "runs": {},
    }
    for key, values in rates.items():
        name, mode = key.split("_", 1)
        events_per_s = statistics.median(values)
        megabytes = real_mb if name == "real" else small_mb
        mb_s = events_per_s * megabytes / (len(real) if name == "real" else len(small))
        entry: dict[str, Any] = {
            "events_per_s": _median(values),
            "events_per_s_each": [round(v, 1) for v in values],
            "evidence_mb_s": round(mb_s, 2),
        }
        if name == "real":
            entry["share_of_disk_direct_write"] = round(mb_s / disk_mb_s, 3)
        else:
            entry["share_of_raw_mqtt"] = round(events_per_s / raw, 3)
        summary["runs"][key] = entry
    _progress("")
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
