"""Chaos on real processes: a private Mosquitto, `civicwatch server` and an edge, each killable.

The edge is `civicwatch loadgen --outbox-dir`: the real edge outbox and publisher fed with
synthetic events, so hundreds of events flow in seconds. Its outboxes keep a ledger of every
message they accepted (loadgen.ledger), which is what "published" means here: what the edge
committed to deliver. Each run ends by comparing that ledger with the database.

Used by tests/chaos (3 runs a case) and bench/chaos.py (20 runs a case, a 10-minute outage).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from uuid import UUID

from sqlalchemy import func, make_url, select

from loadgen.ledger import read_ledger
from loadgen.measure import stored_message_ids
from loadgen.registry import simulated_registry, write_config
from storage.database import make_engine
from storage.tables import Case, CaseViolation, Event
from tests.conftest import MosquittoProcess
from tests.e2e.harness import CIVICWATCH, Deployment

CASES = ("broker_kill", "server_kill", "edge_kill", "broker_outage", "database_full")
PREFIX = "chaos"


class KillableMosquitto(MosquittoProcess):
    def kill(self) -> None:
        """SIGKILL: nothing is saved that the last autosave did not save."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@dataclass(frozen=True)
class RunResult:
    case: str
    run: int
    published: int  # ids the edge's outboxes accepted
    stored: int  # of those, in the events table
    lost: int
    duplicate_cases: int  # violations without exactly one case
    historical: int  # stored events marked as sent late
    backlog: int  # accepted by the edge but not yet stored when the part came back
    recovery_s: float  # from bringing the part back to storing all it held back
    edge_exit: int
    database: str = "sqlite"  # the backend: sqlite or postgresql

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class Timing:
    rate: float = 30.0  # events a second from the edge
    stream_s: float = 6.0  # seconds the edge publishes
    fault_after_s: float = 2.0  # into the stream
    outage_s: float = 2.0  # how long the part stays down
    long_outage_s: float = 8.0  # broker_outage: the edge keeps detecting all along
    resend_after_s: float = 2.0  # the edge resends what ingest has not confirmed after this
    settle_timeout_s: float = 120.0


