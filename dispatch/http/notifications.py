"""The notifications API: the outbox's rows, read by department, retried by dispatchers."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.config import Department, Role
from dispatch.http.deps import (
    API_PREFIX,
    PageLimit,
    PageOffset,
    Principal,
    PrincipalDep,
    RowIdPath,
    SessionDep,
    not_found,
    scope_of,
    visible_cases,
    where_given,
)
from dispatch.notifications.outbox import Channel, DeliveryStatus
from storage.tables import Notification, utcnow

log = logging.getLogger(__name__)

READERS = frozenset({Role.ADMIN, Role.DISPATCHER, Role.SUPERVISOR, Role.WORKER})
RETRIERS = frozenset({Role.ADMIN, Role.DISPATCHER})


class NotificationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    channel: Channel
    department: str
    target: str = Field(description="the webhook URL or MQTT topic")
    event_type: str
    case_id: int | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]


router = APIRouter(prefix=f"{API_PREFIX}/notifications", tags=["notifications"])


def _visible(session: Session, principal: Principal, notification_id: int) -> Notification:
    row = session.get(Notification, notification_id)
    scope = scope_of(principal)
    if row is None or (scope is not None and row.department != scope):
        raise not_found(f"notification {notification_id}")
    return row


def _require_reader(principal: Principal) -> None:
    if principal.role not in READERS:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"{principal.role} may not read notifications"
        )


@router.get(
    "",
    response_model=list[NotificationPublic],
    responses={403: {"description": "integration tokens read no notifications"}},
)
def list_notifications(
    session: SessionDep,
    principal: PrincipalDep,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    department: Department | None = None,
    channel: Channel | None = None,
    case_id: int | None = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> list[Notification]:
    """Newest first. Department roles see their own department's only."""
    _require_reader(principal)
    query = select(Notification).where(visible_cases(principal, Notification.department))
    query = where_given(
        query,
        {
            Notification.status: status_,
            Notification.department: department,
            Notification.channel: channel,
            Notification.case_id: case_id,
        },
    )
    query = query.order_by(Notification.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(query))


@router.get(
    "/{notification_id}",
    response_model=NotificationPublic,
    responses={403: {"description": "integration"}, 404: {"description": "not found"}},
)
def get_notification(
    notification_id: RowIdPath, session: SessionDep, principal: PrincipalDep
) -> Notification:
    _require_reader(principal)
    return _visible(session, principal, notification_id)


@router.post(
    "/{notification_id}/retry",
    response_model=NotificationPublic,
    responses={
        403: {"description": "only dispatchers and admins retry"},
        404: {"description": "not found"},
        409: {"description": "only a failed notification can be retried"},
    },
)
def retry_notification(
    notification_id: RowIdPath, session: SessionDep, principal: PrincipalDep
) -> Notification:
    """A failed notification back to pending, due now, with a fresh set of attempts."""
    row = _visible(session, principal, notification_id)  # 404 before 403: leak nothing
    if principal.role not in RETRIERS:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"{principal.role} may not retry notifications"
        )
    if row.status != DeliveryStatus.FAILED.value:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"notification {notification_id} is {row.status}: only failed ones are retried",
        )
    row.status = DeliveryStatus.PENDING.value
    row.attempts = 0
    row.next_attempt_at = utcnow()
    session.commit()
    log.info("notification %d retried by %s", notification_id, principal.name)
    return row
