"""Report limits per client address, phone number and QR token, counted in the database
(``report_limit_hits``) so they hold across API workers and restarts.

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
    }[kind]


def check_and_count(
    session: Session,
    keys: Sequence[tuple[LimitKey, str]],
    settings: ReportRateLimits,
    now: datetime,
) -> None:
    """Refuse (ReportLimited) when any key is at its limit; otherwise count one report against
    every key, in the caller's transaction. Empty values are skipped (no phone given)."""
    window = timedelta(minutes=settings.window_minutes)
    cutoff = now - window
    stored = [(kind, limit_key(kind, value)) for kind, value in keys if value]
    for kind, key in stored:
        limit = limit_of(settings, kind)
        in_window = (
            ReportLimitHit.key_kind == kind.value,
            ReportLimitHit.key == key,
            ReportLimitHit.at > cutoff,
        )
        count = session.scalar(select(func.count()).where(*in_window)) or 0
        if count < limit:
            continue
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
    for kind, key in stored:
        # Old hits of this key go as new ones come: the table stays the size of the window.
        session.execute(
            delete(ReportLimitHit).where(
                ReportLimitHit.key_kind == kind.value,
                ReportLimitHit.key == key,
                ReportLimitHit.at <= cutoff,
            )
        )
        session.add(ReportLimitHit(key_kind=kind.value, key=key, at=now))
