"""People's accounts: argon2id passwords, expiring sessions and rate-limited logins.

Only the SHA-256 of a session token is stored, so a copy of the database logs nobody in. Failed
logins live in the database (not in process memory), so every server process counts them. Every
change to an account (created, password changed or set, deactivated) is an ``account_audit`` row.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from dispatch.config import (
    MIN_PASSWORD_LENGTH,
    USERNAME_PATTERN,
    AccountSettings,
    Department,
    DevUser,
    Role,
    account_role_problem,
)
from storage.database import SessionFactory
from storage.tables import AccountAudit, LoginFailure, User, UserSession, utcnow

Now = Callable[[], datetime]

MAX_PASSWORD_LENGTH = 1024  # argon2 hashes anything; a megabyte password is only a cost
USERNAME = re.compile(USERNAME_PATTERN)
LAST_SEEN_RESOLUTION = timedelta(minutes=1)  # not a database write on every request

__all__ = [
    "Account",
    "AccountError",
    "AccountService",
    "AccountSettings",
    "DevUser",
    "LoginRefused",
    "RateLimited",
    "UnknownUserError",
    "UserExistsError",
    "WrongPasswordError",
]

# Who an account change is written down as when no person made it (the command line, startup).
LOCAL_ACTOR = "local"


@dataclass(frozen=True)
class Account:
    """A user as the rest of the server sees it: no password hash."""

    id: int
    username: str
    display_name: str
    role: Role
    department: Department | None
    is_head: bool
    active: bool
    must_change_password: bool
    created_at: datetime
    password_changed_at: datetime


@dataclass(frozen=True)
class Login:
    """A new session: the token goes to the client once; only its hash is kept."""

    token: str
    expires_at: datetime
    account: Account


class AccountError(ValueError):
    """A request the account rules refuse (weak password, bad role); the message says why, and
    ``code`` names the rule for a page to show in its language."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


class UnknownUserError(AccountError):
    def __init__(self, username: str) -> None:
        super().__init__(f"no user named {username!r}", "unknown_user")


class UserExistsError(AccountError):
    def __init__(self, username: str) -> None:
        super().__init__(f"a user named {username!r} already exists", "user_exists")


class WrongPasswordError(AccountError):
    """The current password given to change it is not the user's."""

    def __init__(self) -> None:
        super().__init__("the current password is wrong", "wrong_current_password")


class LoginRefused(Exception):  # noqa: N818 - it is a refusal, not a programming error
    """Wrong user name or password, or a deactivated account: deliberately one message."""

    def __init__(self) -> None:
        super().__init__("wrong user name or password")


class RateLimited(Exception):  # noqa: N818
    """Too many failed logins for this user name or from this client."""

    def __init__(self, retry_after_seconds: int) -> None:
        self.retry_after_seconds = retry_after_seconds
        super().__init__(f"too many failed logins; try again in {retry_after_seconds} s")


def check_role(role: Role, department: Department | None, is_head: bool) -> None:
    """Raise AccountError unless the role fits a person and the department fits the role."""
    problem = account_role_problem(role, department, is_head)
    if problem is not None:
        raise AccountError(problem)


