"""Accounts over a real database: argon2id hashes, session expiry and login rate limits.

Time is a fixed, hand-advanced clock; the argon2 parameters are small so the tests run fast
(the rehash test then raises them, as an operator would).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import pytest
import yaml
from argon2 import PasswordHasher
from pydantic import ValidationError
from sqlalchemy import func, select

from civicwatch.config import CivicwatchConfig
from dispatch.accounts import (
    AccountError,
    AccountService,
    AccountSettings,
    DevUser,
    LoginRefused,
    RateLimited,
    UnknownUserError,
    UserExistsError,
    WrongPasswordError,
)
from dispatch.config import Department, Role
from dispatch.workflow import PERMISSIONS, Action
from storage.database import SessionFactory
from storage.tables import LoginFailure, User, UserSession
from tests.conftest import REPO_ROOT
from tests.factories import T0

PASSWORD = "correct horse battery"
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@dataclass
class FixedClock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


def _service(
    session_factory: SessionFactory,
    clock: FixedClock,
    hasher: PasswordHasher = FAST,
    **settings: float,
) -> AccountService:
    return AccountService(session_factory, AccountSettings(**settings), clock, hasher)


@pytest.fixture
def accounts(session_factory: SessionFactory, clock: FixedClock) -> AccountService:
    service = _service(session_factory, clock)
    service.create_user("officer", PASSWORD, Role.WORKER, Department.LAW_ENFORCEMENT, "Officer Li")
    return service


def _stored_user(session_factory: SessionFactory, username: str) -> User:
    with session_factory() as session:
        return session.scalars(select(User).where(User.username == username)).one()


def test_password_is_stored_as_an_argon2id_hash(
    accounts: AccountService, session_factory: SessionFactory
) -> None:
    stored = _stored_user(session_factory, "officer").password_hash
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert FAST.verify(stored, PASSWORD)


def test_only_the_hash_of_a_session_token_is_stored(
    accounts: AccountService, session_factory: SessionFactory
) -> None:
    login = accounts.authenticate("officer", PASSWORD, "10.0.0.1")
    with session_factory() as session:
        [row] = session.scalars(select(UserSession)).all()
    assert row.token_sha256 == hashlib.sha256(login.token.encode()).hexdigest()
    assert login.token not in row.token_sha256
    resolved = accounts.resolve_session(login.token)
    assert resolved is not None
    assert (resolved.username, resolved.role, resolved.department) == (
        "officer",
        Role.WORKER,
        Department.LAW_ENFORCEMENT,
    )
    assert accounts.resolve_session(row.token_sha256) is None  # the stored hash logs nobody in


def test_wrong_password_and_unknown_user_are_the_same_refusal(accounts: AccountService) -> None:
    with pytest.raises(LoginRefused) as wrong:
        accounts.authenticate("officer", "not the password", "10.0.0.1")
    with pytest.raises(LoginRefused) as unknown:
        accounts.authenticate("nobody", PASSWORD, "10.0.0.1")
    assert str(wrong.value) == str(unknown.value)


def test_password_policy(accounts: AccountService) -> None:
    with pytest.raises(AccountError, match="at least 10"):
        accounts.create_user("short", "abc123", Role.DISPATCHER)
    with pytest.raises(AccountError, match="user name"):
        accounts.create_user("dispatcher01", "Dispatcher01", Role.DISPATCHER)
    with pytest.raises(AccountError, match="names a department"):
        accounts.create_user("nodept", PASSWORD, Role.WORKER)
    with pytest.raises(AccountError, match="config tokens"):
        accounts.create_user("robot", PASSWORD, Role.INTEGRATION)
    with pytest.raises(UserExistsError):
        accounts.create_user("officer", PASSWORD, Role.DISPATCHER)
    with pytest.raises(AccountError, match="at least 10"):
        accounts.set_password("officer", "short")
    with pytest.raises(UnknownUserError):
        accounts.set_password("nobody", PASSWORD)


def test_session_expires_after_its_lifetime_even_when_used(
    accounts: AccountService, clock: FixedClock
) -> None:
    token = accounts.authenticate("officer", PASSWORD, "10.0.0.1").token
    for _ in range(11):  # used every hour: never idle
        clock.advance(hours=1)
        assert accounts.resolve_session(token) is not None
    clock.advance(hours=1)  # 12 h after login
    assert accounts.resolve_session(token) is None
    clock.now = T0  # the session row is gone, not merely judged expired
    assert accounts.resolve_session(token) is None


def test_idle_session_expires(
    accounts: AccountService, clock: FixedClock, session_factory: SessionFactory
) -> None:
    token = accounts.authenticate("officer", PASSWORD, "10.0.0.1").token
    clock.advance(minutes=119)
    assert accounts.resolve_session(token) is not None  # touches last_seen_at
    clock.advance(minutes=119)
    assert accounts.resolve_session(token) is not None
    with session_factory() as session:
        assert session.scalars(select(UserSession.last_seen_at)).one() == clock.now
    clock.advance(minutes=120)
    assert accounts.resolve_session(token) is None


def test_last_seen_is_written_at_most_once_a_minute(
    accounts: AccountService, clock: FixedClock, session_factory: SessionFactory
) -> None:
    token = accounts.authenticate("officer", PASSWORD, "10.0.0.1").token
    clock.advance(seconds=30)
    assert accounts.resolve_session(token) is not None
    with session_factory() as session:
        assert session.scalars(select(UserSession.last_seen_at)).one() == T0
    clock.advance(seconds=31)
    assert accounts.resolve_session(token) is not None
    with session_factory() as session:
        assert session.scalars(select(UserSession.last_seen_at)).one() == clock.now


def test_deactivation_ends_sessions_and_refuses_login(accounts: AccountService) -> None:
    token = accounts.authenticate("officer", PASSWORD, "10.0.0.1").token
    accounts.deactivate("officer")
    assert accounts.resolve_session(token) is None
    with pytest.raises(LoginRefused):
        accounts.authenticate("officer", PASSWORD, "10.0.0.1")
    assert [(a.username, a.active) for a in accounts.list_users()] == [("officer", False)]


def test_new_password_ends_sessions(accounts: AccountService) -> None:
    token = accounts.authenticate("officer", PASSWORD, "10.0.0.1").token
    accounts.set_password("officer", "a different passphrase")
    assert accounts.resolve_session(token) is None
    with pytest.raises(LoginRefused):
        accounts.authenticate("officer", PASSWORD, "10.0.0.1")
    assert accounts.authenticate("officer", "a different passphrase", "10.0.0.1").token


def test_own_change_keeps_this_session_ends_the_others_and_is_audited(
    accounts: AccountService, clock: FixedClock
) -> None:
    accounts.set_password("officer", "set-by-the-admin", must_change=True, actor="admin")
    here = accounts.authenticate("officer", "set-by-the-admin", "10.0.0.1").token
    elsewhere = accounts.authenticate("officer", "set-by-the-admin", "10.0.0.2").token
    assert accounts.get_user("officer").must_change_password
    with pytest.raises(WrongPasswordError):
        accounts.change_own_password("officer", "a-guess-a-guess", "mine-and-only-mine", here)
    clock.advance(minutes=1)
    accounts.change_own_password(
        "officer", "set-by-the-admin", "mine-and-only-mine", here, "10.0.0.1"
    )
    assert accounts.resolve_session(here) is not None
    assert accounts.resolve_session(elsewhere) is None
    assert not accounts.get_user("officer").must_change_password
    accounts.deactivate("officer", actor="admin")
    assert [(e.action, e.actor, e.client, e.at) for e in accounts.audit_entries("officer")] == [
        ("created", "local", "", T0),
        ("password_set", "admin", "", T0),
        ("password_changed", "officer", "10.0.0.1", T0 + timedelta(minutes=1)),
        ("deactivated", "admin", "", T0 + timedelta(minutes=1)),
    ]


def test_logout_ends_the_session(accounts: AccountService) -> None:
    first = accounts.authenticate("officer", PASSWORD, "10.0.0.1").token
    second = accounts.authenticate("officer", PASSWORD, "10.0.0.2").token
    accounts.logout(first)
    assert accounts.resolve_session(first) is None
    assert accounts.resolve_session(second) is not None  # the other device stays logged in


def _fail(accounts: AccountService, username: str, client: str, times: int) -> None:
    for _ in range(times):
        with pytest.raises(LoginRefused):
            accounts.authenticate(username, "wrong password!", client)


def test_rate_limit_per_user_name(accounts: AccountService, clock: FixedClock) -> None:
    for minute in range(5):  # from five addresses, a minute apart
        clock.now = T0 + timedelta(minutes=minute)
        _fail(accounts, "officer", f"10.0.0.{minute}", 1)
    with pytest.raises(RateLimited) as limited:  # even the right password, from a new address
        accounts.authenticate("officer", PASSWORD, "10.9.9.9")
    # The first failure (at T0) leaves the 15-minute window at T0 + 15 min.
    assert limited.value.retry_after_seconds == 11 * 60
    clock.now = T0 + timedelta(minutes=15)
    assert accounts.authenticate("officer", PASSWORD, "10.9.9.9").token


def test_rate_limit_per_client_address(
    accounts: AccountService, clock: FixedClock, session_factory: SessionFactory
) -> None:
    accounts.create_user("dispatcher", PASSWORD, Role.DISPATCHER)
    for number in range(19):  # one address guessing many names: below its own, higher limit
        _fail(accounts, f"guess{number}", "203.0.113.7", 1)
    assert accounts.authenticate("dispatcher", PASSWORD, "203.0.113.7").token  # a shared NAT
    _fail(accounts, "guess19", "203.0.113.7", 1)
    with pytest.raises(RateLimited):
        accounts.authenticate("dispatcher", PASSWORD, "203.0.113.7")
    assert accounts.authenticate("dispatcher", PASSWORD, "198.51.100.1").token  # other address
    with session_factory() as session:  # a refusal while limited is not counted again
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 20
    clock.advance(minutes=15)
    assert accounts.authenticate("dispatcher", PASSWORD, "203.0.113.7").token


def test_success_clears_the_user_names_failures(accounts: AccountService) -> None:
    _fail(accounts, "officer", "10.0.0.1", 4)
    assert accounts.authenticate("officer", PASSWORD, "10.0.0.2").token
    _fail(accounts, "officer", "10.0.0.3", 4)  # would be 8 without the reset
    assert accounts.authenticate("officer", PASSWORD, "10.0.0.4").token


def test_login_rehashes_when_argon2_parameters_change(
    accounts: AccountService, session_factory: SessionFactory, clock: FixedClock
) -> None:
    old = _stored_user(session_factory, "officer").password_hash
    stronger = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    assert stronger.check_needs_rehash(old)
    upgraded = _service(session_factory, clock, stronger)
    assert upgraded.authenticate("officer", PASSWORD, "10.0.0.1").token
    new = _stored_user(session_factory, "officer").password_hash
    assert new != old
    assert not stronger.check_needs_rehash(new)
    assert "m=2048,t=2,p=1" in new
    upgraded.authenticate("officer", PASSWORD, "10.0.0.1")  # no further change once current
    assert _stored_user(session_factory, "officer").password_hash == new


def test_dev_users_are_created_once_and_never_overwritten(
    accounts: AccountService, session_factory: SessionFactory
) -> None:
    dev = [
        DevUser(username="officer", password="dev-password-1", role=Role.DISPATCHER),
        DevUser(username="desk", password="dev-password-2", role=Role.DISPATCHER),
    ]
    assert accounts.ensure_dev_users(dev) == ["desk"]
    assert accounts.ensure_dev_users(dev) == []
    assert _stored_user(session_factory, "officer").role == "worker"  # untouched
    assert (
        accounts.authenticate("desk", "dev-password-2", "10.0.0.1").account.role is Role.DISPATCHER
    )


def test_production_refuses_development_accounts() -> None:
    """The example config's dev_users must not survive outside development."""
    example = yaml.safe_load((REPO_ROOT / "configs" / "example.yaml").read_text(encoding="utf-8"))
    assert CivicwatchConfig.model_validate(example).server.api.accounts.dev_users
    with pytest.raises(ValidationError, match=r"refuses server\.api\.accounts\.dev_users"):
        CivicwatchConfig.model_validate({**example, "environment": "production"})


