"""Saved views: a console user's named filters of the case list, one click away.

A view stores only a query string the case list accepts (``dispatch.case_query``): it is parsed
when saved, so a view never holds a filter the list would refuse. A view is a filter, not a
place in the list: the page position (``cursor``) and the language (``lang``) are not kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from urllib.parse import parse_qsl, urlencode

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.case_query import parse_case_query
from dispatch.errors import ApiError
from storage.tables import SavedView

MAX_VIEWS_PER_USER = 50
MAX_QUERY_CHARS = 2000  # the column's size
# Parameters of a page, not of the filter: never saved.
PAGE_PARAMS = frozenset({"cursor", "lang", "offset"})


class SavedViewIn(BaseModel):
    """A view to save: its name and the list's query string (``state=new&q=粤B``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80)
    query: str = Field(default="", max_length=MAX_QUERY_CHARS)


class SavedViewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    query: str
    created_at: datetime


def filter_items(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The filter's parameters of a list URL: no blanks (an empty field of the filter form)
    and no page parameters."""
    return [(name, value) for name, value in items if value.strip() and name not in PAGE_PARAMS]


def canonical_query(raw: str) -> str:
    """``raw`` as a saved view keeps it: checked by the case list's own parser (ApiError with
    its code when refused), blanks and page parameters left out."""
    text = raw.strip().removeprefix("?")
    try:
        items = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError as exc:
        raise ApiError(422, "saved_view_bad_query") from exc
    kept = filter_items(items)
    parse_case_query(kept)  # refuses unknown parameters and invalid values, naming them
    return urlencode(kept)


def list_views(session: Session, user_id: int) -> list[SavedView]:
    query = select(SavedView).where(SavedView.user_id == user_id).order_by(SavedView.name)
    return list(session.scalars(query))


def save_view(session: Session, user_id: int, view: SavedViewIn, now: datetime) -> SavedView:
    """Save ``view`` for the user and commit; a view of the same name is replaced."""
    name = view.name.strip()
    if not name:
        raise ApiError(422, "saved_view_name_blank")
    query = canonical_query(view.query)
    existing = session.scalars(
        select(SavedView).where(SavedView.user_id == user_id, SavedView.name == name)
    ).first()
    if existing is None:
        count = session.scalar(
            select(func.count()).select_from(SavedView).where(SavedView.user_id == user_id)
        )
        if (count or 0) >= MAX_VIEWS_PER_USER:
            raise ApiError(409, "saved_view_limit", {"limit": MAX_VIEWS_PER_USER})
        existing = SavedView(user_id=user_id, name=name, query=query, created_at=now)
        session.add(existing)
    else:
        existing.query = query
    session.commit()
    return existing


def delete_view(session: Session, user_id: int, view_id: int) -> bool:
    """Delete the user's view and commit; False when the user has no such view."""
    view = session.get(SavedView, view_id)
    if view is None or view.user_id != user_id:
        return False
    session.delete(view)
    session.commit()
    return True