class ChaosRig:
    """One broker, one server and one database shared by the runs of a case.

    The database is a SQLite file in ``workdir`` unless ``database_url`` names another (the
    tests pass a scratch PostgreSQL database).
    """

    def __init__(
        self,
        workdir: Path,
        timing: Timing,
        cameras: int = 8,
        database_url: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.timing = timing
        self.cameras = cameras
        self.broker = KillableMosquitto(workdir / "broker")
        sites = workdir / "sites.yaml"
        write_config(sites, simulated_registry(cameras, 4, PREFIX), None, None)
        self.database_url = database_url or f"sqlite:///{workdir / 'civicwatch.db'}"
        self.deployment = Deployment(
            workdir=workdir,
            site_config=str(sites),  # absolute: the harness joins it onto its configs folder
            broker_port=self.broker.port,
            database_url=self.database_url,
        )
        self._engine = make_engine(self.database_url)

    def start(self) -> None:
        self.broker.start()
        self.deployment.start_server()

    def close(self) -> None:
        self.resume_server()
        self.free_disk()
        self.deployment.stop_server()
        self.broker.stop()
        self._engine.dispose()

    # --- the parts --------------------------------------------------------------------------

    def start_edge(self, run_dir: Path, duration_s: float, seed: int) -> subprocess.Popen[bytes]:
        run_dir.mkdir(parents=True, exist_ok=True)
        command = [
            *CIVICWATCH,
            "loadgen",
            "--config",
            str(self.deployment.config_path),
            "--cameras",
            str(self.cameras),
            "--cameras-per-gateway",
            "4",
            "--prefix",
            PREFIX,
            "--rate",
            str(self.timing.rate),
            "--duration",
            str(duration_s),
            "--outbox-dir",
            str(run_dir),
            "--resend-after",
            str(self.timing.resend_after_s),
            "--confirm-timeout",
            str(self.timing.settle_timeout_s),
            "--plate-share",
            "0",  # no plate merges: each violation must be exactly one case
            "--seed",
            str(seed),
        ]
        with (run_dir / "edge.log").open("ab") as log, (run_dir / "edge.out").open("ab") as out:
            return subprocess.Popen(command, stdout=out, stderr=log, env=self.deployment.env)

    def kill_server(self) -> None:
        server = self.deployment.server
        assert server is not None, "the server is not running"
        server.kill()
        server.wait(timeout=10)
        self.deployment.server = None

    def pause_server(self) -> None:
        """SIGSTOP: ingest answers nothing for a while, as when it is overloaded."""
        os.kill(self._server_pid(), signal.SIGSTOP)

    def resume_server(self) -> None:
        if self.deployment.server is not None and self.deployment.server.poll() is None:
            os.kill(self._server_pid(), signal.SIGCONT)

    def fill_disk(self) -> None:
        """The server's disk is full: every write past the first byte of a file fails (EFBIG).

        RLIMIT_FSIZE on the running server, set from outside: an injected write failure at the
        OS level, which needs no privileges and leaves the product's code untouched. Python
        ignores SIGXFSZ, so writes fail with an error instead of killing the process.
        """
        resource.prlimit(self._server_pid(), resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))

    def free_disk(self) -> None:
        if self.deployment.server is not None and self.deployment.server.poll() is None:
            unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
            resource.prlimit(self._server_pid(), resource.RLIMIT_FSIZE, unlimited)

    def _server_pid(self) -> int:
        assert self.deployment.server is not None, "the server is not running"
        return self.deployment.server.pid

    # --- what the database holds ------------------------------------------------------------

    def stored(self, message_ids: Iterable[UUID]) -> set[UUID]:
        return stored_message_ids(self.database_url, message_ids)

    def wait_until_stored(self, message_ids: set[UUID], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.stored(message_ids) >= message_ids:
                return True
            time.sleep(0.2)
        return False

    def duplicate_cases(self, violation_ids: set[UUID]) -> int:
        """Violations of this run that do not belong to exactly one case.

        A violation belongs to the case it opened and to the case it was merged into (a
        restarted edge's new violation on a spot still open continues that case).
        """
        cases_of: dict[UUID, set[int]] = {violation: set() for violation in violation_ids}
        with self._engine.connect() as connection:
            opened = connection.execute(
                select(Case.violation_id, Case.id).where(Case.violation_id.in_(violation_ids))
            )
            linked = connection.execute(
                select(CaseViolation.violation_id, CaseViolation.case_id).where(
                    CaseViolation.violation_id.in_(violation_ids)
                )
            )
            for violation, case_id in [*opened, *linked]:
                cases_of[violation].add(case_id)
        return sum(1 for cases in cases_of.values() if len(cases) != 1)

    def historical(self, message_ids: set[UUID]) -> int:
        with self._engine.connect() as connection:
            count = connection.scalar(
                select(func.count())
                .select_from(Event)
                .where(Event.message_id.in_(message_ids), Event.historical.is_(True))
            )
        return int(count or 0)

    # --- one run ----------------------------------------------------------------------------

    def run_case(self, case: str, run: int) -> RunResult:
        """Stream, break one part mid-stream, bring it back, and account for every message."""
        timing = self.timing
        outage_s = timing.long_outage_s if case == "broker_outage" else timing.outage_s
        run_dir = self.workdir / f"{case}-{run}"
        stream_s = max(timing.stream_s, timing.fault_after_s + outage_s + 2)
        edge = self.start_edge(run_dir, stream_s, seed=run)
        self.wait_until_flowing(run_dir, edge)
        time.sleep(timing.fault_after_s)

        def kill_edge_holding_unconfirmed() -> None:
            # Ingest is slow to answer, so the edge dies with events it sent but never saw
            # confirmed: its outbox must replay them, and ingest must take them once.
            self.pause_server()
            time.sleep(1.0)
            edge.kill()

        faults: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
            "broker_kill": (self.broker.kill, self.broker.start),
            "broker_outage": (self.broker.kill, self.broker.start),
            "server_kill": (self.kill_server, self.deployment.start_server),
            "database_full": (self.fill_disk, self.free_disk),
            "edge_kill": (kill_edge_holding_unconfirmed, self.resume_server),
        }
        fault, recover = faults[case]
        fault()
        time.sleep(outage_s)
        if case == "database_full":
            assert self.deployment.server is not None
            assert self.deployment.server.poll() is None, "a full disk killed the server"
        held_back = {entry.message_id for entry in read_ledger(run_dir)}
        backlog = len(held_back - self.stored(held_back))
        restarted = time.monotonic()
        recover()
        if case == "edge_kill":
            edge.wait(timeout=10)
            # The restarted edge replays its outbox and keeps detecting for a while.
            edge = self.start_edge(run_dir, timing.fault_after_s, seed=run + 1000)
        recovered = self.wait_until_stored(held_back, timing.settle_timeout_s)
        recovery_s = time.monotonic() - restarted if recovered else float("inf")
        edge_exit = edge.wait(timeout=timing.settle_timeout_s + 60)
        ledger = read_ledger(run_dir)
        published = {entry.message_id for entry in ledger}
        stored = self.stored(published)
        return RunResult(
            case=case,
            run=run,
            published=len(published),
            stored=len(stored),
            lost=len(published - stored),
            duplicate_cases=self.duplicate_cases({entry.violation_id for entry in ledger}),
            historical=self.historical(published),
            backlog=backlog,
            recovery_s=round(recovery_s, 2),
            edge_exit=edge_exit,
            database=make_url(self.database_url).get_backend_name(),
        )

    def wait_until_flowing(self, run_dir: Path, edge: subprocess.Popen[bytes]) -> None:
        """Break things only once events go all the way through."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if edge.poll() is not None:
                raise RuntimeError(f"the edge exited early: {self.edge_log(run_dir)}")
            published = {entry.message_id for entry in read_ledger(run_dir)}
            if published and self.stored(published):
                return
            time.sleep(0.2)
        raise TimeoutError(f"no event reached the database: {self.deployment.server_log()}")

    @staticmethod
    def edge_log(run_dir: Path) -> str:
        return (run_dir / "edge.log").read_text(errors="replace")[-3000:]
