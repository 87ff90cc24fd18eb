"""Login throttling: failed logins counted in the database, per user name and per client.

They live in the database, not in process memory, so every server process counts them.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from dispatch.config import AccountSettings
from storage.tables import LoginFailure


class RateLimited(Exception):  # noqa: N818
    """Too many failed logins for this user name or from this client."""

    def __init__(self, retry_after_seconds: int) -> None:
        self.retry_after_seconds = retry_after_seconds
        super().__init__(f"too many failed logins; try again in {retry_after_seconds} s")


class LoginLimiter:
    """Refuses logins while a user name or a client has failed too often within the window."""

    def __init__(self, settings: AccountSettings) -> None:
        self._settings = settings

    def check(self, session: Session, username: str, client: str, now: datetime) -> None:
        """Raise RateLimited while the user name or the client has too many recent failures."""
        window = timedelta(minutes=self._settings.login_window_minutes)
        session.execute(delete(LoginFailure).where(LoginFailure.at <= now - window))
        per_user, per_client = (
            self._settings.login_max_failures,
            self._settings.login_max_failures_per_client,
        )
        self._check_rate(session, LoginFailure.username == username, per_user, now, window)
        self._check_rate(session, LoginFailure.client == client, per_client, now, window)

    @staticmethod
    def record_failure(session: Session, username: str, client: str, at: datetime) -> None:
        session.add(LoginFailure(username=username, client=client, at=at))

    @staticmethod
    def forget_user(session: Session, username: str) -> None:
        """A success clears the name's count, not the client's: one good account must not reset
        an address that is guessing at others."""
        session.execute(delete(LoginFailure).where(LoginFailure.username == username))

    @staticmethod
    def _check_rate(
        session: Session,
        which: ColumnElement[bool],
        limit: int,
        now: datetime,
        window: timedelta,
    ) -> None:
        recent = select(LoginFailure.at).where(which, LoginFailure.at > now - window)
        count = session.scalar(select(func.count()).select_from(recent.subquery())) or 0
        if count < limit:
            return
        # Allowed again once enough of the counted failures have aged out of the window.
        times = list(session.scalars(recent.order_by(LoginFailure.at)))
        frees_at = times[count - limit] + window
        raise RateLimited(max(1, math.ceil((frees_at - now).total_seconds())))
