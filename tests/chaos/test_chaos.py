"""Every violation the edge committed becomes exactly one stored record, whatever crashes.

Each case runs 3 times against a private Mosquitto, `civicwatch server` (SQLite) and an edge
(`civicwatch loadgen --outbox-dir`: the real outbox and publisher, synthetic events), each its
own process. A run ends with: published ids == stored ids, 0 lost, 0 violations without exactly
one case, and the time to recover. bench/chaos.py runs the same cases 20 times each.

On PostgreSQL (a scratch database on the shared server) the cases whose outcome depends on the
database run once each: a server killed mid-transaction (server_kill) and an edge replaying
what ingest already stored (edge_kill: duplicates meet the unique keys). The broker's cases
and a full disk (the server's own files) do not change with the database, so they stay on
SQLite only, which keeps the suite's time in check. Each database starts as a copy of the one the
real migrations brought to head once per test process (tests/factories.py), so the first server
start does not migrate it again; the migrations are proven in tests/integration.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import pytest

from tests.chaos.conftest import RESULTS
from tests.chaos.rig import CASES, ChaosRig, RunResult, Timing
from tests.factories import postgres_copy_of_migrated_template, start_from_migrated_template

pytestmark = pytest.mark.chaos

CI_TIMING = Timing(rate=30.0, stream_s=6.0, fault_after_s=1.5, outage_s=2.0, long_outage_s=8.0)
POSTGRES_CASES = ("server_kill", "edge_kill")


@pytest.fixture(scope="module", params=CASES)
def case_rig(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, ChaosRig]]:
    """One broker, server and SQLite database for the runs of one case."""
    case: str = request.param
    rig = ChaosRig(tmp_path_factory.mktemp(case), CI_TIMING)
    start_from_migrated_template(rig.database_url)
    try:
        rig.start()  # inside: a server that never became ready is stopped too, not left running
        yield case, rig
    finally:
        rig.close()


@pytest.fixture(params=POSTGRES_CASES)
def postgres_case_rig(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, ChaosRig]]:
    """One broker, server and scratch PostgreSQL database for one run of one case."""
    case: str = request.param
    with contextlib.contextmanager(postgres_copy_of_migrated_template)() as database_url:
        rig = ChaosRig(tmp_path_factory.mktemp(f"pg-{case}"), CI_TIMING, database_url=database_url)
        try:
            rig.start()
            yield case, rig
        finally:
            rig.close()


def check_run(rig: ChaosRig, result: RunResult) -> None:
    logs = f"server log:\n{rig.deployment.server_log()}\nedge log:\n"
    logs += rig.edge_log(rig.workdir / f"{result.case}-{result.run}")

    assert result.published > 0
    assert result.lost == 0, f"{result}\n{logs}"
    assert result.stored == result.published, f"{result}\n{logs}"
    assert result.duplicate_cases == 0, f"{result}\n{logs}"
    assert math.isfinite(result.recovery_s), f"never caught up: {result}\n{logs}"
    assert result.edge_exit == 0, f"the edge did not settle its outbox: {result}\n{logs}"
    assert result.backlog > 0, f"the fault held nothing back: {result}"
    if result.case == "broker_outage":
        # What waited out the outage in the outbox reached ingest marked as sent late.
        assert result.historical > 0, result


@pytest.mark.parametrize("run", [1, 2, 3])
def test_nothing_lost_nothing_doubled(
    case_rig: tuple[str, ChaosRig], run: int, request: pytest.FixtureRequest
) -> None:
    case, rig = case_rig
    result = rig.run_case(case, run)
    request.config.stash[RESULTS].append(result)
    check_run(rig, result)


@pytest.mark.postgres
def test_nothing_lost_nothing_doubled_on_postgresql(
    postgres_case_rig: tuple[str, ChaosRig], request: pytest.FixtureRequest
) -> None:
    case, rig = postgres_case_rig
    result = rig.run_case(case, 1)
    request.config.stash[RESULTS].append(result)
    check_run(rig, result)
