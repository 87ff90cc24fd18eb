"""Both evidence backends against the real thing: a real folder, a real PostgreSQL.

The same tests run on each: put and read back, a hash mismatch refused with nothing stored,
an idempotent put, concurrent puts of one hash, ingest's batch writes (durable before sync()
returns), and an image served over HTTP with its type read from the bytes.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from civicwatch.config import CivicwatchConfig, ServerSettings
from civicwatch.server import build_server
from contracts.acks import AckOutcome, IngestAck
from contracts.events import Phase
from contracts.mqtt import make_client
from contracts.topics import ack_topic
from dispatch.config import ApiSettings, RoutingSettings
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.routing import Router
from dispatch.workflow import Workflow
from ingest.config import IngestSettings
from ingest.metrics import IngestMetrics
from ingest.store import IngestService
from storage.database import SessionFactory
from storage.evidence_pg import TABLE, PostgresEvidenceStore
from storage.evidence_store import EvidenceError, EvidenceStore
from tests.conftest import MosquittoProcess, _postgres_scratch_database
from tests.factories import API_TOKENS, EventFactory, jpeg_bytes, make_registry, migrated_database


@dataclass
class Backend:
    name: str
    store: EvidenceStore
    sessions: SessionFactory


@pytest.fixture(params=["local", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The store as the server opens it from its settings, over a migrated database."""
    if request.param == "local":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path / 'civicwatch.db'}"])
    else:
        urls = _postgres_scratch_database()
    url = next(urls)
    try:
        settings = IngestSettings(
            evidence_dir=tmp_path / "evidence", evidence_backend=request.param
        )
        store = settings.open_evidence_store(url)
        with migrated_database(url) as (_engine, sessions):
            yield Backend(request.param, store, sessions)
        store.close()
        if isinstance(store, PostgresEvidenceStore):
            store.engine.dispose()
    finally:
        next(urls, None)  # drops the scratch database


def _image(seed: int) -> tuple[str, bytes]:
    data = jpeg_bytes(seed)
    return hashlib.sha256(data).hexdigest(), data


def test_the_setting_picks_the_backend(backend: Backend) -> None:
    expected = PostgresEvidenceStore if backend.name == "postgresql" else EvidenceStore
    assert type(backend.store) is expected


def test_put_then_read_back(backend: Backend) -> None:
    sha, data = _image(1)
    assert not backend.store.exists(sha)
    backend.store.put(data, sha)
    assert backend.store.exists(sha)
    assert backend.store.read(sha) == data
    assert backend.store.path(sha).read_bytes() == data  # for code that needs a file


def test_a_hash_mismatch_is_refused_and_nothing_is_stored(backend: Backend) -> None:
    sha, _data = _image(2)
    with pytest.raises(EvidenceError, match="mismatch"):
        backend.store.put(jpeg_bytes(3), sha)
    assert not backend.store.exists(sha)
    with pytest.raises(FileNotFoundError):
        backend.store.read(sha)


def test_a_name_that_is_not_a_hash_is_refused(backend: Backend) -> None:
    with pytest.raises(EvidenceError, match="SHA-256"):
        backend.store.put(b"x", "../../etc/passwd")
    with pytest.raises(EvidenceError, match="SHA-256"):
        backend.store.read("'; DROP TABLE evidence; --")


def test_put_is_idempotent(backend: Backend) -> None:
    sha, data = _image(4)
    first = backend.store.put(data, sha)
    assert backend.store.put(data, sha) == first
    assert backend.store.read(sha) == data
    assert _copies(backend, sha) == 1


def test_concurrent_puts_of_one_hash_store_it_once(backend: Backend) -> None:
    sha, data = _image(5)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def put() -> None:
        start.wait()
        try:
            backend.store.put(data, sha)
        except BaseException as exc:  # collected: a thread's exception would vanish
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert backend.store.read(sha) == data
    assert _copies(backend, sha) == 1


def test_a_damaged_copy_is_never_read_as_evidence(backend: Backend) -> None:
    sha, data = _image(6)
    backend.store.put(data, sha)
    if isinstance(backend.store, PostgresEvidenceStore):
        with backend.store.engine.begin() as conn:
            conn.execute(
                text(f"UPDATE {TABLE} SET data = :data WHERE sha256 = :sha"),
                {"data": jpeg_bytes(7), "sha": sha},
            )
    else:
        backend.store.path(sha).write_bytes(jpeg_bytes(7))
    with pytest.raises(EvidenceError, match="damaged"):
        backend.store.read(sha)


def test_batch_writes_are_readable_once_synced(backend: Backend) -> None:
    items = [_image(seed) for seed in range(10, 20)]
    assert backend.store.write_unsynced(items) == len(items)
    backend.store.sync()
    assert [backend.store.read(sha) for sha, _data in items] == [data for _sha, data in items]
    backend.store.sync()  # nothing pending: a no-op


