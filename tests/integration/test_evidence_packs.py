"""Packed evidence end to end, on real SQLite and PostgreSQL (and a real broker for the ack):
ingest packs the small images of a batch and files the large ones; the API, the store's
hash-only readers and path() serve both forms checked against their SHA-256; packs no row
names are removed; a pack write that fails holds the ack back until a retry made it durable.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine, delete, func, select

from civicwatch.config import CivicwatchConfig, ServerSettings
from civicwatch.server import build_server
from contracts.acks import AckOutcome, IngestAck
from contracts.events import EvidenceFrame, EvidenceLabel, Phase, ViolationEvent
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
from storage.evidence_pack_rows import collect_packs, compact_packs
from storage.evidence_packs import HEADER, PACK_FOLDER, PackedAt
from storage.evidence_store import EvidenceStore
from storage.tables import CaseEvidence, Event, Evidence
from tests.conftest import MosquittoProcess
from tests.factories import API_TOKENS, T0, EventFactory, make_registry, migrated_database


def _large_frame(seed: int) -> EvidenceFrame:
    """A panorama-sized JPEG (noise does not compress): over the 64 KiB packing bound."""
    image = Image.effect_noise((360, 240), 60 + seed).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    assert len(data) > 64 * 1024
    return EvidenceFrame(
        label=EvidenceLabel.DWELL_CROSSED,
        captured_at=T0 + timedelta(seconds=seed),
        sha256=hashlib.sha256(data).hexdigest(),
        width=360,
        height=240,
        data=data,
    )


def _with_large(event: ViolationEvent, seed: int) -> ViolationEvent:
    return event.model_copy(update={"evidence": [*event.evidence, _large_frame(seed)]})


@dataclass
class Rig:
    service: IngestService
    store: EvidenceStore
    engine: Engine


@pytest.fixture
def ingest(database_url: str, tmp_path: Path) -> Iterator[Rig]:
    """Ingest with the store its settings open (packing on by default), migrated database."""
    settings = IngestSettings(evidence_dir=tmp_path / "evidence")
    store = settings.open_evidence_store(database_url)
    with migrated_database(database_url) as (engine, sessions):
        service = IngestService(
            sessions,
            store,
            make_registry(),
            IngestMetrics(),
            Router(RoutingSettings()).dispatch_new_cases,
            settings=settings,
        )
        yield Rig(service, store, engine)
        store.close()


def _api(sessions: SessionFactory, store: EvidenceStore) -> TestClient:
    return TestClient(
        create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=store,
                settings=ApiSettings(tokens=list(API_TOKENS.values())),
                registry=make_registry(),
                metrics_registry=IngestMetrics().registry,
                workflow=Workflow(),
            )
        )
    )


def test_packed_and_filed_images_round_trip_through_the_api(
    ingest: Rig,
) -> None:
    service, store = ingest.service, ingest.store
    factory = EventFactory()
    events = [_with_large(factory.event(Phase.OPENED, frames=3), seed) for seed in range(2)]
    service.store_batch(events)
    frames = [frame for event in events for frame in event.evidence]
    with service.session_factory() as session:
        rows = {row.sha256: row for row in session.scalars(select(Evidence))}
    small = [frame for frame in frames if len(frame.data) <= 64 * 1024]
    large = [frame for frame in frames if len(frame.data) > 64 * 1024]
    assert (len(small), len(large)) == (6, 2)
    assert len({rows[frame.sha256].pack for frame in small}) == 1  # one pack, one batch
    assert all(rows[frame.sha256].pack is None for frame in large)
    files = sorted(path.name for path in store.root.rglob("*.jpg"))
    assert files == sorted(f"{frame.sha256}.jpg" for frame in large)
    token = API_TOKENS["dispatcher"].token.get_secret_value()
    with _api(service.session_factory, store) as client:
        for frame in frames:
            response = client.get(
                f"/api/v1/evidence/{frame.sha256}", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/jpeg"
            assert hashlib.sha256(response.content).hexdigest() == frame.sha256
            assert response.content == frame.data
    for frame in frames:  # the readers that have only the hash (training export, reports)
        assert store.read(frame.sha256) == frame.data
        assert store.path(frame.sha256).read_bytes() == frame.data


def test_a_damaged_pack_is_a_server_error_never_the_wrong_bytes(
    ingest: Rig,
) -> None:
    service, store = ingest.service, ingest.store
    event = EventFactory().event(Phase.OPENED)
    service.store(event)
    frame = event.evidence[0]
    with service.session_factory() as session:
        row = session.get(Evidence, frame.sha256)
        assert row is not None
        at = PackedAt.of(row.pack, row.pack_offset, row.size)
    assert at is not None
    pack = store.root / PACK_FOLDER / f"{at.pack}.pack"
    with pack.open("r+b") as handle:
        handle.seek(at.offset + 60)
        handle.write(b"\x00\x00\x00")
    token = API_TOKENS["dispatcher"].token.get_secret_value()
    with _api(service.session_factory, store) as client:
        response = client.get(
            f"/api/v1/evidence/{frame.sha256}?original=true",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 500
    assert "damaged" in response.text


def test_a_pack_is_removed_once_no_row_names_it(
    ingest: Rig,
) -> None:
    service, store = ingest.service, ingest.store
    factory = EventFactory()
    first, second = factory.event(Phase.OPENED), factory.event(Phase.OPENED)
    service.store(first)
    store.close()  # the next batch starts a new pack
    service.store(second)
    store.close()
    packs = sorted((store.root / PACK_FOLDER).glob("*.pack"))
    assert len(packs) == 2
    engine = ingest.engine
    assert collect_packs(engine, store.root, grace_s=0) == []  # both named by rows
    gone = [frame.sha256 for frame in first.evidence]
    with service.session_factory.begin() as session:  # retention deletes the first event's
        session.execute(delete(CaseEvidence).where(CaseEvidence.sha256.in_(gone)))
        session.execute(delete(Evidence).where(Evidence.sha256.in_(gone)))
    assert collect_packs(engine, store.root) == []  # written within the grace period
    assert collect_packs(engine, store.root, in_use={packs[0].stem}, grace_s=0) == []
    assert collect_packs(engine, store.root, grace_s=0) == [packs[0].stem]
    assert not packs[0].exists()
    for frame in second.evidence:
        assert store.read(frame.sha256) == frame.data
    with pytest.raises(FileNotFoundError):
        store.read(gone[0])


def test_the_ack_waits_until_a_failed_pack_write_was_retried_and_made_durable(
    database_url: str, tmp_path: Path, mosquitto: MosquittoProcess
) -> None:
    """Broker -> the server's ingest: while the disk refuses the pack, the event is neither
    stored nor acked; once a retry has written and synced it, the ack comes, and its images
    and the earlier ones read back."""
    evidence_dir = tmp_path / "evidence"
    with migrated_database(database_url):
        pass
    config = CivicwatchConfig(
        sites=make_registry().sites,
        broker=mosquitto.settings,
        server=ServerSettings(
            database_url=database_url,
            ingest=IngestSettings(
                client_id=f"ingest-packs-{uuid4().hex[:8]}", evidence_dir=evidence_dir
            ),
        ),
    )
    server = build_server(config)
    store = server.evidence_store
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
        first = factory.event(Phase.OPENED)
        edge.publish(factory.topic, first.to_wire(), qos=1).wait_for_publish(15)
        assert acks.get(timeout=15).outcome is AckOutcome.STORED
        (pack,) = (evidence_dir / PACK_FOLDER).glob("*.pack")
        (appender,) = store._packs
        readonly = os.open(pack, os.O_RDONLY)
        os.dup2(readonly, appender.fd)  # the disk refuses the next append to this pack
        os.close(readonly)
        (evidence_dir / PACK_FOLDER).rename(evidence_dir / "packs-away")
        (evidence_dir / PACK_FOLDER).write_bytes(b"")  # and any new pack (EEXIST on mkdir)

        second = factory.event(Phase.OPENED)
        edge.publish(factory.topic, second.to_wire(), qos=1).wait_for_publish(15)
        with pytest.raises(queue.Empty):
            acks.get(timeout=3)
        with server.session_factory() as session:
            assert session.get(Event, second.message_id) is None
            assert session.scalar(select(func.count()).select_from(Evidence)) == 2

        (evidence_dir / PACK_FOLDER).unlink()
        (evidence_dir / "packs-away").rename(evidence_dir / PACK_FOLDER)
        ack = acks.get(timeout=40)  # the consumer's backoff: 0.5, 1, 2, 4 ... s
        assert (ack.message_id, ack.outcome) == (second.message_id, AckOutcome.STORED)
        for frame in [*first.evidence, *second.evidence]:  # durable before the ack
            assert store.read(frame.sha256) == frame.data
        with server.session_factory() as session:
            packs = {
                session.get(Evidence, frame.sha256).pack  # type: ignore[union-attr]
                for frame in second.evidence
            }
        assert packs != {pack.stem}  # the retry wrote a new pack
    finally:
        edge.disconnect()
        edge.loop_stop()
        server.stop()
        store.close()


def test_compaction_moves_the_live_records_of_a_mostly_dead_pack(ingest: Rig) -> None:
    service, store = ingest.service, ingest.store
    factory = EventFactory()
    events = [factory.event(Phase.OPENED) for _ in range(3)]
    service.store_batch(events)  # one batch: one pack of six records
    store.close()
    (old,) = (store.root / PACK_FOLDER).glob("*.pack")
    gone = [frame.sha256 for event in events[:2] for frame in event.evidence]
    with service.session_factory.begin() as session:
        session.execute(delete(CaseEvidence).where(CaseEvidence.sha256.in_(gone)))
        session.execute(delete(Evidence).where(Evidence.sha256.in_(gone)))
    assert compact_packs(ingest.engine, store.root, in_use={old.stem}) == {}
    assert compact_packs(ingest.engine, store.root, max_live_share=0.2) == {}  # 1/3 live
    assert compact_packs(ingest.engine, store.root) == {old.stem: 2}
    with service.session_factory() as session:
        places = {
            row.sha256: (row.pack, row.pack_offset)
            for row in session.scalars(select(Evidence).where(Evidence.pack.is_not(None)))
        }
    (new,) = {pack for pack, _offset in places.values()}
    assert new != old.stem
    first, second = events[2].evidence
    assert places == {  # in the old pack's order, one after the other from the start
        first.sha256: (new, 0),
        second.sha256: (new, HEADER.size + len(first.data)),
    }
    assert collect_packs(ingest.engine, store.root) == []  # a reader may still hold the old place
    assert collect_packs(ingest.engine, store.root, grace_s=0) == [old.stem]
    token = API_TOKENS["dispatcher"].token.get_secret_value()
    with _api(service.session_factory, store) as client:
        for frame in events[2].evidence:
            response = client.get(
                f"/api/v1/evidence/{frame.sha256}", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 200
            assert response.content == frame.data
    assert compact_packs(ingest.engine, store.root) == {}  # the new pack is all live
