"""People's accounts: argon2id passwords, expiring sessions and rate-limited logins.

Only the SHA-256 of a session token is stored, so a copy of the database logs nobody in. Every
change to an account (created, password changed or set, deactivated) is an ``account_audit`` row.
What an account is and its rules live in ``account_rules``, the login throttle in
``login_limits``; their public names are importable from here too.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dispatch.account_rules import (
    USERNAME,
    Account,
    AccountError,
    Login,
    LoginRefused,
    UnknownUserError,
    UserExistsError,
    WrongPasswordError,
    check_password,
    check_role,
)
from dispatch.config import AccountSettings, Department, DevUser, Role
from dispatch.login_limits import LoginLimiter, RateLimited
from storage.database import SessionFactory
from storage.tables import AccountAudit, User, UserSession, utcnow

Now = Callable[[], datetime]

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
        site_id=user.site_id,
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
        self._login_limits = LoginLimiter(settings)
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
        site_id: str | None = None,
    ) -> Account:
        """Add a user; raises AccountError (UserExistsError when the name is taken). A council
        account names its ``site_id``; no other does."""
        if not USERNAME.fullmatch(username):
            raise AccountError(
                f"user name {username!r}: 1-64 letters, digits or . _ @ -, starting with a "
                "letter or digit"
            )
        check_role(role, department, is_head, site_id)
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
                site_id=site_id,
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
                    site_id=dev.site_id,
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
            self._login_limits.check(session, username, client, now)
            user = self._require(session, username)
            if not self._verify(user, current) or not user.active:
                self._login_limits.record_failure(session, username, client, now)
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
            self._login_limits.check(session, username, client, now)
            user = self._find(session, username)
            if not self._verify(user, password) or user is None or not user.active:
                self._login_limits.record_failure(session, username, client, now)
                session.commit()
                raise LoginRefused()
            if self._hasher.check_needs_rehash(user.password_hash):
                user.password_hash = self._hasher.hash(password)
            self._login_limits.forget_user(session, username)
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
    def _find(session: Session, username: str) -> User | None:
        return session.scalars(select(User).where(User.username == username)).one_or_none()

    @staticmethod
    def _require(session: Session, username: str) -> User:
        user = AccountService._find(session, username)
        if user is None:
            raise UnknownUserError(username)
        return user
