"""The accounts API: sign in and out, who am I, one's own password; admins manage users.

Sessions and who is calling are dispatch/auth.py's; this module only offers the routes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from dispatch.accounts import (
    Account,
    AccountError,
    AccountService,
    LoginRefused,
    RateLimited,
    UnknownUserError,
    UserExistsError,
    WrongPasswordError,
)
from dispatch.auth import SESSION_COOKIE, AuthContextDep, IdentifiedDep, PrincipalDep
from dispatch.config import Department, Role
from dispatch.http.deps import API_PREFIX
from dispatch.security import CLEAR_SITE_DATA
from dispatch.workflow import Actor


def require_admin(principal: PrincipalDep) -> Actor:
    if principal.role is not Role.ADMIN:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only an admin manages accounts")
    return principal


AdminDep = Annotated[Actor, Depends(require_admin)]


def _accounts(context: AuthContextDep) -> AccountService:
    if context.accounts is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this server has no accounts")
    return context.accounts


AccountsDep = Annotated[AccountService, Depends(_accounts)]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(_Schema):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserSummary(_Schema):
    username: str
    display_name: str
    role: Role
    department: Department | None
    must_change_password: bool = Field(
        default=False, description="only POST /auth/password is open until it is changed"
    )


class LoginResponse(_Schema):
    token: str = Field(description="the session token; also set as the cw_session cookie")
    expires_at: datetime
    user: UserSummary


class UserPublic(UserSummary):
    is_head: bool
    active: bool
    created_at: datetime
    password_changed_at: datetime


class UserCreate(_Schema):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: Role
    department: Department | None = None
    display_name: str = Field(default="", max_length=128)
    is_head: bool = False
    must_change_password: bool = False


class PasswordChange(_Schema):
    password: str = Field(min_length=1, max_length=1024)
    must_change_password: bool = False


class OwnPasswordChange(_Schema):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


def _summary(account: Account) -> UserSummary:
    return UserSummary(
        username=account.username,
        display_name=account.display_name,
        role=account.role,
        department=account.department,
        must_change_password=account.must_change_password,
    )


def _public(account: Account) -> UserPublic:
    return UserPublic(
        **_summary(account).model_dump(),
        is_head=account.is_head,
        active=account.active,
        created_at=account.created_at,
        password_changed_at=account.password_changed_at,
    )


router = APIRouter(prefix=API_PREFIX)
_REFUSED: dict[int | str, dict[str, Any]] = {401: {"description": "wrong user name or password"}}
_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"description": "too many failed logins; Retry-After says when to try again"}
}


@router.post("/auth/login", response_model=LoginResponse, responses={**_REFUSED, **_LIMITED})
def login(
    body: LoginRequest, request: Request, response: Response, accounts: AccountsDep
) -> LoginResponse:
    """Open a session: the token comes back in the body and as the HttpOnly cw_session cookie."""
    client = request.client.host if request.client else ""
    try:
        session = accounts.authenticate(body.username, body.password, client)
    except RateLimited as exc:
        raise _too_many_attempts(exc) from exc
    except LoginRefused as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from exc
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=int(accounts.settings.session_hours * 3600),
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return LoginResponse(
        token=session.token, expires_at=session.expires_at, user=_summary(session.account)
    )


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(authenticated: IdentifiedDep, context: AuthContextDep, response: Response) -> None:
    """End the session this request was made with (a config token has none to end)."""
    if authenticated.session_token is not None and context.accounts is not None:
        context.accounts.logout(authenticated.session_token)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    # The next person on this browser must not find this one's evidence, cookies or storage.
    response.headers["Clear-Site-Data"] = CLEAR_SITE_DATA


@router.get("/auth/me", response_model=UserSummary)
def me(authenticated: IdentifiedDep) -> UserSummary:
    """Who the caller is; a config token shows its name as the user name."""
    if authenticated.account is not None:
        return _summary(authenticated.account)
    actor = authenticated.actor
    return UserSummary(
        username=actor.name, display_name=actor.name, role=actor.role, department=actor.department
    )


def _too_many_attempts(limited: RateLimited) -> HTTPException:
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        str(limited),
        headers={"Retry-After": str(limited.retry_after_seconds)},
    )


def _refusal(code: int, error: AccountError) -> HTTPException:
    """An account refusal a page can show in its language: ``detail`` = {code, message}."""
    return HTTPException(code, {"code": error.code, "message": str(error)})


@router.post(
    "/auth/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        403: {"description": "the current password is wrong, or the caller is a config token"},
        422: {"description": "the new password breaks a rule; detail.code names it"},
        **_LIMITED,
    },
)
def change_own_password(
    body: OwnPasswordChange,
    request: Request,
    authenticated: IdentifiedDep,
    accounts: AccountsDep,
) -> None:
    """Change your own password. A wrong current password counts as a failed login. Your other
    sessions end; this one goes on, and must_change_password is cleared."""
    account = authenticated.account
    if account is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a config token has no password to change")
    client = request.client.host if request.client else ""
    try:
        accounts.change_own_password(
            account.username,
            body.current_password,
            body.new_password,
            authenticated.session_token,
            client,
        )
    except RateLimited as exc:
        raise _too_many_attempts(exc) from exc
    except WrongPasswordError as exc:
        raise _refusal(status.HTTP_403_FORBIDDEN, exc) from exc
    except AccountError as exc:
        raise _refusal(status.HTTP_422_UNPROCESSABLE_CONTENT, exc) from exc


_ADMIN_ONLY: dict[int | str, dict[str, Any]] = {
    403: {"description": "only an admin manages accounts"}
}
_NO_USER: dict[int | str, dict[str, Any]] = {404: {"description": "no such user"}}


@router.get("/users", response_model=list[UserPublic], responses=_ADMIN_ONLY)
def list_users(_admin: AdminDep, accounts: AccountsDep) -> list[UserPublic]:
    return [_public(account) for account in accounts.list_users()]


@router.post(
    "/users",
    response_model=UserPublic,
    status_code=status.HTTP_201_CREATED,
    responses={**_ADMIN_ONLY, 409: {"description": "the user name is taken"}},
)
def create_user(body: UserCreate, admin: AdminDep, accounts: AccountsDep) -> UserPublic:
    try:
        account = accounts.create_user(
            body.username,
            body.password,
            body.role,
            body.department,
            body.display_name,
            body.is_head,
            body.must_change_password,
            actor=admin.name,
        )
    except UserExistsError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except AccountError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return _public(account)


@router.post(
    "/users/{username}/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_ADMIN_ONLY, **_NO_USER},
)
def set_password(
    username: str, body: PasswordChange, admin: AdminDep, accounts: AccountsDep
) -> None:
    """A new password for the user; their sessions end."""
    try:
        accounts.set_password(username, body.password, body.must_change_password, admin.name)
    except UnknownUserError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except AccountError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


@router.post(
    "/users/{username}/deactivate",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_ADMIN_ONLY, **_NO_USER},
)
def deactivate_user(username: str, admin: AdminDep, accounts: AccountsDep) -> None:
    """The user can no longer log in; their sessions end now."""
    try:
        accounts.deactivate(username, admin.name)
    except UnknownUserError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
