"""Simulated gateways for rule pushes: each its own MQTT connection, subscribed to its own
retained rules topic, taking documents through the edge's own ``RuleStore`` (signature, site and
gateway, version, atomic write to disk) exactly as a gateway does. While a document waits for
the site's plates (``RuleStore.wanted_plates``) the gateway subscribes to the site's plates
topic, as edge.publisher does, and unsubscribes once it holds them.

A thousand connections run in one thread: paho clients driven by one selector (no thread per
client). Taking a document (verify, write, fsync) runs on a pool of threads, because real
gateways do it at the same time on their own devices; one thread would queue a thousand fsyncs
behind each other and measure the simulator's disk instead. Each
document a gateway takes is reported as one line on stdout, ``rules GATEWAY VERSION T``, with T
the system-wide monotonic clock (``time.monotonic``, shared by every process on the machine), so
the bench that made the change can time it from its side; one taken with the whole set from the
site topic is also reported as ``fetched GATEWAY VERSION T``.

For the baseline, each gateway also subscribes to ``bench/rules-raw/GATEWAY``: what arrives
there is only noted (``raw GATEWAY SEQ T``), not verified or stored.

    python -m loadgen.rule_gateways --port P --gateways 1000 --public-key KEY --folder DIR

Prints ``ready N`` once every gateway is connected and subscribed; stops at end of stdin.
"""

from __future__ import annotations

import argparse
import collections
import selectors
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from contracts.mqtt import BrokerSettings, make_client
from contracts.rule_signing import public_key_from_text
from contracts.sites import SiteConfig
from contracts.topics import rules_topic, site_plates_topic
from edge.rule_store import RuleStore
from loadgen.registry import PREFIX_DEFAULT, LoadgenError, simulated_registry

RAW_TOPIC = "bench/rules-raw/{gateway}"
RAW_SEQ_DIGITS = 8  # a raw message starts with its sequence number, zero-padded


def rule_push_site(gateways: int, prefix: str = PREFIX_DEFAULT) -> SiteConfig:
    """One site of ``gateways`` gateways, one camera each (loadgen's simulated registry)."""
    [site] = simulated_registry(gateways, 1, prefix).sites
    return site


def raw_topic(gateway_id: str) -> str:
    return RAW_TOPIC.format(gateway=gateway_id)


class _Gateway:
    def __init__(
        self, site: SiteConfig, gateway_id: str, store: RuleStore, broker: BrokerSettings
    ) -> None:
        self.id = gateway_id
        self.store = store
        self.rules_topic = rules_topic(site.id, gateway_id)
        self.plates_topic = site_plates_topic(site.id)
        self.raw_topic = raw_topic(gateway_id)
        self.subscribed = False
        self.plates_subscribed = False  # only the selector's thread reads or writes it
        self.client = make_client(broker, f"{gateway_id}-rules-sim")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, client: mqtt.Client, *_args: Any) -> None:
        client.subscribe([(self.rules_topic, 1), (self.raw_topic, 1)])

    def _on_subscribe(self, *_args: Any) -> None:
        self.subscribed = True


