"""Response templates: ready-made wording a dispatcher or worker picks for an action's reason.

A template belongs to one department or to all (``department`` None). Whoever acts on cases
lists them: a department's people see their department's and the all-department ones; the
command centre sees every one, or those offered on one department's cases when it names that
department. Only admins create, change and delete them; each change is written to the log.
"""

from __future__ import annotations

import logging
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatch.config import SCOPED_ROLES, Department, Role
from dispatch.workflow import Actor
from storage.tables import ResponseTemplate, utcnow

log = logging.getLogger(__name__)

NAME_MAX = 80  # the column's width
BODY_MAX = 2000  # an action's reason takes at most this much (dispatch.schemas.CaseAction)
# Roles that act on cases and so pick templates; integrations and the system pick none.
READERS = frozenset({Role.DISPATCHER, Role.ADMIN}) | SCOPED_ROLES


# Control characters hide or rewrite text on a screen: refused (a body keeps its line breaks and
# tabs). Said as schema patterns, so the OpenAPI document tells clients the rule, and a name or
# body is never blank or padded with spaces.
_CONTROL = r"\x00-\x1f\x7f-\x9f"
_BODY_CHAR = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
NAME_PATTERN = rf"^[^{_CONTROL}\s](?:[^{_CONTROL}]*[^{_CONTROL}\s])?$"
BODY_PATTERN = rf"^{_BODY_CHAR}*[^{_CONTROL}\s]{_BODY_CHAR}*$"


class TemplateIn(BaseModel):
    """A template as an admin writes it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=NAME_MAX,
        pattern=NAME_PATTERN,
        description="one line, no control characters, no spaces at either end",
    )
    body: str = Field(
        min_length=1,
        max_length=BODY_MAX,
        pattern=BODY_PATTERN,
        description="not blank; line breaks and tabs allowed, other control characters not",
    )
    department: Department | None = Field(
        default=None, description="the department whose cases offer it; none: every department"
    )


class TemplatePublic(BaseModel):
    id: int
    name: str
    body: str
    department: Department | None
    created_by: str
    updated_at: datetime


class TemplateError(Exception):
    """A refused change; ``code`` and ``params`` as the workflow's refusals have them."""

    def __init__(self, message: str, code: str, **params: str | int) -> None:
        super().__init__(message)
        self.code = code
        self.params = params


class TemplateNotFoundError(TemplateError):
    def __init__(self, template_id: int) -> None:
        super().__init__(
            f"response template {template_id} not found",
            "template_not_found",
            template_id=template_id,
        )


class TemplateNameTakenError(TemplateError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"a response template named {name!r} exists already", "template_name_taken", name=name
        )


def public(row: ResponseTemplate) -> TemplatePublic:
    return TemplatePublic(
        id=row.id,
        name=row.name,
        body=row.body,
        department=Department(row.department) if row.department else None,
        created_by=row.created_by,
        updated_at=row.updated_at,
    )


def may_read(actor: Actor) -> bool:
    return actor.role in READERS


def list_templates(
    session: Session, actor: Actor, department: Department | None = None
) -> list[ResponseTemplate]:
    """The templates ``actor`` may pick, by name; ``department`` narrows them to those offered on
    that department's cases (its own and the all-department ones). A department role always
    gets its own department's, whatever it asks (the caller refuses asking for another)."""
    if actor.role in SCOPED_ROLES:
        department = actor.department
    query = select(ResponseTemplate).order_by(ResponseTemplate.name, ResponseTemplate.id)
    if department is not None:
        query = query.where(
            or_(
                ResponseTemplate.department.is_(None),
                ResponseTemplate.department == department.value,
            )
        )
    return list(session.scalars(query))


def create_template(
    session: Session, data: TemplateIn, actor: Actor, now: datetime | None = None
) -> ResponseTemplate:
    """Add a template; the caller commits. Raises TemplateNameTakenError."""
    _check_name_free(session, data.name, None)
    row = ResponseTemplate(
        name=data.name,
        body=data.body,
        department=data.department.value if data.department else None,
        created_by=actor.name,
        updated_at=now or utcnow(),
    )
    session.add(row)
    _flush(session, data.name)
    log.info("response template %d %r created by %s", row.id, row.name, actor.name)
    return row


def update_template(
    session: Session,
    template_id: int,
    data: TemplateIn,
    actor: Actor,
    now: datetime | None = None,
) -> ResponseTemplate:
    """Replace a template's name, body and department; the caller commits."""
    row = get_template(session, template_id)
    _check_name_free(session, data.name, template_id)
    row.name = data.name
    row.body = data.body
    row.department = data.department.value if data.department else None
    row.updated_at = now or utcnow()
    _flush(session, data.name)
    log.info("response template %d %r changed by %s", row.id, row.name, actor.name)
    return row


def delete_template(session: Session, template_id: int, actor: Actor) -> None:
    """Remove a template; the caller commits. Actions that used its words keep them."""
    row = get_template(session, template_id)
    session.delete(row)
    session.flush()
    log.info("response template %d %r deleted by %s", template_id, row.name, actor.name)


def get_template(session: Session, template_id: int) -> ResponseTemplate:
    row = session.get(ResponseTemplate, template_id)
    if row is None:
        raise TemplateNotFoundError(template_id)
    return row


def _check_name_free(session: Session, name: str, template_id: int | None) -> None:
    taken = session.scalar(select(ResponseTemplate.id).where(ResponseTemplate.name == name))
    if taken is not None and taken != template_id:
        raise TemplateNameTakenError(name)


def _flush(session: Session, name: str) -> None:
    """Flush now; two admins saving the same name at once: the loser gets the same refusal."""
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise TemplateNameTakenError(name) from exc
