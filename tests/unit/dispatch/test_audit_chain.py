"""The hash-chained audit log: tampering by SQL shows at the row it touched, through
verify_chain and through `civicwatch audit verify`; concurrent writers keep the chain whole.

The log is written by real ingest and real workflow actions on real SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import delete, func, select, text, update

from civicwatch.cli import main
from civicwatch.exit_codes import EXIT_AUDIT_BROKEN
from dispatch.config import Department, Role
from dispatch.workflow import Action, Actor, Command, Workflow
from storage.audit import verify_chain
from storage.database import SessionFactory
from storage.tables import AuditHead, Case, CaseTransition
from tests.factories import T0, EventFactory, make_ingest, make_registry

WORKER = Actor("officer-1", Role.WORKER, Department.LAW_ENFORCEMENT)


def _write_log(session_factory: SessionFactory, tmp_path: Path, cases: int = 2) -> int:
    """``cases`` cases from ingest (2 entries each), then accepted and noted: 4 entries each."""
    service = make_ingest(session_factory, tmp_path / "evidence").service
    events = EventFactory()
    for _ in range(cases):
        service.store(events.event())
    with session_factory.begin() as session:
        for case in session.scalars(select(Case).order_by(Case.id)):
            Workflow().apply(session, case, Command(Action.ACCEPT), WORKER, T0)
            Workflow().apply(session, case, Command(Action.NOTE, reason="on my way"), WORKER, T0)
    return cases * 4


def _config(tmp_path: Path, database_url: str) -> Path:
    document = {
        "sites": [site.model_dump(mode="json") for site in make_registry().sites],
        "server": {"database_url": database_url},
    }
    path = tmp_path / "civicwatch.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def _row_id(session_factory: SessionFactory, seq: int) -> int:
    with session_factory() as session:
        return int(
            session.scalars(select(CaseTransition.id).where(CaseTransition.seq == seq)).one()
        )


def _cli_verify(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[str]]:
    code = main(["audit", "verify", "--config", str(_config(tmp_path, database_url))])
    return code, capsys.readouterr().out.splitlines()


def test_an_untouched_chain_verifies(
    session_factory: SessionFactory,
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    entries = _write_log(session_factory, tmp_path)
    with session_factory() as session:
        report = verify_chain(session)
    assert (report.entries, report.problems) == (entries, [])
    code, lines = _cli_verify(tmp_path, database_url, capsys)
    assert code == 0
    assert lines == [f"audit chain intact: {entries} entries"]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("reason", "nothing to see here"),
        ("actor", "somebody-else"),
        ("to_state", "closed"),
        ("at", T0 + timedelta(hours=1)),
        ("detail", {"department": "fire_rescue"}),
    ],
)
def test_altering_one_row_fails_at_that_row(
    session_factory: SessionFactory,
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    column: str,
    value: object,
) -> None:
    _write_log(session_factory, tmp_path)
    altered = 3  # ingest's dispatch of the second case
    with session_factory.begin() as session:
        changed = session.execute(
            update(CaseTransition).where(CaseTransition.seq == altered).values({column: value})
        )
        assert getattr(changed, "rowcount", 0) == 1
    row_id = _row_id(session_factory, altered)
    with session_factory() as session:
        report = verify_chain(session)
    assert [(p.seq, p.entry_id) for p in report.problems] == [(altered, row_id)]
    assert "does not match its hash" in report.problems[0].problem

    code, lines = _cli_verify(tmp_path, database_url, capsys)
    assert code == EXIT_AUDIT_BROKEN == 1
    assert lines[0] == (
        f"audit entry seq={altered} (row id {row_id}): its content does not match its hash"
    )
    assert lines[-1].startswith("audit chain BROKEN: 1 problem(s)")


def test_rewriting_a_row_and_its_hash_fails_at_the_next_row(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    """A forger who also recomputes the edited row's own hash breaks the next row's link."""
    from storage.audit import HASHED_FIELDS, entry_hash

    _write_log(session_factory, tmp_path)
    with session_factory.begin() as session:
        row = session.scalars(select(CaseTransition).where(CaseTransition.seq == 2)).one()
        row.reason = "forged"
        values = {name: getattr(row, name) for name in HASHED_FIELDS}
        row.entry_hash = entry_hash(values, row.prev_hash or "")
    with session_factory() as session:
        report = verify_chain(session)
    assert [(p.seq, p.problem) for p in report.problems] == [
        (3, "does not link to the entry before it")
    ]


def test_deleting_a_row_fails_at_the_next(
    session_factory: SessionFactory,
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _write_log(session_factory, tmp_path)
    next_id = _row_id(session_factory, 5)
    with session_factory.begin() as session:
        session.execute(delete(CaseTransition).where(CaseTransition.seq == 4))
    with session_factory() as session:
        report = verify_chain(session)
    assert {(p.seq, p.entry_id) for p in report.problems} == {(5, next_id)}
    assert [p.problem for p in report.problems] == [
        "seq 4 is missing (entry deleted)",
        "does not link to the entry before it",
    ]
    code, lines = _cli_verify(tmp_path, database_url, capsys)
    assert code == EXIT_AUDIT_BROKEN
    assert lines[0] == f"audit entry seq=5 (row id {next_id}): seq 4 is missing (entry deleted)"


def test_deleting_the_last_row_is_caught_by_the_head(
    session_factory: SessionFactory,
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    entries = _write_log(session_factory, tmp_path)
    with session_factory.begin() as session:
        session.execute(delete(CaseTransition).where(CaseTransition.seq == entries))
    with session_factory() as session:
        report = verify_chain(session)
    assert [(p.seq, p.problem) for p in report.problems] == [
        (entries, "the head names a newer entry: entries cut off the end")
    ]
    code, lines = _cli_verify(tmp_path, database_url, capsys)
    assert code == EXIT_AUDIT_BROKEN
    assert f"seq={entries}" in lines[0]


def test_the_cli_names_a_broken_config_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("sites: []\n", encoding="utf-8")
    assert main(["audit", "verify", "--config", str(path)]) == 2
    assert "sites" in capsys.readouterr().err


def test_concurrent_writers_keep_one_unbroken_chain(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Six threads note on two cases at once, each note its own transaction."""
    before = _write_log(session_factory, tmp_path)
    threads, notes = 6, 15
    with session_factory() as session:
        case_ids = list(session.scalars(select(Case.id).order_by(Case.id)))
    failures: list[BaseException] = []
    start = threading.Barrier(threads)

    def write(number: int) -> None:
        try:
            start.wait()
            for index in range(notes):
                with session_factory.begin() as session:
                    case = session.get_one(Case, case_ids[(number + index) % len(case_ids)])
                    command = Command(Action.NOTE, reason=f"thread {number} note {index}")
                    Workflow().apply(session, case, command, WORKER, T0)
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    workers = [threading.Thread(target=write, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert failures == []
    total = before + threads * notes
    with session_factory() as session:
        report = verify_chain(session)
        seqs = list(session.scalars(select(CaseTransition.seq).order_by(CaseTransition.seq)))
        head = session.get_one(AuditHead, 1)
        notes_written = session.scalar(
            select(func.count()).select_from(CaseTransition).where(CaseTransition.action == "note")
        )
    assert report.intact, report.problems
    assert report.entries == total
    assert seqs == list(range(1, total + 1))
    assert head.seq == total
    assert notes_written == len(case_ids) + threads * notes


def test_sql_that_bypasses_the_chain_shows_as_outside_it(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    _write_log(session_factory, tmp_path)
    with session_factory.begin() as session:
        case_id = session.scalars(select(Case.id).limit(1)).one()
        session.execute(
            text(
                "INSERT INTO case_transitions (case_id, from_state, to_state, actor, reason, at,"
                " action, detail) VALUES (:case_id, 'accepted', 'closed', 'intruder', '', :at,"
                " 'close', '{}')"
            ),
            {"case_id": case_id, "at": T0},
        )
    with session_factory() as session:
        report = verify_chain(session)
    assert [(p.seq, p.problem) for p in report.problems] == [(None, "entry is outside the chain")]
