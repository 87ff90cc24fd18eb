"""Rendering a page: the templates, the request's language, times in each site's zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request, Response
from fastapi.templating import Jinja2Templates
from prometheus_client import Counter

from contracts.sites import SiteRegistry
from dispatch.http.deps import Principal, get_context
from dispatch.web.i18n import LANGUAGE_COOKIE, LANGUAGES, pick_language, translator
from dispatch.web.timeline import TimelineText
from storage.tables import utcnow

WEB_DIR = Path(__file__).resolve().parent
PAGE_SCRIPT_GROUPS = (
    "kind",
    "department",
    "state",
    "action",
    "priority",
    "tier",
    "verification",
    "evidence_label",
    "close_reason",
    "error",
    "ui",
)
"""The catalogue's groups every page's script gets (``CW.t(group, key)``)."""


@cache
def script_messages(language: str) -> dict[str, dict[str, str]]:
    """PAGE_SCRIPT_GROUPS of the shipped catalogue of ``language`` (read once, as the catalogue
    is): each group is a scan of every message, ~1 ms a render for the eleven of them, on every
    page and fragment. Read only: the same dicts serve every request."""
    t = translator(language)
    return {group: t.group(group) for group in PAGE_SCRIPT_GROUPS}


@dataclass(frozen=True)
class WebState:
    """What the pages share, built once per app by create_app."""

    templates: Jinja2Templates
    attachments_refused: Counter


def web_state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


class SiteClock:
    """Shows UTC times in a site's time zone."""

    def __init__(self, registry: SiteRegistry) -> None:
        self._zones = {site.id: ZoneInfo(site.timezone) for site in registry.sites}
        self.default = ZoneInfo(registry.sites[0].timezone)

    def zone(self, site_id: str | None) -> ZoneInfo:
        return self._zones.get(site_id or "", self.default)

    def local(self, value: datetime | str | None, site_id: str | None = None, fmt: str = "") -> str:
        """``value`` (a UTC datetime or its ISO text) in the site's zone, as text."""
        if value is None:
            return "—"
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.astimezone(self.zone(site_id)).strftime(fmt or "%Y-%m-%d %H:%M")


def render(
    request: Request,
    template: str,
    principal: Principal | None,
    status_code: int = 200,
    **values: Any,
) -> Response:
    """Render a page in the request's language; ``?lang=`` is remembered in a cookie."""
    language, chosen = pick_language(request)
    t = translator(language)
    context = get_context(request)
    clock = SiteClock(context.registry)
    page = {
        "request": request,
        "t": t,
        "lang": language,
        "principal": principal,
        "clock": clock,
        "timeline_line": TimelineText(t, clock.local),
        # The language switch keeps the page's other parameters (a filtered list stays filtered).
        "language_links": {
            other: f"?{request.url.include_query_params(lang=other).query}" for other in LANGUAGES
        },
        "now": utcnow(),
        "i18n": {
            # The groups the page's script names things from; "error": the API's error codes,
            # so a refusal shows in the page's language, never as the API's English detail.
            **script_messages(language),
            # The script shows times in each site's zone, as the server does.
            "zones": {site.id: site.timezone for site in context.registry.sites},
        },
        "attachment_megabytes": context.web.attachment_max_bytes // (1024 * 1024),
        **values,
    }
    response = web_state(request).templates.TemplateResponse(
        request, template, page, status_code=status_code
    )
    if chosen:
        response.set_cookie(
            LANGUAGE_COOKIE, language, max_age=365 * 24 * 3600, samesite="lax", httponly=False
        )
    response.headers["Cache-Control"] = "no-store"
    return response
