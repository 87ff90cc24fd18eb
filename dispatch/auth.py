"""Who is calling: session cookies, session bearer tokens and config API tokens.

A person logs in (POST /api/v1/auth/login, dispatch/http/accounts.py) and gets a session token,
both as the HttpOnly ``cw_session`` cookie (the console and worker pages) and in the body
(scripts, as a bearer token). Integrations use long-lived tokens from the config. A request that
changes something and is authenticated by the cookie must carry ``X-Requested-With: civicwatch``:
a cross-site form cannot set that header, so a forged request fails even where SameSite does not
protect.

A person whose account says ``must_change_password`` may only change it (and see who they are, and
log out) until they have: every other route answers 403 ``password_change_required``, and the
pages send them to /account/password.

This module reads the ApiContext from ``request.app.state.api`` through a Protocol, so that
dispatch/http/deps.py can import it without a cycle.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Protocol, cast

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from dispatch.accounts import (
    Account,
    AccountService,
)
from dispatch.config import ApiSettings, ApiToken
from dispatch.http.paths import API_PREFIX
from dispatch.workflow import Actor

SESSION_COOKIE = "cw_session"
CSRF_HEADER = "X-Requested-With"
CSRF_VALUE = "civicwatch"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuthContext(Protocol):
    """The part of dispatch.http.deps.ApiContext that authentication reads."""

    @property
    def settings(self) -> ApiSettings: ...

    @property
    def accounts(self) -> AccountService | None: ...


@dataclass(frozen=True)
class Authenticated:
    """The caller and how they proved it; ``session_token`` is set for a person's session."""

    actor: Actor
    via: str  # "cookie", "bearer-session" or "token"
    session_token: str | None = None
    account: Account | None = None


PASSWORD_CHANGE_REQUIRED = "password_change_required"


class PasswordChangeRequired(HTTPException):
    """403 for a person who must change their password first; pages redirect instead."""

    def __init__(self) -> None:
        super().__init__(
            status.HTTP_403_FORBIDDEN,
            {
                "code": PASSWORD_CHANGE_REQUIRED,
                "message": f"change your password first: POST {API_PREFIX}/auth/password",
            },
        )


def _auth_context(request: Request) -> AuthContext:
    return cast(AuthContext, request.app.state.api)


AuthContextDep = Annotated[AuthContext, Depends(_auth_context)]
_bearer = HTTPBearer(auto_error=False, description="a session token or a config API token")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="the login session")


def _actor(account: Account) -> Actor:
    return Actor(account.username, account.role, account.department, account.site_id)


def find_token(tokens: Iterable[ApiToken], presented: str | None) -> ApiToken | None:
    """The config token equal to ``presented``, compared in constant time."""
    if not presented:
        return None
    found = None
    for token in tokens:  # compare against every token: timing says nothing about which matched
        if hmac.compare_digest(token.token.get_secret_value().encode(), presented.encode()):
            found = token
    return found


def authenticate_request(
    request: Request,
    context: AuthContextDep,
    cookie: Annotated[str | None, Depends(_cookie)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Authenticated:
    """The caller, from (in order) the session cookie, a bearer session token or a config token;
    401 when none is valid, 403 for a cookie-authenticated change without the CSRF header."""
    accounts = context.accounts
    if cookie and accounts is not None:
        account = accounts.resolve_session(cookie)
        if account is not None:
            if request.method in UNSAFE_METHODS and request.headers.get(CSRF_HEADER) != CSRF_VALUE:
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    f"a change made with the session cookie needs the header "
                    f"{CSRF_HEADER}: {CSRF_VALUE}",
                )
            return Authenticated(_actor(account), "cookie", cookie, account)
    presented = credentials.credentials if credentials else None
    # Config tokens first: comparing them costs no database query.
    token = find_token(context.settings.tokens, presented)
    if token is not None:
        return Authenticated(Actor(token.name, token.role, token.department), "token")
    if presented and accounts is not None:
        account = accounts.resolve_session(presented)
        if account is not None:
            return Authenticated(_actor(account), "bearer-session", presented, account)
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "log in, or send a valid bearer token",
        headers={"WWW-Authenticate": "Bearer"},
    )


IdentifiedDep = Annotated[Authenticated, Depends(authenticate_request)]


def require_settled_password(authenticated: IdentifiedDep) -> Authenticated:
    """The caller, unless they must change their password first (PasswordChangeRequired)."""
    if authenticated.account is not None and authenticated.account.must_change_password:
        raise PasswordChangeRequired()
    return authenticated


# Every route but logout, me and the password change: those take IdentifiedDep.
AuthenticatedDep = Annotated[Authenticated, Depends(require_settled_password)]


def get_principal(authenticated: AuthenticatedDep) -> Actor:
    """The acting principal of a request (a FastAPI dependency)."""
    return authenticated.actor


PrincipalDep = Annotated[Actor, Depends(get_principal)]