def test_the_documented_permission_table_is_the_workflows() -> None:
    text = (REPO_ROOT / "docs" / "access.md").read_text(encoding="utf-8")
    header = "| action | admin | dispatcher | supervisor | worker | integration | system |"
    lines = text[text.index(header) :].splitlines()
    roles = [Role(cell.strip()) for cell in header.strip("|").split("|")[1:]]
    documented = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        marks = zip(roles, cells[1:], strict=True)
        documented[Action(cells[0])] = {role for role, cell in marks if cell}
    assert documented == {action: set(allowed) for action, allowed in PERMISSIONS.items()}


class CountingHasher(PasswordHasher):
    """A real argon2 hasher that counts its verifications."""

    verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verifications += 1
        return super().verify(hash, password)


def test_an_unknown_user_costs_an_argon2_verification_too(
    session_factory: SessionFactory, clock: FixedClock
) -> None:
    hasher = CountingHasher(time_cost=1, memory_cost=1024, parallelism=1)
    accounts = _service(session_factory, clock, hasher)
    accounts.create_user("officer", PASSWORD, Role.DISPATCHER)
    for username, password in [("nobody", PASSWORD), ("officer", "wrong password!")]:
        before = hasher.verifications
        with pytest.raises(LoginRefused):
            accounts.authenticate(username, password, "10.0.0.1")
        assert hasher.verifications == before + 1, username
