"""Counting refused residents' reports: ``civicwatch_report_refusals_total{channel, code}``.

Every refusal of a resident's report is answered where it happens (the form shows it, Open311
and the hotline answer the error shape); this module is the one place it is also COUNTED. The
routes file a report through ``submit_counted`` instead of calling ``submit_report`` directly,
so every ``ReportRefused`` the intake raises is counted with the report's channel (web, qr,
hotline, open311) and the refusal's ``report_*`` code before it rises on. Refusals before the
intake (a forged form, a bad poster token or integration key) call ``count_refusal`` where they
answer; a body FastAPI cannot even parse is counted as ``report_invalid_form`` by the route
class ``counting_route`` makes. The tracking page's lookup limit counts with channel
``tracking``.

The counter lives on the app's own registry (``ApiContext.metrics_registry``, so /metrics shows
it) and is created on first use, one per app: nothing is registered at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Final

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from dispatch.residents.intake import (
    IntakeDeps,
    ReportReceipt,
    ReportRefused,
    ReportSubmission,
    submit_report,
)

METRIC: Final = "civicwatch_report_refusals"
TRACKING_CHANNEL: Final = "tracking"  # the tracking page's lookups (/report/done, /report/t)
INVALID_FORM: Final = "report_invalid_form"  # a body that does not parse as the route's form
_STATE_KEY: Final = "report_refusals"


def refusal_counter(registry: CollectorRegistry | None) -> Counter:
    """A new counter on ``registry``. A second app on the same registry (tests) counts apart,
    on no registry, rather than failing to start."""
    description = "Residents' reports and tracking lookups refused, by channel and report_* code"
    try:
        return Counter(METRIC, description, ["channel", "code"], registry=registry)
    except ValueError:  # already registered on this registry by another app
        return Counter(METRIC, description, ["channel", "code"], registry=None)


def app_refusals(request: Request) -> Counter:
    """This app's counter, created on first use on its ApiContext's metrics registry."""
    state = request.app.state
    counter = getattr(state, _STATE_KEY, None)
    if not isinstance(counter, Counter):
        context = getattr(state, "api", None)
        registry = getattr(context, "metrics_registry", None)
        counter = refusal_counter(registry if isinstance(registry, CollectorRegistry) else None)
        setattr(state, _STATE_KEY, counter)
    return counter


def count_refusal(request: Request, channel: str, code: str) -> None:
    """Count one refusal on ``channel`` with its ``report_*`` ``code``."""
    app_refusals(request).labels(channel=channel, code=code).inc()


def submit_counted(
    request: Request, session: Session, submission: ReportSubmission, *, deps: IntakeDeps
) -> ReportReceipt:
    """``submit_report``, with its refusal counted (then raised on, unchanged)."""
    try:
        return submit_report(session, submission, deps=deps)
    except ReportRefused as exc:
        count_refusal(request, submission.channel.value, exc.code)
        raise


class _CountsInvalidForms(APIRoute):
    channel_of: ClassVar[Callable[[Request], str]]

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        channel_of = type(self).channel_of

        async def counted(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError:
                count_refusal(request, channel_of(request), INVALID_FORM)
                raise  # answered as before, by the app's (or the base route's) handler
            except HTTPException as exc:
                # Starlette's own, as FastAPI raises it (our ApiErrors are subclasses): a body
                # it could not parse at all
                if type(exc) is HTTPException and exc.status_code == 400:
                    count_refusal(request, channel_of(request), INVALID_FORM)
                raise

        return counted


def counting_route(base: type[APIRoute], channel_of: Callable[[Request], str]) -> type[APIRoute]:
    """``base`` that also counts a request refused before its handler ran (a body that does not
    parse or is nested too deep, a field over its limit) as ``report_invalid_form`` on
    ``channel_of(request)``. For a report route only:
    ``router.add_api_route(..., route_class_override=counting_route(...))``."""
    name = f"InvalidFormCounting{base.__name__}"
    return type(name, (_CountsInvalidForms, base), {"channel_of": staticmethod(channel_of)})
