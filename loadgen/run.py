"""Running a load: direct publishing or through the real edge outbox, and its summary."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from uuid import UUID

import paho.mqtt.client as mqtt

from contracts.acks import AckOutcome
from contracts.mqtt import BrokerSettings, make_client
from contracts.sites import SiteRegistry
from contracts.topics import ack_topic
from loadgen.events import EVIDENCE_IMAGES, CameraSimulator, camera_simulators, evidence_images
from loadgen.ledger import install_ledger, outbox_file, read_ledger
from loadgen.measure import AckTracker, Progress, latency_summary_ms, stored_message_ids
from loadgen.registry import (
    PREFIX_DEFAULT,
    LoadgenError,
    check_registry_covers,
    simulated_registry,
    write_config,
)

log = logging.getLogger(__name__)


class LoadOutcome(StrEnum):
    """How a run ended; the command turns it into an exit code."""

    COMPLETE = "complete"  # every event confirmed (and stored, when counted)
    UNCONFIRMED = "unconfirmed"
    REFUSED = "refused"  # the arguments or the registry are wrong: nothing ran


LoadConfig = Callable[[Path], tuple[SiteRegistry, BrokerSettings]]
"""Reads the server's config file: its site registry and broker (the composition root's loader)."""


@dataclass
class LoadSummary:
    mode: str
    cameras: int
    gateways: int
    rate_target: float
    duration_s: float
    published: int
    confirmed: int
    duplicates: int
    rejected: int
    unconfirmed: int
    publish_rate: float
    elapsed_s: float
    latency_ms: dict[str, float | None]
    stored: int | None = None
    ledger_total: int | None = None
    outbox_pending: int | None = None

    @property
    def complete(self) -> bool:
        # Durable mode counts what every run put in the outboxes, restarts included.
        expected = self.ledger_total if self.ledger_total is not None else self.published
        stored_all = self.stored is None or self.stored >= expected
        return self.unconfirmed == 0 and self.rejected == 0 and stored_all


class _Pacer:
    """Spreads ``rate`` events a second evenly; falls behind rather than dropping events."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._start = time.monotonic()

    def wait_for(self, index: int) -> None:
        delay = self._start + index * self._interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _planned(rate: float, duration: float) -> int:
    return int(rate * duration)


def run_direct(
    broker: BrokerSettings,
    registry: SiteRegistry,
    simulators: Sequence[CameraSimulator],
    rate: float,
    duration: float,
    connections: int,
    confirm_timeout: float,
) -> tuple[LoadSummary, list[UUID]]:
    """Publish at QoS 1 from a few connections; the summary and every id published."""
    tracker = AckTracker()
    published_ids: list[UUID] = []
    gateways = [(site.id, gateway.id) for site in registry.sites for gateway in site.gateways]
    connections = max(1, min(connections, len(gateways)))
    run_id = uuid.uuid4().hex[:8]
    clients: list[mqtt.Client] = []
    ready: list[threading.Event] = []
    client_of_gateway: dict[str, mqtt.Client] = {}
    for number in range(connections):
        mine = gateways[number::connections]
        client = make_client(broker, f"civicwatch-loadgen-{run_id}-{number}")
        connected = threading.Event()
        client.on_connect = _subscriber(mine, connected)
        client.on_message = lambda _c, _u, message: tracker.answered(bytes(message.payload))
        client.connect_async(broker.host, broker.port, keepalive=broker.keepalive_seconds)
        client.loop_start()
        clients.append(client)
        ready.append(connected)
        client_of_gateway.update({gateway_id: client for _, gateway_id in mine})
    try:
        for connected in ready:
            if not connected.wait(15):
                raise LoadgenError(f"no connection to the broker at {broker.host}:{broker.port}")
        planned = _planned(rate, duration)
        progress = Progress("loadgen", planned)
        sequences = dict.fromkeys((s.camera_id for s in simulators), 0)
        pacer = _Pacer(rate)
        started = time.monotonic()
        for index in range(planned):
            pacer.wait_for(index)
            simulator = simulators[index % len(simulators)]
            event = simulator.next_event(sequences[simulator.camera_id], datetime.now(UTC))
            sequences[simulator.camera_id] += 1
            tracker.sent(event.message_id)
            published_ids.append(event.message_id)
            client_of_gateway[simulator.gateway_id].publish(simulator.topic, event.to_wire(), 1)
            progress.show(index + 1, f"acked {sum(tracker.outcomes.values())}")
        publish_seconds = time.monotonic() - started
        deadline = time.monotonic() + confirm_timeout
        while tracker.unanswered and time.monotonic() < deadline:
            progress.show(planned, f"acked {sum(tracker.outcomes.values())}")
            time.sleep(0.05)
        progress.show(planned, f"acked {sum(tracker.outcomes.values())}", force=True)
        progress.finish()
        elapsed = time.monotonic() - started
    finally:
        for client in clients:
            client.disconnect()
            client.loop_stop()
    outcomes = tracker.outcomes
    summary = LoadSummary(
        mode="direct",
        cameras=len(simulators),
        gateways=len(gateways),
        rate_target=rate,
        duration_s=duration,
        published=planned,
        confirmed=outcomes[AckOutcome.STORED.value] + outcomes[AckOutcome.DUPLICATE.value],
        duplicates=outcomes[AckOutcome.DUPLICATE.value],
        rejected=outcomes[AckOutcome.REJECTED.value],
        unconfirmed=tracker.unanswered,
        publish_rate=round(planned / publish_seconds, 1) if publish_seconds > 0 else 0.0,
        elapsed_s=round(elapsed, 3),
        latency_ms=latency_summary_ms(tracker.latencies),
    )
    return summary, published_ids


