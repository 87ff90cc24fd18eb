"""What an account is and the rules it keeps: the Account a page sees, the password policy,
which roles fit a person, and the errors that name a broken rule."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from dispatch.config import (
    MIN_PASSWORD_LENGTH,
    USERNAME_PATTERN,
    Department,
    Role,
    account_role_problem,
)

MAX_PASSWORD_LENGTH = 1024  # argon2 hashes anything; a megabyte password is only a cost
USERNAME = re.compile(USERNAME_PATTERN)


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
    site_id: str | None = None  # council accounts: the one site whose consultations they see


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


def check_role(
    role: Role, department: Department | None, is_head: bool, site_id: str | None = None
) -> None:
    """Raise AccountError unless the role fits a person and the department (and, for a council
    account, the site) fits the role."""
    problem = account_role_problem(role, department, is_head, site_id)
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
