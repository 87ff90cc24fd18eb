"""Time from an event stored by ingest to its case appearing on an open console's live feed.

Real parts: a private Mosquitto, ``civicwatch server`` in its own process (fresh database),
an SSE client holding GET /api/v1/feed open as the console does, and a publisher sending one
new violation at a steady rate (generated events: tests/factories.py, solid-colour JPEGs, each
with its own plate so its case can be told apart on the feed).

"Stored" is when ingest's ack for the message arrives: ingest acks only after the commit, so
the ack bounds the commit from above and ack -> feed bounds commit -> feed from below by at most
the ack's own trip (about a millisecond on one host). Publish -> feed, which adds ingest's
batching, is reported too.

    .venv/bin/python -m bench.console_latency [--events 200] [--rate 5] [--backend sqlite]

Progress goes to stderr on a terminal; the last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt

from bench.api_load import (
    DISPATCHER_TOKEN,
    Served,
    running_server,
    site_registry,
)
from bench.ingest_rate import scratch_database
from contracts.acks import AckOutcome, IngestAck
from contracts.events import Phase
from contracts.mqtt import make_client
from contracts.stats import percentile
from contracts.topics import ack_topic
from loadgen.measure import Progress
from tests.factories import EventFactory
from tests.unit.ingest.helpers import with_plate

TARGET_P99_MS = 1000
ZONE = "gate"  # the no-parking zone every camera of bench.api_load.site_registry() has


@dataclass
class Timeline:
    """When each event (by its unique plate) was published, acked and seen on the feed."""

    published: dict[str, float] = field(default_factory=dict)
    acked: dict[str, float] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    plate_of: dict[str, str] = field(default_factory=dict)  # message_id -> plate
    rejected: int = 0
    rejections: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    all_seen: threading.Event = field(default_factory=threading.Event)
    expected: int = 0


def watch_feed(served: Served, timeline: Timeline, stop: threading.Event) -> None:
    """Read the SSE stream like the console's EventSource; note when each plate first shows."""
    headers = {"Authorization": f"Bearer {DISPATCHER_TOKEN}", "Accept": "text/event-stream"}
    with (
        httpx.Client(base_url=served.base, timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", "/api/v1/feed", headers=headers) as response,
    ):
        response.raise_for_status()
        timeline.all_seen.clear()
        for line in response.iter_lines():
            if stop.is_set():
                return
            if not line.startswith("data:"):
                continue
            now = time.perf_counter()
            data = json.loads(line[5:])
            plate = (data.get("case") or {}).get("plate_text")
            with timeline.lock:
                if plate in timeline.published and plate not in timeline.seen:
                    timeline.seen[plate] = now
                    if len(timeline.seen) >= timeline.expected:
                        timeline.all_seen.set()


def run(backend: str, events: int, rate: float, keep: bool) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"console-latency-{backend}-"))
    timeline = Timeline(expected=events)
    try:
        with scratch_database(backend, workdir) as url, running_server(url, workdir) as served:
            registry = site_registry()
            gateway = registry[0].gateways[0]
            camera = gateway.cameras[0]
            factory = EventFactory(
                site_id=registry[0].id, gateway_id=gateway.id, camera_id=camera.id
            )
            stop = threading.Event()
            feed = threading.Thread(
                target=watch_feed, args=(served, timeline, stop), name="feed", daemon=True
            )
            feed.start()
            time.sleep(1.0)  # the stream is open and subscribed before the first event

            def on_ack(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
                now = time.perf_counter()
                ack = IngestAck.model_validate_json(message.payload)
                with timeline.lock:
                    plate = timeline.plate_of.get(str(ack.message_id))
                    if plate is None:
                        return
                    if ack.outcome is AckOutcome.STORED:
                        timeline.acked.setdefault(plate, now)
                    elif ack.outcome is AckOutcome.REJECTED:
                        timeline.rejected += 1
                        timeline.rejections.add(ack.reason)

            edge = make_client(served.broker, "console-latency-edge")
            edge.on_message = on_ack
            edge.connect(served.broker.host, served.broker.port)
            edge.subscribe(ack_topic(registry[0].id, gateway.id), qos=1)
            edge.loop_start()
            time.sleep(0.5)
            progress = Progress(f"events {rate:g}/s", events)
            start = time.perf_counter()
            try:
                for index in range(events):
                    due = start + index / rate
                    delay = due - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    plate = f"浙B{index:05d}"
                    event = with_plate(factory.event(Phase.OPENED, zone_id=ZONE, frames=1), plate)
                    with timeline.lock:
                        timeline.plate_of[str(event.message_id)] = plate
                        timeline.published[plate] = time.perf_counter()
                    edge.publish(factory.topic, event.to_wire(), qos=1)
                    progress.show(index + 1, f"seen {len(timeline.seen)}")
                timeline.all_seen.wait(30)
                settle = time.monotonic() + 2  # the last acks may trail the feed by a moment
                while len(timeline.acked) + timeline.rejected < events and (
                    time.monotonic() < settle
                ):
                    time.sleep(0.05)
            finally:
                progress.finish()
                stop.set()
                edge.disconnect()
                edge.loop_stop()
        return summarise(timeline, backend, events, rate)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def summarise(timeline: Timeline, backend: str, events: int, rate: float) -> dict[str, Any]:
    stored_to_feed = [
        (timeline.seen[p] - timeline.acked[p]) * 1000 for p in timeline.seen if p in timeline.acked
    ]
    publish_to_feed = [(timeline.seen[p] - timeline.published[p]) * 1000 for p in timeline.seen]
    publish_to_ack = [(timeline.acked[p] - timeline.published[p]) * 1000 for p in timeline.acked]

    def figures(values: Sequence[float]) -> dict[str, float | None]:
        if not values:
            return {"p50_ms": None, "p99_ms": None, "max_ms": None}
        return {
            "p50_ms": round(percentile(values, 0.5), 1),
            "p99_ms": round(percentile(values, 0.99), 1),
            "max_ms": round(max(values), 1),
            "mean_ms": round(statistics.fmean(values), 1),
        }

    return {
        "backend": backend,
        "events": events,
        "rate": rate,
        "acked": len(timeline.acked),
        "seen_on_feed": len(timeline.seen),
        "rejected": timeline.rejected,
        "rejections": sorted(timeline.rejections),
        "stored_to_feed": figures(stored_to_feed),
        "publish_to_feed": figures(publish_to_feed),
        "publish_to_ack": figures(publish_to_ack),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0, help="new violations per second")
    parser.add_argument(
        "--backends", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folders")
    args = parser.parse_args(argv)
    runs = []
    for backend in args.backends:
        runs.append(run(backend, args.events, args.rate, args.keep))
        print(json.dumps(runs[-1]), file=sys.stderr)
    print(json.dumps({"bench": "console_latency", "target_p99_ms": TARGET_P99_MS, "runs": runs}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
