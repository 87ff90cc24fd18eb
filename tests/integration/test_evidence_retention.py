"""The evidence retention period (storage/evidence_retention.py) on real SQLite and PostgreSQL,
with the local folder store (packs and files) and the PostgreSQL table store: a case closed for
longer than the period loses its evidence (rows, bytes, residents' photos) with one audit entry,
an open case and one closed recently keep theirs, packs are compacted, a crash between the rows
and the bytes leaves no row naming missing bytes, and the audit chain verifies afterwards.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

from civicwatch.config import CivicwatchConfig, RetentionSettings, ServerSettings
from civicwatch.server import build_server
from contracts.events import EvidenceFrame, EvidenceLabel, Phase, ViolationEvent
from dispatch.config import ApiSettings, Role, RoutingSettings
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.routing import Router
from dispatch.workflow import Action, Actor, Command, Workflow
from ingest.config import IngestSettings
from ingest.metrics import IngestMetrics
from ingest.store import IngestService
from storage import evidence_retention
from storage.audit import verify_chain
from storage.database import SessionFactory
from storage.evidence_pack_rows import collect_packs
from storage.evidence_packs import PACK_FOLDER
from storage.evidence_pg import PostgresEvidenceStore
from storage.evidence_retention import ACTION, EvidenceRetention, RetentionMetrics
from storage.evidence_rows import file_evidence, link_evidence
from storage.evidence_store import EvidenceStore
from storage.tables import (
    Case,
    CaseEvidence,
    CaseTransition,
    Evidence,
    EvidenceDeletion,
    ReportPhoto,
    ResidentReport,
    utcnow,
)
from tests.factories import (
    API_TOKENS,
    T0,
    EventFactory,
    jpeg_bytes,
    make_registry,
    migrated_database,
)

DAYS = 180
DISPATCHER = Actor("retention-test-desk", Role.DISPATCHER)


@dataclass
class Rig:
    backend: str
    service: IngestService
    store: EvidenceStore
    engine: Engine
    sessions: SessionFactory
    factory: EventFactory

    def retention(self, registry: CollectorRegistry | None = None) -> EvidenceRetention:
        return EvidenceRetention(
            self.sessions,
            self.engine,
            self.store,
            DAYS,
            metrics=RetentionMetrics(registry or CollectorRegistry()),
            packs=self.backend == "local",
        )


@pytest.fixture(params=["local", pytest.param("postgresql", marks=pytest.mark.postgres)])
def rig(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Iterator[Rig]:
    """Ingest as the server wires it, with the store its settings open, over a migrated
    database (SQLite or PostgreSQL; the table store needs PostgreSQL)."""
    backend = str(request.param)
    if backend == "postgresql" and make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("the postgresql evidence store needs a PostgreSQL database")
    settings = IngestSettings(evidence_dir=tmp_path / "evidence", evidence_backend=backend)
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
        yield Rig(backend, service, store, engine, sessions, EventFactory())
        store.close()
        if isinstance(store, PostgresEvidenceStore):
            store.engine.dispose()


def _large_frame(seed: int) -> EvidenceFrame:
    """A panorama-sized JPEG (noise does not compress): over the 64 KiB packing bound, a file."""
    image = Image.effect_noise((360, 240), 60 + seed).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    return EvidenceFrame(
        label=EvidenceLabel.DWELL_CROSSED,
        captured_at=T0 + timedelta(seconds=seed),
        sha256=hashlib.sha256(data).hexdigest(),
        width=360,
        height=240,
        data=data,
    )


def _event(rig: Rig, seed: int, frames: int = 3) -> ViolationEvent:
    event = rig.factory.event(Phase.OPENED, frames=frames)
    return event.model_copy(update={"evidence": [*event.evidence, _large_frame(seed)]})


def _case_id(rig: Rig, violation_id: UUID) -> int:
    with rig.sessions() as session:
        return int(session.scalars(select(Case.id).where(Case.violation_id == violation_id)).one())


def _close(rig: Rig, case_id: int, at: datetime) -> None:
    """Parked, then closed by the command centre at ``at`` (the workflow writes closed_at)."""
    workflow = Workflow()
    with rig.sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None
        workflow.apply(session, case, Command(Action.PARK, reason="overdue"), DISPATCHER, at)
        workflow.apply(session, case, Command(Action.CLOSE, reason="filed"), DISPATCHER, at)
        session.commit()


def _links(rig: Rig, case_id: int) -> int:
    with rig.sessions() as session:
        count = session.scalar(
            select(func.count()).select_from(CaseEvidence).where(CaseEvidence.case_id == case_id)
        )
    return int(count or 0)


def _removal_entries(rig: Rig, case_id: int) -> list[CaseTransition]:
    with rig.sessions() as session:
        return list(
            session.scalars(
                select(CaseTransition).where(
                    CaseTransition.case_id == case_id, CaseTransition.action == ACTION
                )
            )
        )


def _assert_every_row_reads_back(rig: Rig) -> int:
    """No evidence row names bytes that are gone: each reads back with its SHA-256."""
    with rig.sessions() as session:
        rows = session.scalars(select(Evidence.sha256)).all()
    for sha256 in rows:
        assert hashlib.sha256(rig.store.read(sha256)).hexdigest() == sha256
    return len(rows)


def _chain_intact(rig: Rig) -> None:
    with rig.sessions() as session:
        report = verify_chain(session)
    assert report.intact, report.problems


def test_expired_closed_case_loses_its_evidence_open_and_recent_keep_theirs(rig: Rig) -> None:
    old, recent, still_open = (_event(rig, seed) for seed in (1, 2, 3))
    rig.service.store_batch([old, recent, still_open])
    now = utcnow()
    old_id, recent_id, open_id = (_case_id(rig, e.violation_id) for e in (old, recent, still_open))
    _close(rig, old_id, now - timedelta(days=DAYS + 1))
    _close(rig, recent_id, now - timedelta(days=DAYS - 1))
    registry = CollectorRegistry()

    done = rig.retention(registry).run()

    assert (done.cases, done.images) == (1, 4)
    assert done.row_bytes == sum(len(frame.data) for frame in old.evidence)
    assert _links(rig, old_id) == 0
    assert _links(rig, recent_id) == 4
    assert _links(rig, open_id) == 4
    for frame in old.evidence:  # packed or filed, in a file or the table: gone
        with pytest.raises(FileNotFoundError):
            rig.store.read(frame.sha256)
    large = old.evidence[-1].sha256
    assert not (rig.store.root / large[:2] / f"{large}.jpg").exists()  # file or cached copy
    for frame in [*recent.evidence, *still_open.evidence]:
        assert rig.store.read(frame.sha256) == frame.data
    assert _assert_every_row_reads_back(rig) == 8
    (entry,) = _removal_entries(rig, old_id)
    assert entry.actor == "retention"
    assert entry.to_state == "closed"
    assert entry.detail["images"] == 4
    assert entry.detail["retention_days"] == DAYS
    assert _removal_entries(rig, recent_id) == [] == _removal_entries(rig, open_id)
    _chain_intact(rig)
    with rig.sessions() as session:
        assert session.scalar(select(func.count()).select_from(EvidenceDeletion)) == 0
    assert registry.get_sample_value("civicwatch_evidence_retention_cases_total") == 1
    assert registry.get_sample_value("civicwatch_evidence_retention_images_total") == 4
    assert registry.get_sample_value("civicwatch_evidence_retention_bytes_total") == done.row_bytes

    again = rig.retention().run()  # nothing left to remove: no second entry
    assert (again.cases, again.images) == (0, 0)
    assert len(_removal_entries(rig, old_id)) == 1


def _merge(rig: Rig, case_id: int, into: int, at: datetime) -> None:
    with rig.sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None
        command = Command(Action.MERGE, reason="same car", duplicate_of=into)
        Workflow().apply(session, case, command, DISPATCHER, at)
        session.commit()


def test_merged_cases_lose_their_evidence_with_the_case_they_live_on_in(rig: Rig) -> None:
    """A merged case stays merged for good: its evidence goes when the case it was merged
    into (through any merges after) has been closed for the period, not never."""
    first, second, survivor, kept = (_event(rig, seed) for seed in (11, 12, 13, 14))
    rig.service.store_batch([first, second, survivor, kept])
    now = utcnow()
    first_id, second_id, survivor_id, kept_id = (
        _case_id(rig, e.violation_id) for e in (first, second, survivor, kept)
    )
    old = now - timedelta(days=DAYS + 2)
    _merge(rig, first_id, second_id, old)  # first -> second, then second -> survivor
    _merge(rig, second_id, survivor_id, old)
    _close(rig, survivor_id, now - timedelta(days=DAYS + 1))
    _close(rig, kept_id, now - timedelta(days=DAYS - 1))

    done = rig.retention().run()

    assert done.cases == 3
    assert [_links(rig, i) for i in (first_id, second_id, survivor_id, kept_id)] == [0, 0, 0, 4]
    for frame in [*first.evidence, *second.evidence, *survivor.evidence]:
        with pytest.raises(FileNotFoundError):
            rig.store.read(frame.sha256)
    (entry,) = _removal_entries(rig, first_id)
    assert (entry.from_state, entry.to_state) == ("merged", "merged")
    assert _removal_entries(rig, kept_id) == []
    _chain_intact(rig)


@pytest.mark.parametrize("in_chunk", [2000, 2], ids=["one-in-list", "in-lists-of-2"])
def test_an_image_another_case_still_names_stays(
    rig: Rig, in_chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evidence_retention, "IN_CHUNK", in_chunk)
    shared = _event(rig, 4)
    rig.service.store(shared)
    first = _case_id(rig, shared.violation_id)
    other = rig.factory.event(Phase.OPENED, frames=1)
    rig.service.store(other)
    second = _case_id(rig, other.violation_id)
    kept = shared.evidence[0]
    with rig.sessions() as session:  # the same bytes filed on a second case
        link_evidence(session, second, kept.sha256, "overview", T0, 32, 24)
        session.commit()
    _close(rig, first, utcnow() - timedelta(days=DAYS + 5))

    done = rig.retention().run()

    assert done.cases == 1
    assert done.images == 3
    assert rig.store.read(kept.sha256) == kept.data
    _assert_every_row_reads_back(rig)


def test_residents_report_photos_go_with_their_case(rig: Rig) -> None:
    event = _event(rig, 5, frames=1)
    rig.service.store(event)
    case_id = _case_id(rig, event.violation_id)
    photo = jpeg_bytes(9001)
    sha = hashlib.sha256(photo).hexdigest()
    rig.store.put(photo, sha)  # the bytes first, as intake does
    with rig.sessions() as session:
        report = ResidentReport(
            tracking_code="RT0000000001",
            case_id=case_id,
            joined=True,
            channel="web",
            category="illegal_parking",
            site_id=event.site_id,
            client_address="127.0.0.1",
            created_at=T0,
        )
        session.add(report)
        session.flush()
        file_evidence(session, sha, "image/jpeg", len(photo), 32, 24, T0)
        session.add(
            ReportPhoto(
                report_id=report.id,
                sha256=sha,
                content_type="image/jpeg",
                width=32,
                height=24,
                size=len(photo),
            )
        )
        link_evidence(session, case_id, sha, "photo", T0, 32, 24)
        session.commit()
    _close(rig, case_id, utcnow() - timedelta(days=DAYS + 1))

    done = rig.retention().run()

    assert done.cases == 1
    assert done.images == 3
    with rig.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ReportPhoto)) == 0
        assert session.scalar(select(func.count()).select_from(ResidentReport)) == 1
    with pytest.raises(FileNotFoundError):
        rig.store.read(sha)
    (entry,) = _removal_entries(rig, case_id)
    assert entry.detail["photos"] == 1


def test_a_crash_between_rows_and_bytes_leaves_no_row_naming_missing_bytes(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = _event(rig, 6)
    rig.service.store(event)
    case_id = _case_id(rig, event.violation_id)
    _close(rig, case_id, utcnow() - timedelta(days=DAYS + 1))
    large = event.evidence[-1]
    calls: list[str] = []

    def crash(sha256: str) -> int:
        calls.append(sha256)
        raise OSError("the process died here")

    monkeypatch.setattr(rig.store, "remove", crash)
    with pytest.raises(OSError, match="died here"):
        rig.retention().run()
    monkeypatch.undo()

    assert calls, "the rows were committed before any bytes went"
    assert _links(rig, case_id) == 0
    _assert_every_row_reads_back(rig)  # no row names bytes that are gone
    with rig.sessions() as session:  # the names wait for the next run
        queued = set(session.scalars(select(EvidenceDeletion.sha256)))
    assert large.sha256 in queued
    assert rig.store.read(large.sha256) == large.data  # kept, for now: a later run takes it
    _chain_intact(rig)

    done = rig.retention().run()  # the next run deletes the bytes

    assert done.cases == 0
    assert done.bytes_deleted >= len(large.data)
    with pytest.raises(FileNotFoundError):
        rig.store.read(large.sha256)
    with rig.sessions() as session:
        assert session.scalar(select(func.count()).select_from(EvidenceDeletion)) == 0
    assert len(_removal_entries(rig, case_id)) == 1


def test_a_name_stored_again_before_its_bytes_went_keeps_the_new_bytes(rig: Rig) -> None:
    event = _event(rig, 7)
    rig.service.store(event)
    large = event.evidence[-1]
    with rig.sessions() as session:  # queued by a run that crashed, then stored anew
        session.add(EvidenceDeletion(sha256=large.sha256, queued_at=utcnow()))
        session.commit()

    rig.retention().run()

    assert rig.store.read(large.sha256) == large.data
    _assert_every_row_reads_back(rig)


def test_packs_left_mostly_dead_are_compacted_and_the_rest_reads_back(rig: Rig) -> None:
    if rig.backend != "local":
        pytest.skip("only the local store packs")
    gone = rig.factory.event(Phase.OPENED, frames=6)
    kept = rig.factory.event(Phase.OPENED, frames=1)
    rig.service.store_batch([gone, kept])  # one batch: one pack
    rig.store.close()
    (old_pack,) = (rig.store.root / PACK_FOLDER).glob("*.pack")
    before = old_pack.stat().st_size
    _close(rig, _case_id(rig, gone.violation_id), utcnow() - timedelta(days=DAYS + 1))

    done = rig.retention().run()

    assert done.packs_compacted == 1
    assert collect_packs(rig.engine, rig.store.root, grace_s=0) == [old_pack.stem]
    packs = list((rig.store.root / PACK_FOLDER).glob("*.pack"))
    assert len(packs) == 1
    assert packs[0].stat().st_size < before / 3
    assert rig.store.read(kept.evidence[0].sha256) == kept.evidence[0].data
    assert _assert_every_row_reads_back(rig) == 1


def test_readable_copies_older_than_a_day_are_removed(rig: Rig) -> None:
    event = rig.factory.event(Phase.OPENED, frames=1)
    rig.service.store(event)
    frame = event.evidence[0]
    copy = rig.store.path(frame.sha256)  # what reports and the training export use
    assert copy.read_bytes() == frame.data
    young = rig.retention().run()
    assert young.copies_removed == 0
    assert copy.exists()
    then = time.time() - 2 * 86400
    os.utime(copy, (then, then))

    # A file the folder held before (local evidence; a store moved to the table backend):
    # never taken for a copy.
    foreign = jpeg_bytes(4242)
    foreign_sha = hashlib.sha256(foreign).hexdigest()
    held = rig.store.root / foreign_sha[:2] / f"{foreign_sha}.jpg"
    held.parent.mkdir(parents=True, exist_ok=True)
    held.write_bytes(foreign)
    os.utime(held, (then, then))

    assert rig.retention().run().copies_removed == 1
    assert not copy.exists()
    assert held.read_bytes() == foreign
    assert rig.store.read(frame.sha256) == frame.data  # the evidence itself stays
    assert rig.store.path(frame.sha256).read_bytes() == frame.data  # made again on use


def test_the_api_says_the_evidence_is_gone(rig: Rig) -> None:
    event = _event(rig, 8, frames=1)
    rig.service.store(event)
    case_id = _case_id(rig, event.violation_id)
    _close(rig, case_id, utcnow() - timedelta(days=DAYS + 1))
    rig.retention().run()
    client = TestClient(
        create_app(
            ApiContext(
                session_factory=rig.sessions,
                evidence_store=rig.store,
                settings=ApiSettings(tokens=list(API_TOKENS.values())),
                registry=make_registry(),
                metrics_registry=IngestMetrics().registry,
                workflow=Workflow(),
            )
        )
    )
    auth = {"Authorization": f"Bearer {API_TOKENS['dispatcher'].token.get_secret_value()}"}
    with client:
        image = client.get(f"/api/v1/evidence/{event.evidence[0].sha256}", headers=auth)
        detail = client.get(f"/api/v1/cases/{case_id}", headers=auth).json()
        zh = client.get(
            f"/api/v1/evidence/{event.evidence[0].sha256}",
            headers={**auth, "Accept-Language": "zh-CN"},
        )
        panel = client.get(f"/console/cases/{case_id}/panel?lang=en", headers=auth)
        panel_zh = client.get(f"/console/cases/{case_id}/panel?lang=zh-CN", headers=auth)
    assert image.status_code == 404
    assert "retention period" in image.text
    assert zh.status_code == 404
    assert detail["evidence"] == []
    assert detail["evidence_removed_at"] is not None
    assert panel.status_code == 200
    assert "the case had been closed for the retention period" in panel.text
    assert "本案结案已满保存期限" in panel_zh.text
    assert zh.json()["code"] == "evidence_not_found"  # the console words it in its language


def test_the_job_runs_on_the_sweep_leader_only(database_url: str, tmp_path: Path) -> None:
    def config(name: str) -> CivicwatchConfig:
        return CivicwatchConfig(
            sites=make_registry().sites,
            server=ServerSettings(
                database_url=database_url,
                ingest=IngestSettings(client_id=name, evidence_dir=tmp_path / "ev"),
                retention=RetentionSettings(evidence_days=DAYS),
            ),
        )

    leader = build_server(config("retention-leader"))
    follower = build_server(config("retention-follower"))
    try:
        factory = EventFactory()
        event = factory.event(Phase.OPENED, frames=1)
        leader.service.store(event)
        with leader.session_factory() as session:
            case_id = session.scalars(
                select(Case.id).where(Case.violation_id == event.violation_id)
            ).one()
        assert leader.leadership is not None
        assert leader.leadership.first_try()
        assert follower.leadership is not None
        assert not follower.leadership.first_try()
        workflow = Workflow()
        with leader.session_factory() as session:
            case = session.get(Case, case_id)
            assert case is not None
            at = utcnow() - timedelta(days=DAYS + 1)
            workflow.apply(session, case, Command(Action.PARK, reason="x"), DISPATCHER, at)
            workflow.apply(session, case, Command(Action.CLOSE, reason="x"), DISPATCHER, at)
            session.commit()
        counted = "civicwatch_evidence_retention_cases_total"

        follower_job = follower.scheduler.get_job("evidence-retention")
        assert follower_job is not None
        follower_job.func()  # not the leader: does nothing
        with leader.session_factory() as session:
            assert session.scalar(select(func.count()).select_from(CaseEvidence)) == 1
        assert follower.metrics.registry.get_sample_value(counted) == 0

        leader_job = leader.scheduler.get_job("evidence-retention")
        assert leader_job is not None
        leader_job.func()
        with leader.session_factory() as session:
            assert session.scalar(select(func.count()).select_from(CaseEvidence)) == 0
        assert leader.metrics.registry.get_sample_value(counted) == 1
    finally:
        follower.stop()
        leader.stop()


def test_the_setting_refuses_zero_and_null_keeps_evidence_for_good(rig: Rig) -> None:
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        RetentionSettings(evidence_days=0)
    assert RetentionSettings().evidence_days == 180
    event = _event(rig, 9, frames=1)
    rig.service.store(event)
    case_id = _case_id(rig, event.violation_id)
    _close(rig, case_id, utcnow() - timedelta(days=3650))
    forever = EvidenceRetention(rig.sessions, rig.engine, rig.store, None)

    assert forever.run().cases == 0
    assert _links(rig, case_id) == 2


def test_an_image_stored_again_while_its_bytes_are_removed_keeps_its_bytes(rig: Rig) -> None:
    """The window between the job's re-check ("no row names it") and its removal of the bytes:
    the job is paused there (its ``on_remove`` seam) while ingest stores the same image again
    through its real path in another thread. The writer waits for the job (evidence_guard), so
    the committed row's bytes are there afterwards; without the lock ingest commits in the
    window and the job then deletes the bytes its new row names."""
    first = _event(rig, 8)
    rig.service.store(first)
    large = first.evidence[-1]
    _close(rig, _case_id(rig, first.violation_id), utcnow() - timedelta(days=DAYS + 1))
    paused, resume = threading.Event(), threading.Event()

    def pause_on_large(sha256: str) -> None:
        if sha256 == large.sha256:
            paused.set()
            assert resume.wait(30), "the test never resumed the job"

    retention = EvidenceRetention(
        rig.sessions,
        rig.engine,
        rig.store,
        DAYS,
        packs=rig.backend == "local",
        on_remove=pause_on_large,
    )
    assert retention.remove_rows(utcnow() - timedelta(days=DAYS), evidence_retention.RetentionRun())
    remover = ThreadWithResult(retention.delete_bytes)
    remover.start()
    assert paused.wait(30), "the job never reached the large image's bytes"

    again = rig.factory.event(Phase.OPENED, frames=3)  # a new violation: the same panorama
    again = again.model_copy(update={"evidence": [*again.evidence, large]})
    writer = ThreadWithResult(lambda: rig.service.store(again))
    writer.start()
    writer.join(1.0)
    stored_in_window = not writer.is_alive()
    resume.set()
    remover.join(30)
    writer.join(30)
    assert not remover.is_alive()
    assert not writer.is_alive()
    remover.result()
    writer.result()

    with rig.sessions() as session:
        assert session.get(Evidence, large.sha256) is not None
    assert rig.store.read(large.sha256) == large.data
    _assert_every_row_reads_back(rig)
    assert not stored_in_window, "ingest stored the image while the job was removing its bytes"


class ThreadWithResult(threading.Thread):
    """A thread whose target's exception is raised again by result()."""

    def __init__(self, target: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self._call = target
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._call()
        except BaseException as exc:  # handed to result()
            self._error = exc

    def result(self) -> None:
        if self._error is not None:
            raise self._error
