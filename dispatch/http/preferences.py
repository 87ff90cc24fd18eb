"""A person's own alert opt-ins (sound, desktop notification for urgent cases): read and set.

Only a person signed in with an account has them; an integration token is refused with a
reason, as there is nobody to alert.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status

from dispatch.alert_preferences import (
    AlertPreferences,
    AlertPreferencesChange,
    change_preferences,
    read_preferences,
)
from dispatch.auth import AuthenticatedDep
from dispatch.errors import ApiProblem
from dispatch.http.deps import SessionDep

# No prefix of its own: dispatch.http.views includes it under the API prefix with its routes.
router = APIRouter(tags=["account"])

NO_ACCOUNT = "alert preferences belong to a person's account; this caller has none"


def account_id(authenticated: AuthenticatedDep) -> int:
    """The caller's account id; 403 for a config token, which has no account."""
    if authenticated.account is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, NO_ACCOUNT)
    return authenticated.account.id


AccountIdDep = Annotated[int, Depends(account_id)]
# What the routes that need a person's account may answer besides their own results.
ACCOUNT_REFUSALS: dict[int | str, dict[str, object]] = {
    403: {"model": ApiProblem, "description": "the caller has no account (a config token)"},
    404: {"model": ApiProblem, "description": "the account is gone"},
}


@router.get("/account/alerts", response_model=AlertPreferences, responses=ACCOUNT_REFUSALS)
def get_alerts(session: SessionDep, user_id: AccountIdDep) -> AlertPreferences:
    """The caller's opt-ins for urgent-case alerts at the console."""
    found = read_preferences(session, user_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "account not found")
    return found


@router.put("/account/alerts", response_model=AlertPreferences, responses=ACCOUNT_REFUSALS)
def put_alerts(
    change: AlertPreferencesChange, session: SessionDep, user_id: AccountIdDep
) -> AlertPreferences:
    """Turn the sound or the desktop notification on or off (fields left out keep their value)."""
    changed = change_preferences(session, user_id, change)
    if changed is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "account not found")
    return changed
