"""Rule push to every gateway of a 1,000-gateway site: one permit change, then the time until
each gateway holds the new version (issue 13's target: p99 <= 5 s).

The server side is the API process's own code, in this process: ``ExemptionService.issue_permit``
(or ``revoke``) commits the rule, its audit entry and a new version for each of the site's
gateways, signs every gateway's document and hands them to ``RulePublisher``, which publishes
each retained at QoS 1 on a private Mosquitto. The gateways are ``loadgen.rule_gateways``: one
MQTT connection each, subscribed to its own rules topic, taking documents through the edge's
``RuleStore`` (signature, gateway, version, atomic write to disk). Each gateway's time is from
the call that made the change to the moment its store took the new version (one monotonic
clock). Repeats alternate issuing a permit and revoking it; with ``--change registry`` each
registers one resident's plate through the registry's own service instead (the site's plates
change: with schema 3 every gateway applies the document's one-plate patch; with schema 2 it
parsed and wrote the whole set). ``--change registry-cold``: before each edit the gateways miss
a change (a plate written straight into the table), and the edit comes from a process that
sent no plates yet: its patch is from plates no gateway holds, so every gateway subscribes to
the site's plates topic and takes the whole set, signed, from there (schema 3's worst case: a
gateway back after missing a change).

Baseline, in the same run: the same number of retained messages of the same size published raw
(no database, no signing, no verifying, no disk) to the same connections, timed the same way:
the broker's and the clients' floor.

    .venv/bin/python -m bench.rule_push [--gateways 1000] [--repeats 5] [--database-url URL]
        [--backend sqlite|postgresql] [--registry-plates N] [--baseline REF]

``--backend postgresql`` makes a scratch database on the test server ($CIVICWATCH_TEST_POSTGRES)
and drops it after. ``--baseline REF`` first runs the same bench from the tree of git revision
REF (``git archive``: its own server code, gateways and bench, on its own scratch database),
then this tree, in one run, and prints both and the ratio of their p99 (with ``--change
registry`` the tree at REF must know ``--change``: bdbe1cc and later).

A progress line on a terminal; one JSON summary line last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert

from bench.ingest_rate import scratch_database
from contracts.mqtt import BrokerSettings, make_client
from contracts.rule_signing import generate_key_pair, private_key_from_text
from contracts.sites import SiteRegistry
from contracts.stats import percentile
from contracts.topics import site_plates_topic
from dispatch.exemptions import ExemptionService, PermitIn, RulePublisher, SignedDocument
from dispatch.registry import Category, RegistryService, VehicleIn
from loadgen.rule_gateways import RAW_SEQ_DIGITS, raw_topic, rule_push_site
from storage.database import SessionFactory, make_engine, make_session_factory
from storage.schema import migrate
from storage.tables import RegistryVehicle, utcnow

TARGET_P99_S = 5.0
ROOT = Path(__file__).resolve().parent.parent


def start_broker(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    config = workdir / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\nmax_queued_messages 100000\n"
    )
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen([mosquitto, "-c", str(config)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process, port
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("mosquitto did not start")


class Arrivals:
    """Reads the simulated gateways' lines: which version each holds and when, raw arrivals."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.ready = threading.Event()
        self._lock = threading.Condition()
        self.taken: dict[int, dict[str, float]] = defaultdict(dict)  # version -> gateway -> t
        self.raw: dict[int, dict[str, float]] = defaultdict(dict)  # seq -> gateway -> t
        self.fetched: dict[int, int] = defaultdict(int)  # version -> whole sets taken
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            kind, gateway, value, at = line.decode().split()
            with self._lock:
                if kind == "ready":
                    self.ready.set()
                elif kind == "rules":
                    self.taken[int(value)][gateway] = float(at)
                elif kind == "fetched":
                    self.fetched[int(value)] += 1
                elif kind == "raw":
                    self.raw[int(value)][gateway] = float(at)
                self._lock.notify_all()

    def wait(
        self, table: dict[int, dict[str, float]], key: int, count: int, timeout: float
    ) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(table[key]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.25))
        return True


class Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.enabled = sys.stderr.isatty()

    def show(self, label: str, done: int) -> None:
        if self.enabled:
            width = 30
            filled = width * done // max(self.total, 1)
            bar = "#" * filled + "." * (width - filled)
            sys.stderr.write(f"\r{label} [{bar}] {done}/{self.total}")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_s": round(statistics.median(ordered), 4),
        "p99_s": round(percentile(ordered, 0.99), 4),
        "max_s": round(ordered[-1], 4),
    }


