"""GET /api/v1/rates: the three rates (响应率 / 解决率 / 满意率) per department or per site, for
one week or month (docs/rates.md defines them). Scoped like the case list: a department's
people get their own department's cases only (so its one row, and a total over it); the
dispatcher, admin and integration get every row."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from dispatch.errors import ApiProblem
from dispatch.http.deps import API_PREFIX, ContextDep, PrincipalDep, SessionDep, visible_cases
from dispatch.reports.period import EARLIEST, Period
from dispatch.reports.rates import GroupBy, Rates, RatesTable, Source, measure
from storage.tables import utcnow

router = APIRouter(prefix=API_PREFIX, tags=["rates"])

LATEST = date(2100, 12, 31)  # later dates are typing mistakes, not periods


class RatesQuery(BaseModel):
    """What the rates may be asked: the period holding day ``at`` (each site's today when not
    given), grouped by department or site, over every case or residents' complaints only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    period: Period = Period.MONTH
    at: date | None = Field(
        default=None, ge=EARLIEST, le=LATEST, description="a day of the period (YYYY-MM-DD)"
    )
    by: GroupBy = GroupBy.DEPARTMENT
    source: Source = Field(
        default=Source.ALL,
        description="all: every case; resident: cases with a resident report (12345's count)",
    )


class RatesRow(BaseModel):
    """One department's (or site's) counts and rates; a rate with nothing to count is null."""

    department: str | None = None
    site: str | None = None
    dispatched: int
    responded: int
    resolved: int
    ratings: int
    satisfied: int
    response_rate: float | None
    resolution_rate: float | None
    satisfaction_rate: float | None


class RatesOut(BaseModel):
    period: Period
    first_day: date
    last_day: date
    by: GroupBy
    source: Source
    rows: list[RatesRow]
    total: RatesRow = Field(description="the rows together (department and site null)")


def _row(rates: Rates, department: str | None = None, site: str | None = None) -> RatesRow:
    return RatesRow(
        department=department,
        site=site,
        dispatched=rates.dispatched,
        responded=rates.responded,
        resolved=rates.resolved,
        ratings=rates.ratings,
        satisfied=rates.satisfied,
        response_rate=rates.response_rate,
        resolution_rate=rates.resolution_rate,
        satisfaction_rate=rates.satisfaction_rate,
    )


def rates_out(table: RatesTable) -> RatesOut:
    by_department = table.by is GroupBy.DEPARTMENT
    return RatesOut(
        period=table.period,
        first_day=table.first_day,
        last_day=table.last_day,
        by=table.by,
        source=table.source,
        rows=[
            _row(rates, department=key) if by_department else _row(rates, site=key)
            for key, rates in table.rows.items()
        ],
        total=_row(table.total),
    )


@router.get(
    "/rates",
    response_model=RatesOut,
    responses={
        400: {"model": ApiProblem, "description": "an unknown parameter"},
        422: {"model": ApiProblem, "description": "a bad period, date, grouping or source"},
    },
)
def get_rates(
    query: Annotated[RatesQuery, Query()],
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
) -> RatesOut:
    """The three rates of one week or month, per department or site, over the cases the
    caller may see; a rate with a zero denominator is null (never 0)."""
    table = measure(
        session,
        context.registry,
        query.period,
        utcnow(),
        at=query.at,
        by=query.by,
        source=query.source,
        visible=visible_cases(principal),
    )
    return rates_out(table)