def test_a_name_that_is_not_a_hash_is_refused_in_a_batch_too(backend: Backend) -> None:
    sha, data = _image(20)
    with pytest.raises(EvidenceError, match="SHA-256"):
        backend.store.write_unsynced([(sha.upper(), data)])


def test_a_failed_batch_write_is_raised_by_sync_and_leaves_nothing(backend: Backend) -> None:
    items = [_image(seed) for seed in (21, 22)]
    if isinstance(backend.store, PostgresEvidenceStore):
        with backend.store.engine.begin() as conn:  # the table gone: the insert fails
            conn.execute(text(f"ALTER TABLE {TABLE} RENAME TO blob_away"))
        backend.store.write_unsynced(items)
        with pytest.raises(Exception, match="blob"):
            backend.store.sync()
        with backend.store.engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {TABLE.split('.')[0]}.blob_away RENAME TO blob"))
    else:
        blocked = backend.store.path(items[0][0]).parent  # a file where its folder goes
        blocked.parent.mkdir(parents=True, exist_ok=True)
        blocked.write_bytes(b"not a folder")
        backend.store.write_unsynced(items)
        with pytest.raises(FileExistsError):
            backend.store.sync()
    assert not backend.store.exists(items[0][0])
    backend.store.sync()  # the failure was reported once; nothing is pending now


def test_ingest_files_evidence_and_the_api_serves_it_typed_from_the_bytes(
    backend: Backend,
) -> None:
    registry = make_registry()
    metrics = IngestMetrics()
    service = IngestService(
        backend.sessions,
        backend.store,
        registry,
        metrics,
        Router(RoutingSettings()).dispatch_new_cases,
    )
    event = EventFactory().event(Phase.OPENED)
    service.store(event)
    app = create_app(
        ApiContext(
            session_factory=backend.sessions,
            evidence_store=backend.store,
            settings=ApiSettings(tokens=list(API_TOKENS.values())),
            registry=registry,
            metrics_registry=metrics.registry,
            workflow=Workflow(),
        )
    )
    token = API_TOKENS["dispatcher"].token.get_secret_value()
    with TestClient(app) as client:
        for frame in event.evidence:
            response = client.get(
                f"/api/v1/evidence/{frame.sha256}", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/jpeg"
            assert response.content == frame.data
            assert hashlib.sha256(response.content).hexdigest() == frame.sha256
        missing = hashlib.sha256(b"never stored").hexdigest()
        response = client.get(
            f"/api/v1/evidence/{missing}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 404


def _copies(backend: Backend, sha: str) -> int:
    if isinstance(backend.store, PostgresEvidenceStore):
        with backend.store.engine.connect() as conn:
            count = conn.scalar(
                text(f"SELECT count(*) FROM {TABLE} WHERE sha256 = :sha"), {"sha": sha}
            )
        return int(count or 0)
    return sum(1 for path in backend.store.root.rglob(f"{sha}*") if path.is_file())


@pytest.mark.postgres
def test_a_server_with_the_postgresql_backend_acks_an_event_once_its_images_are_in_the_table(
    tmp_path: Path, mosquitto: MosquittoProcess
) -> None:
    """The whole path: broker -> the server's ingest -> images in PostgreSQL, none on disk,
    and the ack only after them."""
    urls = _postgres_scratch_database()
    url = next(urls)
    try:
        config = CivicwatchConfig(
            sites=make_registry().sites,
            broker=mosquitto.settings,
            server=ServerSettings(
                database_url=url,
                ingest=IngestSettings(
                    client_id=f"ingest-evidence-{uuid4().hex[:8]}",
                    evidence_dir=tmp_path / "evidence",
                    evidence_backend="postgresql",
                ),
            ),
        )
        server = build_server(config)
        store = server.evidence_store
        assert isinstance(store, PostgresEvidenceStore)
        server.start()
        acks: queue.Queue[IngestAck] = queue.Queue()
        edge = make_client(mosquitto.settings, f"edge-{uuid4().hex[:8]}")
        edge.on_message = lambda _c, _u, m: acks.put(IngestAck.model_validate_json(m.payload))
        edge.connect(mosquitto.settings.host, mosquitto.settings.port)
        edge.loop_start()
        try:
            assert server.consumer.ready.wait(15)
            factory = EventFactory()
            edge.subscribe(ack_topic(factory.site_id, factory.gateway_id), qos=1)
            time.sleep(0.5)
            event = factory.event(Phase.OPENED)
            edge.publish(factory.topic, event.to_wire(), qos=1).wait_for_publish(15)
            ack = acks.get(timeout=15)
            assert (ack.message_id, ack.outcome) == (event.message_id, AckOutcome.STORED)
            for frame in event.evidence:  # committed before the ack was sent
                assert store.read(frame.sha256) == frame.data
        finally:
            edge.disconnect()
            edge.loop_stop()
            server.stop()
        assert not [path for path in (tmp_path / "evidence").rglob("*") if path.is_file()]
        store.close()
        store.engine.dispose()
    finally:
        next(urls, None)