def check_password(username: str, password: str) -> None:
    """The password policy; raises AccountError naming the rule broken."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(
            f"a password has at least {MIN_PASSWORD_LENGTH} characters", "password_too_short"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(
            f"a password has at most {MAX_PASSWORD_LENGTH} characters", "password_too_long"
        )
    if password.strip().casefold() == username.strip().casefold():
        raise AccountError("a password must not be the user name", "password_is_username")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _account(user: User) -> Account:
    return Account(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=Role(user.role),
        department=Department(user.department) if user.department else None,
        is_head=user.is_head,
        active=user.active,
        must_change_password=user.must_change_password,
        created_at=user.created_at,
        password_changed_at=user.password_changed_at,
    )


class AccountService:
    """Users, passwords and sessions over the database. Built once by the composition root."""

    def __init__(
        self,
        session_factory: SessionFactory,
        settings: AccountSettings,
        clock: Now = utcnow,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self._sessions = session_factory
        self._settings = settings
        self._clock = clock
        self._hasher = hasher or PasswordHasher()  # argon2id, RFC 9106 low-memory parameters
        # Verified against when the user name is unknown, so that costs what a wrong password does.
        self._decoy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    @property
    def settings(self) -> AccountSettings:
        return self._settings

    def create_user(
        self,
        username: str,
        password: str,
        role: Role,
        department: Department | None = None,
        display_name: str = "",
        is_head: bool = False,
        must_change_password: bool = False,
        actor: str = LOCAL_ACTOR,
    ) -> Account:
        """Add a user; raises AccountError (UserExistsError when the name is taken)."""
        if not USERNAME.fullmatch(username):
            raise AccountError(
                f"user name {username!r}: 1-64 letters, digits or . _ @ -, starting with a "
                "letter or digit"
            )
        check_role(role, department, is_head)
        check_password(username, password)
        now = self._clock()
        with self._sessions() as session:
            if self._find(session, username) is not None:
                raise UserExistsError(username)
            user = User(
                username=username,
                display_name=display_name or username,
                role=role.value,
                department=department.value if department else None,
                is_head=is_head,
                password_hash=self._hasher.hash(password),
                active=True,
                must_change_password=must_change_password,
                created_at=now,
                password_changed_at=now,
            )
            session.add(user)
            self._audit(session, username, "created", actor, now)
            session.commit()
            return _account(user)

    def ensure_dev_users(self, users: Iterable[DevUser]) -> list[str]:
        """Create each development account whose user name is free; returns those created.

        The composition root calls this in development only.
        """
        created = []
        for dev in users:
            try:
                self.create_user(
                    dev.username,
                    dev.password.get_secret_value(),
                    dev.role,
                    dev.department,
                    dev.display_name,
                    dev.is_head,
                )
            except UserExistsError:
                continue
            created.append(dev.username)
        return created

    def set_password(
        self, username: str, password: str, must_change: bool = False, actor: str = LOCAL_ACTOR
    ) -> None:
        """A new password (an admin's or the command line's); every session of the user ends."""
        check_password(username, password)
        with self._sessions() as session:
            user = self._require(session, username)
            self._replace_password(session, user, password, must_change)
            session.execute(delete(UserSession).where(UserSession.user_id == user.id))
            self._audit(session, username, "password_set", actor, self._clock())
            session.commit()

    def change_own_password(
        self, username: str, current: str, new: str, keep_session: str | None, client: str = ""
    ) -> None:
        """The user's own change: ``current`` must be right (a wrong one counts as a failed
        login), ``new`` must pass the policy and differ from it. must_change_password is cleared,
        and every other session of the user ends; ``keep_session`` (the caller's) goes on."""
        now = self._clock()
        client = client[:64]
        with self._sessions() as session:
            self._check_login_rate(session, username, client, now)
            user = self._require(session, username)
            if not self._verify(user, current) or not user.active:
                session.add(LoginFailure(username=username, client=client, at=now))
                session.commit()
                raise WrongPasswordError()
            check_password(username, new)
            if new == current:
                raise AccountError(
                    "the new password must differ from the current one", "password_unchanged"
                )
            self._replace_password(session, user, new, must_change=False)
            others = delete(UserSession).where(UserSession.user_id == user.id)
            if keep_session is not None:
                others = others.where(UserSession.token_sha256 != token_digest(keep_session))
            session.execute(others)
            self._audit(session, username, "password_changed", username, now, client)
            session.commit()

    def deactivate(self, username: str, actor: str = LOCAL_ACTOR) -> None:
        """The user can no longer log in, and every session of theirs ends now."""
        with self._sessions() as session:
            user = self._require(session, username)
            user.active = False
            session.execute(delete(UserSession).where(UserSession.user_id == user.id))
            self._audit(session, username, "deactivated", actor, self._clock())
            session.commit()

    def audit_entries(self, username: str | None = None) -> list[AccountAudit]:
        """The account audit, oldest first; only ``username``'s entries when given."""
        query = select(AccountAudit).order_by(AccountAudit.id)
        if username is not None:
            query = query.where(AccountAudit.username == username)
        with self._sessions() as session:
            entries = list(session.scalars(query))
            session.expunge_all()
            return entries

    def list_users(self) -> list[Account]:
        with self._sessions() as session:
            return [_account(u) for u in session.scalars(select(User).order_by(User.username))]

    def get_user(self, username: str) -> Account:
        with self._sessions() as session:
            return _account(self._require(session, username))

    def authenticate(self, username: str, password: str, client: str) -> Login:
        """Check a login and open a session; raises LoginRefused or RateLimited."""
        now = self._clock()
        username = username.strip()[:64]
        client = client[:64]
        with self._sessions() as session:
            self._check_login_rate(session, username, client, now)
            user = self._find(session, username)
            if not self._verify(user, password) or user is None or not user.active:
                session.add(LoginFailure(username=username, client=client, at=now))
                session.commit()
                raise LoginRefused()
            if self._hasher.check_needs_rehash(user.password_hash):
                user.password_hash = self._hasher.hash(password)
            # A success clears the name's count, not the client's: one good account must not
            # reset an address that is guessing at others.
            session.execute(delete(LoginFailure).where(LoginFailure.username == username))
            session.execute(delete(UserSession).where(UserSession.expires_at <= now))
            token = secrets.token_urlsafe(32)
            expires_at = now + timedelta(hours=self._settings.session_hours)
            session.add(
                UserSession(
                    token_sha256=token_digest(token),
                    user_id=user.id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=expires_at,
                    client=client,
                )
            )
            session.commit()
            return Login(token=token, expires_at=expires_at, account=_account(user))

    def resolve_session(self, token: str) -> Account | None:
        """The user a session token belongs to, or None when it is unknown, expired, idle too long
        or its user deactivated (those sessions are deleted)."""
        if not token:
            return None
        now = self._clock()
        with self._sessions() as session:
            row = session.get(UserSession, token_digest(token))
            if row is None:
                return None
            user = session.get(User, row.user_id)
            idle_since = now - timedelta(minutes=self._settings.idle_minutes)
            if (
                user is None
                or not user.active
                or row.expires_at <= now
                or row.last_seen_at <= idle_since
            ):
                session.delete(row)
                session.commit()
                return None
            if now - row.last_seen_at >= LAST_SEEN_RESOLUTION:
                row.last_seen_at = now
                session.commit()
            return _account(user)

    def logout(self, token: str) -> None:
        """End the session; an unknown token is not an error."""
        with self._sessions() as session:
            session.execute(
                delete(UserSession).where(UserSession.token_sha256 == token_digest(token))
            )
            session.commit()

    def _check_login_rate(
        self, session: Session, username: str, client: str, now: datetime
    ) -> None:
        """Raise RateLimited while the user name or the client has too many recent failures."""
        window = timedelta(minutes=self._settings.login_window_minutes)
        session.execute(delete(LoginFailure).where(LoginFailure.at <= now - window))
        per_user, per_client = (
            self._settings.login_max_failures,
            self._settings.login_max_failures_per_client,
        )
        self._check_rate(session, LoginFailure.username == username, per_user, now, window)
        self._check_rate(session, LoginFailure.client == client, per_client, now, window)

    def _replace_password(
        self, session: Session, user: User, password: str, must_change: bool
    ) -> None:
        user.password_hash = self._hasher.hash(password)
        user.password_changed_at = self._clock()
        user.must_change_password = must_change

    @staticmethod
    def _audit(
        session: Session, username: str, action: str, actor: str, at: datetime, client: str = ""
    ) -> None:
        session.add(
            AccountAudit(
                at=at, username=username, action=action, actor=actor[:64], client=client[:64]
            )
        )

    def _verify(self, user: User | None, password: str) -> bool:
        stored = user.password_hash if user is not None else self._decoy_hash
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
        return user is not None

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

    @staticmethod
    def _find(session: Session, username: str) -> User | None:
        return session.scalars(select(User).where(User.username == username)).one_or_none()

    @staticmethod
    def _require(session: Session, username: str) -> User:
        user = AccountService._find(session, username)
        if user is None:
            raise UnknownUserError(username)
        return user
