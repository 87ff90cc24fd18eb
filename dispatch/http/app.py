"""The app factory: the whole HTTP surface (API, Open311, console pages) over one ApiContext.

The only module that imports the routers; they import dispatch.http.deps, never this module.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CollectorRegistry

from dispatch import open311
from dispatch.apidocs import install_api_docs, install_stream_docs
from dispatch.errors import install_error_handlers
from dispatch.http import (
    accounts,
    cameras,
    case_export,
    cases,
    consultations,
    evidence,
    exemptions,
    health,
    notifications,
    rates,
    registry,
    views,
    warning_stages,
)
from dispatch.http import templates as response_templates
from dispatch.http.deps import ApiContext
from dispatch.metrics import OverdueNowCollector, RatesCollector
from dispatch.notifications.metrics import NotificationBacklogCollector
from dispatch.ops import install_operations
from dispatch.security import SecurityHeaders
from dispatch.web import (
    console_page,
    council_pages,
    feed,
    pages,
    plan_pages,
    registry_pages,
    reports_page,
    stats,
    uploads,
    wall,
)
from dispatch.web import hotline as hotline_page
from dispatch.web import rates_page as rates_page
from dispatch.web import report_page as resident_report_page
from dispatch.web import templates_admin as templates_page
from dispatch.web.deadlines import deadlines_markup
from dispatch.web.error_pages import install_error_pages
from dispatch.web.rendering import WEB_DIR, WebState
from storage.tables import utcnow


def create_app(context: ApiContext) -> FastAPI:
    """Build the app; ``context`` becomes ``app.state.api``, which every route reads."""
    # /docs is served from local assets (dispatch/apidocs.py); ReDoc would need a CDN.
    app = FastAPI(
        title="civicwatch",
        version="1",
        summary="cases from camera violations",
        docs_url=None,
        redoc_url=None,
    )
    install_api_docs(app)
    app.state.api = context
    # The gauges /metrics reads from the database at scrape time, apart from the process's own.
    scrape = CollectorRegistry()
    scrape.register(health.CasesByStateCollector(context.session_factory))
    scrape.register(OverdueNowCollector(context.session_factory, utcnow))
    scrape.register(RatesCollector(context.session_factory, context.registry, utcnow))
    app.state.scrape_registry = scrape
    install_operations(app, context.session_factory, context.registry, scrape)
    install_error_handlers(app)  # after install_operations: its out-of-range handler is replaced
    install_error_pages(app)  # HTML error pages for browsers, JSON for the rest
    app.include_router(case_export.router)  # before cases: /cases/export.csv is no /cases/{id}
    app.include_router(cases.router)
    app.include_router(evidence.router)
    app.include_router(consultations.router)
    app.include_router(cameras.router)
    app.include_router(accounts.router)
    app.include_router(views.router)
    app.include_router(response_templates.router)
    app.include_router(health.router)
    app.include_router(rates.router)
    app.include_router(exemptions.router)
    app.include_router(warning_stages.router)
    app.include_router(registry.router)
    _install_web(app, context)
    app.include_router(notifications.router)
    scrape.register(NotificationBacklogCollector(context.session_factory))
    app.include_router(open311.router)
    install_stream_docs(app)  # the live feed, as an event stream, in the OpenAPI document
    app.add_middleware(SecurityHeaders)  # added last: the outermost, so on every response
    return app


def _install_web(app: FastAPI, context: ApiContext) -> None:
    """The pages, static files, live feed, stats and upload routes, and what they share."""
    templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))
    templates.env.globals["deadlines_markup"] = deadlines_markup  # the deadline macro's markup
    refused = uploads.attachments_refused_counter(context.metrics_registry)
    app.state.web = WebState(templates=templates, attachments_refused=refused)
    app.state.feed_hub = feed.FeedHub(context.session_factory, context.web.feed_poll_seconds)
    app.state.stats_cache = stats.StatsCache(
        context.web.stats_max_age_seconds, session_factory=context.session_factory
    )
    app.add_middleware(
        uploads.UploadSizeGuard, limit=context.web.attachment_max_bytes, refused=refused
    )
    app.mount("/static", StaticFiles(directory=str(WEB_DIR / "static")), name="static")
    app.include_router(feed.router)
    app.include_router(stats.router)
    app.include_router(uploads.router)
    app.include_router(pages.router)
    app.include_router(console_page.router)
    app.include_router(plan_pages.router)
    app.include_router(reports_page.router)
    app.include_router(rates_page.router)
    app.include_router(plan_pages.api_router)
    app.include_router(wall.router)
    app.include_router(templates_page.router)
    app.include_router(resident_report_page.router)
    app.include_router(hotline_page.router)
    app.include_router(council_pages.router)
    app.include_router(registry_pages.router)
