"""A person's opt-ins for urgent-case alerts at the console: a sound, a desktop notification.

Both are off until the person turns them on (issue 14 point 6); they live on the account, so
they follow the person from screen to screen.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from storage.tables import User


class AlertPreferences(BaseModel):
    """What the console does when an urgent case arrives on the live feed."""

    model_config = ConfigDict(extra="forbid")

    sound: bool = False
    desktop: bool = False


class AlertPreferencesChange(BaseModel):
    """A change of some of the opt-ins; a field left out keeps its value."""

    model_config = ConfigDict(extra="forbid")

    sound: bool | None = None
    desktop: bool | None = None


def read_preferences(session: Session, user_id: int) -> AlertPreferences | None:
    """The person's opt-ins, or None when there is no such account."""
    user = session.get(User, user_id)
    if user is None:
        return None
    return AlertPreferences(sound=user.alert_sound, desktop=user.alert_desktop)


def change_preferences(
    session: Session, user_id: int, change: AlertPreferencesChange
) -> AlertPreferences | None:
    """Apply ``change`` and commit; the opt-ins as they now stand, or None without the account."""
    user = session.get(User, user_id)
    if user is None:
        return None
    if change.sound is not None:
        user.alert_sound = change.sound
    if change.desktop is not None:
        user.alert_desktop = change.desktop
    session.commit()
    return AlertPreferences(sound=user.alert_sound, desktop=user.alert_desktop)
