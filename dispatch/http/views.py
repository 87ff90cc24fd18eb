"""Saved views of the case list: a person lists, saves and deletes their own.

A view belongs to one account: another person's view is "not found", like a missing one.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from dispatch.errors import ApiError, ApiProblem
from dispatch.http import preferences
from dispatch.http.deps import API_PREFIX, RowIdPath, SessionDep
from dispatch.http.preferences import ACCOUNT_REFUSALS, AccountIdDep
from dispatch.saved_views import SavedViewIn, SavedViewOut, delete_view, list_views, save_view
from storage.tables import utcnow

router = APIRouter(prefix=API_PREFIX, tags=["views"])


@router.get("/views", response_model=list[SavedViewOut], responses=ACCOUNT_REFUSALS)
def get_views(session: SessionDep, user_id: AccountIdDep) -> list[SavedViewOut]:
    """The caller's saved views, by name."""
    return [SavedViewOut.model_validate(view) for view in list_views(session, user_id)]


@router.post(
    "/views",
    response_model=SavedViewOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        **ACCOUNT_REFUSALS,
        400: {"model": ApiProblem, "description": "the query names an unknown parameter"},
        409: {"model": ApiProblem, "description": "the caller has the most views allowed"},
    },
)
def post_view(view: SavedViewIn, session: SessionDep, user_id: AccountIdDep) -> SavedViewOut:
    """Save the list's query under a name (the same name again replaces it). The query is
    checked as the case list checks it: an unknown parameter or a bad value is refused."""
    return SavedViewOut.model_validate(save_view(session, user_id, view, utcnow()))


@router.delete(
    "/views/{view_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**ACCOUNT_REFUSALS, 404: {"model": ApiProblem, "description": "no such view"}},
)
def remove_view(view_id: RowIdPath, session: SessionDep, user_id: AccountIdDep) -> Response:
    if not delete_view(session, user_id, view_id):
        raise ApiError(404, "saved_view_not_found", {"view_id": view_id})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# A person's alert opt-ins ride along: the app includes this one router for both.
router.include_router(preferences.router)