def push_repeats(
    service: ExemptionService,
    arrivals: Arrivals,
    site_id: str,
    gateways: int,
    repeats: int,
    version: int,
    progress: Progress,
    starts: list[float],
    timeout: float,
    registry: Callable[[], RegistryService] | None = None,
) -> tuple[list[list[float]], list[float]]:
    """Each repeat: one change (a permit issued or revoked; with ``registry``, a resident's
    plate registered: every gateway takes the site's new plates), every gateway's time to hold
    the new version; and the change call's own duration (commit, sign, publish every one)."""
    per_repeat: list[list[float]] = []
    calls: list[float] = []
    permit_id: str | None = None
    for repeat in range(repeats):
        edits = registry() if registry is not None else None  # before the clock starts
        now = utcnow()
        began = time.monotonic()
        starts.append(began)
        if edits is not None:
            vehicle = VehicleIn(
                site_id=site_id,
                plate=f"沪Z{repeat:05d}",
                category=Category.RESIDENT,
                owner_name="bench",
                phone="13800000000",
            )
            edits.create(vehicle, "bench")
        elif permit_id is None:
            permit = PermitIn(
                site_id=site_id,
                plate=f"沪A{repeat:05d}",
                valid_from=now - timedelta(minutes=1),
                valid_to=now + timedelta(hours=2),
                reason="bench permit",
            )
            permit_id = service.issue_permit(permit, "bench").id
        else:
            service.revoke(permit_id, "bench", "bench revoke")
            permit_id = None
        calls.append(time.monotonic() - began)
        version += 1
        deadline = time.monotonic() + timeout
        while not arrivals.wait(arrivals.taken, version, gateways, 0.25):
            progress.show(f"push {repeat + 1}/{repeats}", len(arrivals.taken[version]))
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"version {version}: {len(arrivals.taken[version])}/{gateways} gateways "
                    f"after {timeout:g} s"
                )
        progress.show(f"push {repeat + 1}/{repeats}", gateways)
        per_repeat.append([at - began for at in arrivals.taken[version].values()])
    progress.finish()
    return per_repeat, calls


def baseline_repeats(
    broker: BrokerSettings,
    arrivals: Arrivals,
    gateway_ids: list[str],
    payload_size: int,
    repeats: int,
    progress: Progress,
) -> list[list[float]]:
    """The same count of same-size retained messages, published raw from one connection."""
    client = make_client(broker, "bench-raw-publisher")
    client.max_inflight_messages_set(0)  # unlimited, as RulePublisher's publishes go out
    client.connect(broker.host, broker.port)
    client.loop_start()
    per_repeat: list[list[float]] = []
    try:
        for repeat in range(repeats):
            seq = 1_000_000 + repeat
            payload = f"{seq:0{RAW_SEQ_DIGITS}d}".encode().ljust(payload_size, b" ")
            began = time.monotonic()
            infos: list[mqtt.MQTTMessageInfo] = [
                client.publish(raw_topic(gateway), payload, qos=1, retain=True)
                for gateway in gateway_ids
            ]
            for info in infos:
                info.wait_for_publish(30)
            while not arrivals.wait(arrivals.raw, seq, len(gateway_ids), 0.25):
                progress.show(f"baseline {repeat + 1}/{repeats}", len(arrivals.raw[seq]))
                if time.monotonic() - began > 120:
                    raise RuntimeError("raw messages did not all arrive in 120 s")
            progress.show(f"baseline {repeat + 1}/{repeats}", len(gateway_ids))
            per_repeat.append([at - began for at in arrivals.raw[seq].values()])
    finally:
        progress.finish()
        client.loop_stop()
        client.disconnect()
    return per_repeat


def seed_registry(sessions: SessionFactory, site_id: str, count: int) -> None:
    """``count`` residents' plates in the site's registry: every gateway's document carries
    them (dispatch.exemptions.with_registry), so they set the document's size."""
    now = utcnow()
    rows = [
        {
            "id": f"bench-{n}",
            "site_id": site_id,
            "plate": f"沪{'ABCDEFGHJK'[n // 100_000]}{n % 100_000:05d}",
            "category": "resident",
            "owner_name": "bench",
            "phone": "13800000000",
            "created_at": now,
            "created_by": "bench",
            "updated_at": now,
            "updated_by": "bench",
        }
        for n in range(count)
    ]
    with sessions() as session, session.begin():
        session.execute(insert(RegistryVehicle), rows)