def _subscriber(gateways: Sequence[tuple[str, str]], connected: threading.Event) -> Any:
    def on_connect(
        client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any, _properties: Any
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused loadgen: %s", reason_code)
            return
        # Subscribing here means a reconnect resubscribes.
        client.subscribe([(ack_topic(site, gateway), 1) for site, gateway in gateways])
        connected.set()

    return on_connect


def run_durable(
    broker: BrokerSettings,
    registry: SiteRegistry,
    simulators: Sequence[CameraSimulator],
    rate: float,
    duration: float,
    outbox_dir: Path,
    resend_after: float,
    confirm_timeout: float,
) -> tuple[LoadSummary, list[UUID]]:
    """Feed the real edge outbox and publisher; the summary and every id any run committed."""
    from edge.outbox import Outbox
    from edge.publisher import EdgePublisher

    outboxes: dict[str, Outbox] = {}
    publishers: list[EdgePublisher] = []
    for site in registry.sites:
        for gateway in site.gateways:
            path = outbox_file(outbox_dir, gateway.id)
            outbox = Outbox(path)
            install_ledger(path)
            outboxes[gateway.id] = outbox
            publishers.append(
                EdgePublisher(broker, site.id, gateway.id, outbox, resend_after, "-loadgen")
            )
    stop = threading.Event()

    def drain() -> None:
        # The edge worker's loop: publish whatever is due, often.
        while not stop.is_set():
            for publisher in publishers:
                while publisher.flush_due():
                    pass
            stop.wait(0.02)

    for publisher in publishers:
        publisher.start()
    drainer = threading.Thread(target=drain, name="loadgen-drain", daemon=True)
    drainer.start()
    planned = _planned(rate, duration)
    progress = Progress("loadgen (durable)", planned)
    started = time.monotonic()

    def pending() -> int:
        return sum(outbox.pending_count() for outbox in outboxes.values())

    try:
        pacer = _Pacer(rate) if planned else None
        for index in range(planned):
            assert pacer is not None
            pacer.wait_for(index)
            simulator = simulators[index % len(simulators)]
            outbox = outboxes[simulator.gateway_id]
            event = simulator.next_event(
                outbox.next_sequence(simulator.camera_id), datetime.now(UTC)
            )
            outbox.add(simulator.topic, event)
            progress.show(index + 1, f"confirmed {sum(p.confirmed for p in publishers)}")
        publish_seconds = time.monotonic() - started
        deadline = time.monotonic() + confirm_timeout
        while (left := pending()) and time.monotonic() < deadline:
            progress.show(planned, f"pending {left}")
            time.sleep(0.1)
        progress.finish()
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        drainer.join(timeout=5)
        for publisher in publishers:
            publisher.stop()
    left = pending()
    for outbox in outboxes.values():
        outbox.close()
    rejected = sum(p.rejected for p in publishers)
    ledger = [entry.message_id for entry in read_ledger(outbox_dir)]
    summary = LoadSummary(
        mode="durable",
        cameras=len(simulators),
        gateways=len(publishers),
        rate_target=rate,
        duration_s=duration,
        published=planned,
        confirmed=sum(p.confirmed for p in publishers),
        duplicates=0,  # the edge publisher does not tell stored from duplicate
        rejected=rejected,
        unconfirmed=left,
        publish_rate=round(planned / publish_seconds, 1) if publish_seconds > 0 and planned else 0,
        elapsed_s=round(elapsed, 3),
        latency_ms=latency_summary_ms([]),
        ledger_total=len(ledger),
        outbox_pending=left,
    )
    return summary, ledger


# --- the command --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cameras", type=int, default=1000, help="simulated cameras")
    parser.add_argument("--cameras-per-gateway", type=int, default=8)
    parser.add_argument("--prefix", default=PREFIX_DEFAULT, help="id prefix of the simulated site")
    parser.add_argument("--rate", type=float, default=100.0, help="events per second, all cameras")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of publishing")
    parser.add_argument("--config", type=Path, help="a civicwatch config (broker, registry)")
    parser.add_argument("--broker", help="HOST:PORT; overrides the config's broker")
    parser.add_argument(
        "--write-config",
        type=Path,
        help="write a config whose registry holds the simulated cameras (from --config) and exit",
    )
    parser.add_argument("--database-url", help="count what ingest stored in this database")
    parser.add_argument("--connections", type=int, default=8, help="MQTT connections (direct)")
    parser.add_argument(
        "--outbox-dir",
        type=Path,
        help="durable mode: one real edge outbox per gateway in this folder, replayed on restart",
    )
    parser.add_argument("--resend-after", type=float, default=5.0, help="durable mode resend (s)")
    parser.add_argument("--confirm-timeout", type=float, default=30.0)
    parser.add_argument("--plate-share", type=float, default=0.3, help="incidents with a plate")
    parser.add_argument("--seed", type=int, default=0)


def _broker_settings(args: argparse.Namespace, config: BrokerSettings | None) -> BrokerSettings:
    broker = config or BrokerSettings()
    if args.broker is None:
        return broker
    host, _, port = str(args.broker).rpartition(":")
    if not host or not port.isdigit():
        raise LoadgenError(f"--broker must be HOST:PORT, got {args.broker!r}")
    return broker.model_copy(update={"host": host, "port": int(port)})


def run(args: argparse.Namespace, load_config: LoadConfig) -> LoadOutcome:
    """The ``loadgen`` command, its arguments from add_arguments."""
    try:
        if args.rate <= 0 or args.duration < 0 or not 0.0 <= args.plate_share <= 1.0:
            raise LoadgenError("--rate must be > 0, --duration >= 0, --plate-share in 0..1")
        simulated = simulated_registry(args.cameras, args.cameras_per_gateway, args.prefix)
        if args.write_config is not None:
            broker = _broker_settings(args, None) if args.broker else None
            write_config(args.write_config, simulated, args.config, broker)
            print(json.dumps({"config": str(args.write_config), "cameras": args.cameras}))
            return LoadOutcome.COMPLETE
        configured_broker = None
        if args.config is not None:
            registry, configured_broker = load_config(args.config)
            check_registry_covers(registry, simulated)
        broker = _broker_settings(args, configured_broker)
        images = evidence_images(EVIDENCE_IMAGES, args.seed)
        simulators = camera_simulators(simulated, images, args.seed, args.plate_share)
        if args.outbox_dir is not None:
            summary, published_ids = run_durable(
                broker,
                simulated,
                simulators,
                args.rate,
                args.duration,
                args.outbox_dir,
                args.resend_after,
                args.confirm_timeout,
            )
        else:
            summary, published_ids = run_direct(
                broker,
                simulated,
                simulators,
                args.rate,
                args.duration,
                args.connections,
                args.confirm_timeout,
            )
    except LoadgenError as exc:
        print(f"civicwatch loadgen: {exc}", file=sys.stderr)
        return LoadOutcome.REFUSED
    if args.database_url:
        summary.stored = len(stored_message_ids(args.database_url, published_ids))
    print(json.dumps(summary.__dict__))
    return LoadOutcome.COMPLETE if summary.complete else LoadOutcome.UNCONFIRMED
