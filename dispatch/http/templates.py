"""The action forms' helpers: response templates (list for whoever acts on cases; admins write
them) and the people of a department a case may be assigned to."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import BaseModel

from dispatch.config import Department, Role
from dispatch.errors import ApiError
from dispatch.http.deps import API_PREFIX, Principal, PrincipalDep, RowIdPath, SessionDep
from dispatch.templates_store import (
    TemplateError,
    TemplateIn,
    TemplateNotFoundError,
    TemplatePublic,
    create_template,
    delete_template,
    list_templates,
    may_read,
    public,
    update_template,
)
from dispatch.workflow import Action, assignable_people

router = APIRouter(prefix=API_PREFIX, tags=["response templates", "assignment"])

_REFUSALS: dict[int | str, dict[str, str]] = {
    403: {"description": "the caller's role may not"},
}


class PersonPublic(BaseModel):
    username: str
    display_name: str
    role: Role


def _refuse(exc: TemplateError) -> ApiError:
    code = (
        status.HTTP_404_NOT_FOUND
        if isinstance(exc, TemplateNotFoundError)
        else status.HTTP_409_CONFLICT
    )
    return ApiError(code, exc.code, exc.params, detail=str(exc))


def _require_admin(principal: Principal) -> None:
    if principal.role is not Role.ADMIN:
        raise ApiError(
            status.HTTP_403_FORBIDDEN,
            "forbidden",
            detail="only an admin may change response templates",
        )


@router.get("/templates", responses=_REFUSALS)
def get_templates(
    session: SessionDep, principal: PrincipalDep, department: Department | None = None
) -> list[TemplatePublic]:
    """The templates the caller may pick, by name. ``department``: those offered on that
    department's cases (its own and the all-department ones); a department's people get their
    own department's whatever they name, and naming another is refused."""
    if not may_read(principal):
        raise ApiError(
            status.HTTP_403_FORBIDDEN, "forbidden", detail="this role picks no templates"
        )
    if department is not None and principal.department not in (None, department):
        raise ApiError(
            status.HTTP_403_FORBIDDEN, "forbidden", detail="another department's templates"
        )
    return [public(row) for row in list_templates(session, principal, department)]


@router.post(
    "/templates",
    status_code=status.HTTP_201_CREATED,
    responses={**_REFUSALS, 409: {"description": "the name is taken"}},
)
def post_template(
    template: TemplateIn, session: SessionDep, principal: PrincipalDep
) -> TemplatePublic:
    _require_admin(principal)
    try:
        row = create_template(session, template, principal)
    except TemplateError as exc:
        raise _refuse(exc) from exc
    session.commit()
    return public(row)


@router.put(
    "/templates/{template_id}",
    responses={
        **_REFUSALS,
        404: {"description": "no such template"},
        409: {"description": "the name is taken"},
    },
)
def put_template(
    template_id: RowIdPath, template: TemplateIn, session: SessionDep, principal: PrincipalDep
) -> TemplatePublic:
    _require_admin(principal)
    try:
        row = update_template(session, template_id, template, principal)
    except TemplateError as exc:
        raise _refuse(exc) from exc
    session.commit()
    return public(row)


@router.delete(
    "/templates/{template_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_REFUSALS, 404: {"description": "no such template"}},
)
def remove_template(
    template_id: RowIdPath, session: SessionDep, principal: PrincipalDep
) -> Response:
    _require_admin(principal)
    try:
        delete_template(session, template_id, principal)
    except TemplateError as exc:
        raise _refuse(exc) from exc
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/departments/{department}/people", responses=_REFUSALS)
def department_people(
    department: Department, session: SessionDep, principal: PrincipalDep
) -> list[PersonPublic]:
    """The people a case of ``department`` may be assigned to (its active workers and
    supervisors), for whoever may assign there: dispatchers, admins, its supervisors."""
    if not principal.may(Action.ASSIGN) or principal.department not in (None, department):
        raise ApiError(
            status.HTTP_403_FORBIDDEN, "forbidden", detail="may not assign that department's cases"
        )
    return [
        PersonPublic(username=p.username, display_name=p.display_name, role=p.role)
        for p in assignable_people(session, department)
    ]
