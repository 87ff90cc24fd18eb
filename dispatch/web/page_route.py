"""What every page module shares: the page route class (no principal: "sign in first") and who
gets which home page."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request, Response, status
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from dispatch.auth import PasswordChangeRequired
from dispatch.config import Role
from dispatch.http.deps import Principal

PASSWORD_PAGE = "/account/password"
CONSOLE_ROLES = frozenset({Role.DISPATCHER, Role.ADMIN, Role.SUPERVISOR, Role.INTEGRATION})
WORKER_ROLES = frozenset({Role.WORKER, Role.SUPERVISOR})


def home_of(principal: Principal) -> str:
    if principal.role is Role.COUNCIL:
        return "/council"
    return "/worker" if principal.role is Role.WORKER else "/console"


class PageRoute(APIRoute):
    """A page route: no principal means "sign in first", not a 401 body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as exc:
                target = request.url.path
                if request.url.query:
                    target += f"?{request.url.query}"
                if isinstance(exc, PasswordChangeRequired):
                    page = PASSWORD_PAGE
                elif exc.status_code == status.HTTP_401_UNAUTHORIZED:
                    page = "/login"
                else:
                    raise
                return RedirectResponse(
                    f"{page}?next={quote(target, safe='')}", status.HTTP_303_SEE_OTHER
                )

        return page_handler