def registry_for(
    change: str,
    sessions: SessionFactory,
    registry: SiteRegistry,
    service: ExemptionService,
    key: Ed25519PrivateKey,
    publish: Callable[[Sequence[SignedDocument]], None],
) -> Callable[[], RegistryService] | None:
    """What makes each repeat's registry edit, called before the repeat's clock starts: None
    for permit changes; the server's own service for ``registry``. For ``registry-cold`` the
    gateways first miss a change (a plate written straight into the table, no documents sent),
    and the edit comes from a service new each time (a process that sent no plates yet): its
    patch starts from plates no gateway holds, so every gateway takes the whole set from the
    site topic, as after a missed change."""
    if change == "registry":
        edits = RegistryService(sessions, registry, service)
        return lambda: edits
    if change != "registry-cold":
        return None
    missed = iter(range(1_000_000))
    site_id = registry.sites[0].id

    def cold() -> RegistryService:
        now, n = utcnow(), next(missed)
        with sessions() as session, session.begin():
            session.add(
                RegistryVehicle(
                    id=f"missed-{n}-{uuid.uuid4().hex[:8]}",
                    site_id=site_id,
                    plate=f"沪Y{n:05d}",
                    category="resident",
                    owner_name="bench",
                    phone="13800000000",
                    created_at=now,
                    created_by="bench",
                    updated_at=now,
                    updated_by="bench",
                )
            )
        fresh = ExemptionService(sessions, registry, key, on_change=publish)
        return RegistryService(sessions, registry, fresh)

    return cold


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    broker_process, port = start_broker(workdir)
    broker = BrokerSettings(host="127.0.0.1", port=port)
    url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
    migrate(url)
    engine = make_engine(url)
    site_id = rule_push_site(1, "push").id
    if args.registry_plates:
        seed_registry(make_session_factory(engine), site_id, args.registry_plates)
    site = rule_push_site(args.gateways, "push")
    private, public = generate_key_pair()
    publisher = RulePublisher(broker)
    gateways = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loadgen.rule_gateways",
            "--port",
            str(port),
            "--gateways",
            str(args.gateways),
            "--prefix",
            "push",
            "--public-key",
            public,
            "--folder",
            str(args.gateway_folder or workdir / "gateways"),
            "--workers",
            str(args.workers),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert gateways.stdout is not None
        arrivals = Arrivals(gateways.stdout)
        if not arrivals.ready.wait(180):
            raise RuntimeError("the simulated gateways did not all connect in 180 s")
        publisher.start()
        if not publisher.wait_connected(10):
            raise RuntimeError("the rule publisher did not connect")
        handed: list[float] = []  # when the documents, committed and signed, reach the publisher

        def publish(documents: Sequence[SignedDocument]) -> None:
            handed.append(time.monotonic())
            publisher.publish(documents)

        service_sessions = make_session_factory(engine)
        registry = SiteRegistry(sites=[site])
        service = ExemptionService(
            service_sessions,
            registry,
            private_key_from_text(private),
            on_change=publish,
        )
        first = service.publish_all()  # as the server's start: every gateway at version 1
        # The gateways' own documents set the raw baseline's size; the site's plates (schema 3)
        # go once, on the site topic, to the gateways that ask.
        plates_topic = site_plates_topic(site.id)
        documents = [d for d in first if d.topic != plates_topic]
        if not arrivals.wait(arrivals.taken, documents[0].version, args.gateways, args.timeout):
            raise RuntimeError("the first documents did not reach every gateway")
        size = max(len(d.payload) for d in documents)
        plates_bytes = max((len(d.payload) for d in first if d.topic == plates_topic), default=0)
        progress = Progress(args.gateways)
        handed.clear()
        starts: list[float] = []
        pushes, calls = push_repeats(
            service,
            arrivals,
            site.id,
            args.gateways,
            args.repeats,
            documents[0].version,
            progress,
            starts,
            args.timeout,
            registry_for(
                args.change,
                service_sessions,
                registry,
                service,
                private_key_from_text(private),
                publish,
            ),
        )
        prepared = [at - began for at, began in zip(handed, starts, strict=True)]
        baselines = baseline_repeats(
            broker, arrivals, [g.id for g in site.gateways], size, args.repeats, progress
        )
    finally:
        publisher.stop()
        if gateways.stdin is not None:
            gateways.stdin.close()
        try:
            gateways.wait(30)
        except subprocess.TimeoutExpired:
            gateways.kill()
        engine.dispose()
        broker_process.terminate()
        broker_process.wait(10)
    push_all = [t for repeat in pushes for t in repeat]
    base_all = [t for repeat in baselines for t in repeat]
    push, base = stats(push_all), stats(base_all)
    return {
        "gateways": args.gateways,
        "repeats": args.repeats,
        "database": url.split(":", 1)[0],
        "gateway_workers": args.workers,
        "registry_plates": args.registry_plates,
        "change": args.change,
        "document_bytes": size,
        "site_plates_bytes": plates_bytes,
        "push": push,
        "push_p99_per_repeat_s": [round(percentile(sorted(r), 0.99), 4) for r in pushes],
        "whole_sets_fetched_per_repeat": [
            arrivals.fetched[documents[0].version + n + 1] for n in range(args.repeats)
        ],
        "change_call_s": {
            "median": round(statistics.median(calls), 4),
            "max": round(max(calls), 4),
            "of_which_commit_and_sign_median": round(statistics.median(prepared), 4),
        },
        "baseline_raw": base,
        "baseline_p99_per_repeat_s": [round(percentile(sorted(r), 0.99), 4) for r in baselines],
        "p99_ratio_to_baseline": round(push["p99_s"] / base["p99_s"], 2),
        "target_p99_s": TARGET_P99_S,
        "target_met": push["p99_s"] <= TARGET_P99_S,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


@contextmanager
def database_for(backend: str, workdir: Path, given: str | None) -> Iterator[str]:
    """The database URL to run on: the one given, or a scratch one (bench.ingest_rate's: a
    SQLite file in ``workdir``, or a new PostgreSQL database dropped afterwards)."""
    if given:
        yield given
        return
    workdir.mkdir(parents=True, exist_ok=True)
    with scratch_database(backend, workdir) as url:
        yield url


def run_baseline(ref: str, args: argparse.Namespace, workdir: Path, url: str) -> dict[str, Any]:
    """This bench as it is in revision ``ref``, run from that tree (its server, gateways and
    bench); its JSON summary."""
    from bench.report_cpu import export_tree

    tree = export_tree(ref, workdir)
    command = [
        sys.executable,
        "-m",
        "bench.rule_push",
        "--gateways",
        str(args.gateways),
        "--repeats",
        str(args.repeats),
        "--database-url",
        url,
        "--timeout",
        str(args.timeout),
        "--workers",
        str(args.workers),
    ]
    if args.registry_plates:
        command += ["--registry-plates", str(args.registry_plates)]
    if args.change != "permit":
        # The tree at REF must know --change; before schema 3 every registry edit was "cold"
        # (every gateway took the whole set), and trees before it know only "registry".
        change = args.change if args.baseline_change_as_is else args.change.removesuffix("-cold")
        command += ["--change", change]
    done = subprocess.run(
        command,
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        stdout=subprocess.PIPE,
        check=False,
    )
    lines = done.stdout.decode().strip().splitlines()
    if not lines or not lines[-1].startswith("{"):
        raise RuntimeError(f"the baseline bench at {ref} gave no summary (exit {done.returncode})")
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--database-url", help="default: a scratch database (--backend)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--change",
        choices=["permit", "registry", "registry-cold"],
        default="permit",
        help="what each repeat changes: a permit (issued, then revoked), or the registry (one "
        "resident's plate registered: the site's plates change for every gateway); "
        "registry-cold: the same edit after a change the gateways missed (every gateway takes "
        "the whole set from the site topic)",
    )
    parser.add_argument(
        "--baseline", default="", help="a git revision whose bench runs first, in the same run"
    )
    parser.add_argument(
        "--baseline-change-as-is",
        action="store_true",
        help="give the baseline tree --change registry-cold as it is (it knows it), not registry",
    )
    parser.add_argument(
        "--gateway-folder", type=Path, help="where the simulated gateways store their documents"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds a push may take before it fails"
    )
    parser.add_argument(
        "--registry-plates",
        type=int,
        default=0,
        help="residents' plates in the site's registry (they ride in every gateway's document)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=64,
        help="threads the simulated gateways take documents on (1: one after another)",
    )
    args = parser.parse_args()
    if args.gateways < 1 or args.repeats < 1:
        parser.error("--gateways and --repeats must be at least 1")
    if args.baseline and args.database_url:
        parser.error("--baseline makes its own scratch databases: leave out --database-url")
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        baseline: dict[str, Any] | None = None
        if args.baseline:
            with database_for(args.backend, workdir / "baseline", None) as url:
                baseline = run_baseline(args.baseline, args, workdir, url)
            print(json.dumps({"baseline": args.baseline} | baseline), file=sys.stderr)
        with database_for(args.backend, workdir / "this", args.database_url) as url:
            args.database_url = url
            summary = run(args, workdir)
    if baseline is not None:
        summary = {
            "this_tree": summary,
            "baseline": {"ref": args.baseline} | baseline,
            "p99_ratio_to_baseline_ref": round(
                summary["push"]["p99_s"] / baseline["push"]["p99_s"], 3
            ),
            "target_met": summary["target_met"],
        }
    print(json.dumps(summary))
    return 0 if summary["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
