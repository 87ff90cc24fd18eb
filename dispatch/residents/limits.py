"""Report limits per client address, phone number and QR token, and the tracking page's
lookups per address, counted in the database (``report_limit_hits``) so they hold across API
workers and restarts.

A refused report counts against nothing: a flood cannot stretch its own lockout. Two requests
racing on PostgreSQL may both take the last place in a window; the limit is a brake on floods,
not an exact quota. Phone numbers are counted by their SHA-256, never stored here in clear.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from dispatch.config import ReportRateLimits
from storage.tables import ReportLimitHit


class LimitKey(StrEnum):
    ADDRESS = "address"
    PHONE = "phone"
    TOKEN = "token"
    LOOKUP = "lookup"  # a tracking-page lookup, per client address


class ReportLimited(Exception):  # noqa: N818 - a refusal the caller answers with 429
    """Too many reports for one key in the window; ``retry_after`` is whole seconds."""

    code = "report_rate_limited"

    def __init__(self, key_kind: LimitKey, limit: int, retry_after: int) -> None:
        super().__init__(
            f"at most {limit} reports an hour per {key_kind}; try again in {retry_after} s"
        )
        self.key_kind = key_kind
        self.limit = limit
        self.retry_after = retry_after


def limit_key(kind: LimitKey, value: str) -> str:
    """The stored key: a phone number's SHA-256, else the value as given (bounded)."""
    if kind is LimitKey.PHONE:
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return value[:128]


def limit_of(settings: ReportRateLimits, kind: LimitKey) -> int:
    return {
        LimitKey.ADDRESS: settings.per_address,
        LimitKey.PHONE: settings.per_phone,
        LimitKey.TOKEN: settings.per_token,
        LimitKey.LOOKUP: settings.lookups_per_address,
    }[kind]


def _refuse_if_full(
    session: Session, kind: LimitKey, key: str, limit: int, window: timedelta, now: datetime
) -> None:
    in_window = (
        ReportLimitHit.key_kind == kind.value,
        ReportLimitHit.key == key,
        ReportLimitHit.at > now - window,
    )
    count = session.scalar(select(func.count()).where(*in_window)) or 0
    if count < limit:
        return
    # The hit whose expiry frees a place: the (count - limit + 1)-th oldest.
    freeing = session.scalar(
        select(ReportLimitHit.at)
        .where(*in_window)
        .order_by(ReportLimitHit.at)
        .offset(count - limit)
        .limit(1)
    )
    wait = (freeing + window - now).total_seconds() if freeing is not None else 1.0
    raise ReportLimited(kind, limit, max(1, math.ceil(wait)))


def _count(session: Session, kind: LimitKey, key: str, window: timedelta, now: datetime) -> None:
    # Old hits of this key go as new ones come: the table stays the size of the window. No
    # session synchronisation: no hit is ever loaded as an object, so there is none to expire.
    session.execute(
        delete(ReportLimitHit)
        .where(
            ReportLimitHit.key_kind == kind.value,
            ReportLimitHit.key == key,
            ReportLimitHit.at <= now - window,
        )
        .execution_options(synchronize_session=False)
    )
    session.add(ReportLimitHit(key_kind=kind.value, key=key, at=now))


def check_and_count(
    session: Session,
    keys: Sequence[tuple[LimitKey, str]],
    settings: ReportRateLimits,
    now: datetime,
) -> None:
    """Refuse (ReportLimited) when any key is at its limit; otherwise count one report against
    every key, in the caller's transaction. Empty values are skipped (no phone given)."""
    window = timedelta(minutes=settings.window_minutes)
    stored = [(kind, limit_key(kind, value)) for kind, value in keys if value]
    for kind, key in stored:
        _refuse_if_full(session, kind, key, limit_of(settings, kind), window, now)
    for kind, key in stored:
        _count(session, kind, key, window, now)


def check_and_count_lookup(
    session: Session, address: str, settings: ReportRateLimits, now: datetime
) -> None:
    """One tracking-page lookup from ``address``: refused (ReportLimited) past
    ``lookups_per_address`` in ``lookup_window_minutes``, else counted in the caller's
    transaction. Every lookup counts, found or not: guessing codes is what it brakes."""
    window = timedelta(minutes=settings.lookup_window_minutes)
    key = limit_key(LimitKey.LOOKUP, address)
    _refuse_if_full(session, LimitKey.LOOKUP, key, settings.lookups_per_address, window, now)
    _count(session, LimitKey.LOOKUP, key, window, now)
