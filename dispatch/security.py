"""Browser-facing security headers on every response the app sends.

Pages may load scripts, styles and images from this origin only (the console keeps its script in
static/ and its data in a JSON block, so no inline script is needed); everything else (API JSON,
evidence images, metrics) may run nothing at all, even when a browser is made to render it.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
# Not a page: no script, style or plugin, a unique origin (sandbox), never framed.
RESOURCE_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"
# What a logout response tells the browser to forget: cached evidence, cookies, local storage.
CLEAR_SITE_DATA = '"cache", "cookies", "storage"'

_ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeaders:
    """Adds the headers to every HTTP response; a route that sets one itself keeps its own."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _ALWAYS.items():
                    headers.setdefault(name, value)
                page = headers.get("content-type", "").startswith("text/html")
                headers.setdefault(
                    "Content-Security-Policy", PAGE_POLICY if page else RESOURCE_POLICY
                )
            await send(message)

        await self._app(scope, receive, send_with_headers)
