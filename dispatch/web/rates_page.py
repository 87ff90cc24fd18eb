"""/console/rates: departments ranked by the three rates (响应率 / 解决率 / 满意率) for this week,
this month and last month (docs/rates.md). A department's people see their own department."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import RedirectResponse

from dispatch.config import Role
from dispatch.http.deps import PrincipalDep, SessionDep, get_context, visible_cases
from dispatch.reports.period import Period
from dispatch.reports.rates import GroupBy, Rates, RatesTable, Source, measure
from dispatch.web.page_route import PageRoute, home_of
from dispatch.web.rendering import render
from storage.tables import utcnow

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE = "/console/rates"
PAGE_ROLES = frozenset({Role.DISPATCHER, Role.ADMIN, Role.SUPERVISOR, Role.WORKER})
# (the card's key, period, periods back): this week, this month, last month
CARDS = (("week", Period.WEEK, 0), ("month", Period.MONTH, 0), ("last_month", Period.MONTH, 1))


@dataclass(frozen=True)
class Ranked:
    rank: int
    department: str
    rates: Rates


@dataclass(frozen=True)
class Card:
    key: str
    table: RatesTable
    ranked: tuple[Ranked, ...]


def ranking(table: RatesTable) -> tuple[Ranked, ...]:
    """Departments best first: by the mean of the rates that have a value (a department with
    none last), then by more cases, then by name."""

    def score(rates: Rates) -> float:
        values = [
            v
            for v in (rates.response_rate, rates.resolution_rate, rates.satisfaction_rate)
            if v is not None
        ]
        return sum(values) / len(values) if values else -1.0

    order = sorted(table.rows.items(), key=lambda kv: (-score(kv[1]), -kv[1].dispatched, kv[0]))
    return tuple(Ranked(i, name, rates) for i, (name, rates) in enumerate(order, start=1))


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


@router.get(PAGE)
def rates_page(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    source: Annotated[Source, Query()] = Source.ALL,
) -> Response:
    """The three cards, each a table of departments ranked by their rates."""
    if principal.role not in PAGE_ROLES:
        return RedirectResponse(home_of(principal), status.HTTP_303_SEE_OTHER)
    registry = get_context(request).registry
    now = utcnow()
    cards = []
    for key, period, back in CARDS:
        table = measure(
            session,
            registry,
            period,
            now,
            by=GroupBy.DEPARTMENT,
            source=source,
            visible=visible_cases(principal),
            back=back,
        )
        cards.append(Card(key, table, ranking(table)))
    return render(request, "rates.html", principal, cards=cards, source=source.value, pct=pct)
