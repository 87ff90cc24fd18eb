"""The console's case list: one page of the filtered cases, from the list's URL.

The filter lives in the page's query string (``/console?state=new&q=粤B``) so a view can be
linked and reloaded; ``dispatch.case_query`` reads it, as it does for the API, the export and
saved views. A refused filter shows its reason above an unfiltered list instead of an error page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from contracts.events import ViolationKind
from contracts.sites import SiteConfig, SiteRegistry
from dispatch.case_counts import CaseCounts
from dispatch.case_query import CaseQuery, CaseSort, find_cases, parse_case_query
from dispatch.config import Department, Priority
from dispatch.errors import ApiError
from dispatch.http.deps import Principal
from dispatch.saved_views import filter_items
from dispatch.web.i18n import Translator
from dispatch.workflow import CloseReason
from storage.tables import Case, CaseState

PAGE_SIZE = 50  # rows a console page shows unless the URL asks another ``limit``

# What the console alerts on (issue 14 point 6): a blocked fire lane whatever its priority
# (a routing rule may lower it, the danger stays), and any case routed urgent or high.
URGENT_KINDS = frozenset({ViolationKind.FIRE_LANE_BLOCKING.value})
URGENT_PRIORITIES = frozenset({Priority.URGENT.value, Priority.HIGH.value})


def is_urgent(case: Case) -> bool:
    return case.kind in URGENT_KINDS or case.priority in URGENT_PRIORITIES


@dataclass(frozen=True)
class CaseListing:
    """A page of the list and the filter that made it, for the template."""

    cases: list[Case]
    total: int
    next_cursor: str | None
    filters: tuple[tuple[str, str], ...]  # the filter's parameters, without page position
    cursor: str | None = None
    error: str | None = None
    _values: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for name, value in self.filters:
            self._values.setdefault(name, []).append(value)

    @property
    def query(self) -> str:
        """The filter as a query string: the first page, a saved view, a link."""
        return urlencode(self.filters)

    @property
    def next_query(self) -> str:
        return urlencode([*self.filters, ("cursor", self.next_cursor or "")])

    @property
    def is_later_page(self) -> bool:
        return self.cursor is not None

    def value(self, name: str) -> str:
        return self._values.get(name, [""])[0]

    def selected(self, name: str) -> frozenset[str]:
        return frozenset(self._values.get(name, []))

    def export_query(self, language: str) -> str:
        """The export's query: the same filter, every page, headers in ``language``."""
        kept = [(name, value) for name, value in self.filters if name != "limit"]
        return urlencode([*kept, ("lang", language)])


@dataclass(frozen=True)
class ListOptions:
    """What the filter bar offers."""

    sites: list[SiteConfig]
    states: list[str] = field(default_factory=lambda: [state.value for state in CaseState])
    kinds: list[str] = field(default_factory=lambda: [kind.value for kind in ViolationKind])
    departments: list[str] = field(default_factory=lambda: [d.value for d in Department])
    sorts: list[str] = field(default_factory=lambda: [sort.value for sort in CaseSort])
    close_reasons: list[str] = field(default_factory=lambda: [r.value for r in CloseReason])


def list_options(registry: SiteRegistry) -> ListOptions:
    return ListOptions(sites=list(registry.sites))


def refusal_text(error: ApiError, t: Translator) -> str:
    """An API refusal in the page's language (its ``error.<code>`` message), else in English."""
    template = t.messages.get(f"error.{error.code}")
    if template is None:
        return str(error)
    try:
        return template.format(**error.params)
    except (KeyError, IndexError, ValueError):
        return template


def load_listing(
    session: Session,
    principal: Principal,
    registry: SiteRegistry,
    items: Iterable[tuple[str, str]],
    t: Translator,
    counts: CaseCounts | None = None,
) -> CaseListing:
    """The page of the list that the URL's parameters ``items`` ask for (its total kept in
    ``counts`` between case changes, if given). A refused filter or cursor: the first page of
    the unfiltered list, with the reason in ``error``."""
    pairs = list(items)
    asked = filter_items(pairs)
    filters = tuple(asked)
    cursor = next((value for name, value in pairs if name == "cursor" and value), None)
    paged = [*asked, *([("cursor", cursor)] if cursor else [])]
    if not any(name == "limit" for name, _ in asked):
        paged.append(("limit", str(PAGE_SIZE)))
    try:
        query = parse_case_query(paged)
        page = find_cases(session, principal, query, registry, counts=counts)
    except ApiError as exc:
        fallback = find_cases(
            session, principal, CaseQuery(limit=PAGE_SIZE), registry, counts=counts
        )
        return CaseListing(
            fallback.cases, fallback.total, fallback.next_cursor, (), error=refusal_text(exc, t)
        )
    return CaseListing(page.cases, page.total, page.next_cursor, filters, cursor=cursor)
