"""A report's audit entries are chained in one go, at the end of its transaction: the chain's
head row (which ingest's writer and the notification pumps also lock) is locked once, after
every other row of the report is written, so the lock is held only for the entries' inserts
and the commit. The chain still verifies, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Connection

from contracts.kinds import ViolationKind
from dispatch.config import ResidentSettings, RoutingSettings
from dispatch.residents.intake import IntakeDeps, ReportSubmission, submit_report
from dispatch.residents.tiers import ResidentAwareRouter
from storage.audit import verify_chain
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from tests.factories import SITE, make_registry, migrated_database


@pytest.fixture
def wired(database_url: str, tmp_path: Path) -> Iterator[tuple[SessionFactory, IntakeDeps]]:
    with migrated_database(database_url) as (_engine, sessions):
        registry = make_registry()
        routing = RoutingSettings()
        yield (
            sessions,
            IntakeDeps(
                settings=ResidentSettings(),
                registry=registry,
                router=ResidentAwareRouter(routing, registry=registry),
                routing=routing,
                evidence_store=EvidenceStore(tmp_path / "evidence"),
            ),
        )


@pytest.mark.parametrize(
    ("kind", "entries"),
    [
        (ViolationKind.FIRE_LANE_BLOCKING, ["register", "report", "dispatch"]),
        (ViolationKind.NOISE, None),  # whichever tier the rules give: every entry in one call
    ],
    ids=["department", "default-tier"],
)
def test_a_reports_entries_lock_the_head_once_after_its_other_rows(
    wired: tuple[SessionFactory, IntakeDeps], kind: ViolationKind, entries: list[str] | None
) -> None:
    sessions, deps = wired
    statements: list[str] = []

    def seen(_conn: Connection, _cursor: Any, statement: str, *_args: Any, **_kwargs: Any) -> None:
        statements.append(" ".join(statement.split()).lower())

    with sessions() as session:
        bind = session.connection().engine
        event.listen(bind, "before_cursor_execute", seen)
        try:
            submit_report(
                session,
                ReportSubmission(
                    category=kind,
                    site_id=SITE,
                    building="3号楼",
                    description="blocked",
                    client_address="198.51.100.9",
                ),
                deps=deps,
            )
            session.commit()
        finally:
            event.remove(bind, "before_cursor_execute", seen)

    head_writes = [i for i, sql in enumerate(statements) if sql.startswith("update audit_head")]
    # One chain_entries call: the locking write and the move to the newest entry.
    assert len(head_writes) == 2, statements
    first_lock = head_writes[0]
    after_lock = statements[first_lock + 1 :]
    # After the lock only the head itself (created on a fresh database) and the entries.
    writes = [sql for sql in after_lock if sql.split()[0] in {"insert", "update", "delete"}]
    assert writes, statements
    assert all(
        sql.startswith(
            ("insert into case_transitions", "update audit_head", "insert into audit_head")
        )
        for sql in writes
    ), writes
    with sessions() as session:
        report = verify_chain(session)
        assert report.intact, report.problems
        assert report.entries >= 2
        if entries is not None:
            assert report.entries == len(entries)
