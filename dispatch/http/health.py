"""Liveness, readiness and the Prometheus scrape, plus the cases-by-state gauge it serves."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, HTTPException, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from dispatch.http.deps import ContextDep, ScrapeRegistryDep, SessionDep
from storage.database import SessionFactory
from storage.tables import Case, CaseState

router = APIRouter()


class CasesByStateCollector(Collector):
    """A gauge read from the database at scrape time, so it is right after a restart too."""

    def __init__(self, session_factory: SessionFactory) -> None:
        self._sessions = session_factory

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily("civicwatch_cases", "Cases by workflow state", labels=["state"])
        with self._sessions() as session:
            rows = session.execute(select(Case.state, func.count()).group_by(Case.state))
            counts: dict[str, int] = {state: count for state, count in rows}
        for state in CaseState:
            gauge.add_metric([state.value], counts.get(state.value, 0))
        yield gauge


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready: the detail says why"}})
def readyz(session: SessionDep, context: ContextDep) -> dict[str, str]:
    """Ready when the database answers and the background parts (ingest's broker
    connections) say they are up."""
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"database unreachable: {exc}"
        ) from exc
    problems = context.readiness()
    if problems:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "; ".join(problems))
    return {"status": "ready"}


@router.get("/metrics", response_class=Response)
def metrics(context: ContextDep, scrape: ScrapeRegistryDep) -> Response:
    body = generate_latest(context.metrics_registry) + generate_latest(scrape)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
