"""What each role builds, and the leader locks themselves (storage.leader) on real databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from civicwatch.commands.roles import with_ingest_instance
from civicwatch.config import CivicwatchConfig, ServerSettings
from civicwatch.mqtt_identity import resolve_ingest
from civicwatch.server import Role, Server, build_server
from contracts.rule_signing import generate_key_pair
from dispatch.config import SlaSettings
from dispatch.exemption_settings import KEY_ENV_VAR as RULES_KEY_ENV_VAR
from ingest.config import IngestSettings
from storage.leader import ADVISORY_KEY, FileLeader, PostgresLeader, make_leader
from tests.conftest import _postgres_scratch_database
from tests.factories import make_registry


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_scratch_database()


def config_for(tmp_path: Path, database_url: str | None = None) -> CivicwatchConfig:
    return CivicwatchConfig(
        sites=make_registry().sites,
        server=ServerSettings(
            database_url=database_url or f"sqlite:///{tmp_path / 'civicwatch.db'}",
            ingest=IngestSettings(evidence_dir=tmp_path / "evidence"),
            sla=SlaSettings(sweep_seconds=5),
        ),
    )


def job_ids(server: Server) -> set[str]:
    return {job.id for job in server.scheduler.get_jobs()}


def test_each_role_builds_only_what_it_needs(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    api = build_server(config, {Role.API})
    ingest = build_server(config, {Role.INGEST})
    sweep = build_server(config, {Role.SWEEP})
    everything = build_server(config)
    try:
        assert (api.consumers, job_ids(api), api.leadership) == ([], set(), None)
        assert api.notifications is None
        assert api.sweep_publisher is None
        assert len(ingest.consumers) == 1
        assert job_ids(ingest) == set()
        assert ingest.leadership is None
        assert ingest.notifications is None
        assert sweep.consumers == []
        assert sweep.sweep_publisher is not None
        assert {"sla-sweep", "notifications-send", "sweep-leader"} <= job_ids(sweep)
        assert sweep.notifications is not None
        assert sweep.leadership is not None
        assert len(everything.consumers) == 1
        assert everything.sweep_publisher is None
        assert job_ids(everything) == job_ids(sweep)
        with TestClient(api.app) as client:
            assert client.get("/api/v1/cases").status_code == 401  # there, and asks who
        with TestClient(sweep.app) as client:
            assert client.get("/api/v1/cases").status_code == 404  # no API in a sweep

        # A sweep's own health: its role, pid and leadership (none yet: it was not started).
        with TestClient(sweep.app) as client:
            health = client.get("/healthz").json()
            assert health["roles"] == ["sweep"]
            assert health["leader"] is False
            assert "civicwatch_sweep_leader 0.0" in client.get("/metrics").text
            assert client.get("/readyz").status_code == 200  # no consumer to wait for
        with TestClient(ingest.app) as client:
            not_ready = client.get("/readyz")  # never started: not connected to any broker
            assert not_ready.status_code == 503
            assert "not connected to the broker" in not_ready.json()["detail"]
            assert "leader" not in client.get("/healthz").json()
    finally:
        for server in (api, ingest, sweep, everything):
            server.stop()


def test_the_file_lock_lets_one_process_lead_at_a_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'civicwatch.db'}"
    first, second = make_leader(url), make_leader(url)
    assert isinstance(first, FileLeader)
    assert first.path == tmp_path / "civicwatch.db.sweep-leader.lock"
    assert first.try_lead()
    assert first.try_lead()
    assert not second.try_lead()
    assert not second.leading
    first.release()
    assert second.try_lead()
    assert second.still_leading()
    assert not first.try_lead()
    second.release()
    assert make_leader("sqlite://").try_lead()  # in memory: one process, which leads


@pytest.mark.postgres
def test_a_leader_whose_connection_drops_stops_leading(postgres_url: str) -> None:
    first, second = make_leader(postgres_url), make_leader(postgres_url)
    assert isinstance(first, PostgresLeader)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        assert first.try_lead()
        assert first.still_leading()
        assert not second.try_lead()
        with admin.connect() as connection:
            # The database ends the leader's session (as a crash or a cut network would).
            # Only this database's holder of this key: other tests share the server.
            ended = connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
                    "AND classid::bigint = :high AND objid::bigint = :low AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"high": (ADVISORY_KEY >> 32) & 0xFFFFFFFF, "low": ADVISORY_KEY & 0xFFFFFFFF},
            ).scalars()
            assert list(ended) == [True]
        assert not first.still_leading()
        assert not first.leading
        assert second.try_lead()
        assert not first.try_lead()
        second.release()
        assert first.try_lead()
    finally:
        first.release()
        second.release()
        admin.dispose()


def test_ingest_instances_keep_stable_ids_of_their_own(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    plain = resolve_ingest(config.server.ingest, config.server.database_url)
    ids = []
    for instance in ("1", "2", "1"):
        ingest = with_ingest_instance(config, instance).server.ingest
        resolved = resolve_ingest(ingest, config.server.database_url)
        assert resolved.shared_group == plain.shared_group  # one deployment, one group
        ids.append(resolved.client_id)
    assert ids[0] == ids[2] != ids[1]
    assert ids[0] == f"{plain.client_id}-1"


def test_only_the_sweep_publishes_every_gateways_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the signing key set, every role that can change rules builds the exemptions, but
    only the sweep (its leader) republishes all documents: not each API worker at its start."""
    private, _public = generate_key_pair()
    monkeypatch.setenv(RULES_KEY_ENV_VAR, private)
    config = config_for(tmp_path)
    api = build_server(config, {Role.API})
    sweep = build_server(config, {Role.SWEEP})
    try:
        assert api.exemptions is not None
        assert sweep.exemptions is not None
        assert "rules-publish" not in job_ids(api)
        assert "rules-publish" in job_ids(sweep)
    finally:
        for server in (api, sweep):
            server.stop()
