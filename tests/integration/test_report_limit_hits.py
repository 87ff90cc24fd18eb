"""The report limits' table on SQLite and PostgreSQL: a key's expired hits go when its next
report is counted (the DELETE runs without session synchronisation), other keys' hits stay, a
hit added earlier in the same session survives the delete, and a full key is refused with the
wait until its oldest hit in the window expires."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from dispatch.config import ReportRateLimits
from dispatch.residents.limits import LimitKey, ReportLimited, check_and_count
from storage.tables import ReportLimitHit
from tests.factories import T0, migrated_database

LIMITS = ReportRateLimits(per_address=2, per_phone=5, per_token=5, window_minutes=60)


def test_expired_hits_go_and_the_window_holds(database_url: str) -> None:
    with migrated_database(database_url) as (_engine, sessions):
        with sessions() as session:
            check_and_count(session, [(LimitKey.ADDRESS, "a")], LIMITS, T0)
            check_and_count(session, [(LimitKey.ADDRESS, "b")], LIMITS, T0)
            session.commit()
        later = T0 + timedelta(minutes=61)
        with sessions() as session:
            check_and_count(session, [(LimitKey.ADDRESS, "c")], LIMITS, later)
            # In the same session as c's new hit: a's old hit goes, c's new one stays.
            check_and_count(session, [(LimitKey.ADDRESS, "a")], LIMITS, later)
            session.commit()
        with sessions() as session:
            rows = session.execute(
                select(ReportLimitHit.key, ReportLimitHit.at).order_by(ReportLimitHit.key)
            ).all()
            assert [(key, at) for key, at in rows] == [("a", later), ("b", T0), ("c", later)]
        with sessions() as session:
            check_and_count(session, [(LimitKey.ADDRESS, "a")], LIMITS, later)
            session.commit()
        with sessions() as session, pytest.raises(ReportLimited) as refused:
            check_and_count(
                session, [(LimitKey.ADDRESS, "a")], LIMITS, later + timedelta(minutes=10)
            )
        assert refused.value.retry_after == 50 * 60