class RuleGateways:
    """``gateway_ids`` of ``site`` as simulated gateways; ``report(kind, gateway, value, t)``
    gets each document taken (kind ``rules``, the version) and each raw message (``raw``)."""

    def __init__(
        self,
        broker: BrokerSettings,
        site: SiteConfig,
        public_key: str,
        folder: Path,
        report: Any,
        workers: int = 64,
    ) -> None:
        key = public_key_from_text(public_key)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="take")
        self._report = report
        self._selector = selectors.DefaultSelector()
        # Gateways whose wish for the site's plates may have changed: the take threads note
        # them, the selector's thread (the one that drives the clients) subscribes.
        self._follow: collections.deque[_Gateway] = collections.deque()
        self._by_socket: dict[int, _Gateway] = {}
        self.gateways = [
            _Gateway(
                site,
                gateway.id,
                RuleStore(folder / f"rules-{gateway.id}.json", key, site, gateway.id),
                broker,
            )
            for gateway in site.gateways
        ]
        for gateway in self.gateways:
            gateway.client.on_message = self._handler(gateway)
        self._broker = broker

    def _handler(self, gateway: _Gateway) -> Any:
        def on_message(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
            if message.topic == gateway.rules_topic:
                self._pool.submit(self._take, gateway, bytes(message.payload))
            elif message.topic == gateway.plates_topic:
                self._pool.submit(self._take_plates, gateway, bytes(message.payload))
            else:
                seq = bytes(message.payload)[:RAW_SEQ_DIGITS].decode("ascii", "replace")
                self._report("raw", gateway.id, seq, time.monotonic())

        return on_message

    def _take(self, gateway: _Gateway, payload: bytes) -> None:
        before = gateway.store.version
        if gateway.store.offer(payload) and gateway.store.version != before:
            self._report("rules", gateway.id, gateway.store.version, time.monotonic())
        self._follow.append(gateway)

    def _take_plates(self, gateway: _Gateway, payload: bytes) -> None:
        before = gateway.store.version
        if gateway.store.offer_plates(payload) and gateway.store.version != before:
            at = time.monotonic()
            self._report("rules", gateway.id, gateway.store.version, at)
            self._report("fetched", gateway.id, gateway.store.version, at)
        self._follow.append(gateway)

    def _follow_plates(self) -> None:
        """Subscribe to the site's plates for the gateways waiting for them, unsubscribe the
        others (on the selector's thread, which drives the clients)."""
        while self._follow:
            gateway = self._follow.popleft()
            wanted = gateway.store.wanted_plates is not None
            if wanted and not gateway.plates_subscribed:
                gateway.client.subscribe(gateway.plates_topic, qos=1)
            elif not wanted and gateway.plates_subscribed:
                gateway.client.unsubscribe(gateway.plates_topic)
            gateway.plates_subscribed = wanted

    def connect(self, timeout: float = 120.0) -> None:
        """Connect and subscribe every gateway; LoadgenError if they are not all in by then."""
        for gateway in self.gateways:
            gateway.client.connect(self._broker.host, self._broker.port, keepalive=120)
            sock = gateway.client.socket()
            assert sock is not None
            self._by_socket[sock.fileno()] = gateway
            self._selector.register(sock, selectors.EVENT_READ, gateway)
        deadline = time.monotonic() + timeout
        while not all(g.subscribed for g in self.gateways):
            if time.monotonic() > deadline:
                missing = sum(not g.subscribed for g in self.gateways)
                raise LoadgenError(f"{missing} simulated gateways not subscribed in {timeout}s")
            self.poll(0.05)

    def poll(self, timeout: float) -> None:
        """One pass: read what arrived, write what is queued (PUBACKs, subscriptions)."""
        for key, _events in self._selector.select(timeout):
            gateway: _Gateway = key.data
            gateway.client.loop_read()
        self._follow_plates()
        for gateway in self.gateways:
            if gateway.client.want_write():
                gateway.client.loop_write()

    def keepalive(self) -> None:
        for gateway in self.gateways:
            gateway.client.loop_misc()

    def run(self, stop: threading.Event) -> None:
        last_misc = time.monotonic()
        while not stop.is_set():
            self.poll(0.05)
            if time.monotonic() - last_misc > 5:
                self.keepalive()
                last_misc = time.monotonic()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for gateway in self.gateways:
            gateway.client.disconnect()
            gateway.client.loop_write()
        self._selector.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="simulated gateways taking rule documents")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--prefix", default=PREFIX_DEFAULT)
    parser.add_argument("--public-key", required=True)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=64, help="threads taking documents")
    args = parser.parse_args(argv)
    lock = threading.Lock()

    def report(kind: str, gateway: str, value: object, at: float) -> None:
        with lock:
            sys.stdout.write(f"{kind} {gateway} {value!s} {at:.6f}\n")
            sys.stdout.flush()

    args.folder.mkdir(parents=True, exist_ok=True)
    site = rule_push_site(args.gateways, args.prefix)
    gateways = RuleGateways(
        BrokerSettings(host=args.host, port=args.port),
        site,
        args.public_key,
        args.folder,
        report,
        args.workers,
    )
    try:
        gateways.connect()
    except LoadgenError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 1
    report("ready", str(len(gateways.gateways)), "-", time.monotonic())
    stop = threading.Event()

    def stop_at_end_of_input() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=stop_at_end_of_input, daemon=True).start()
    try:
        gateways.run(stop)
    finally:
        gateways.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
