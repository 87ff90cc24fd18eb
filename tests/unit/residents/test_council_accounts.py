"""The council role: a person's role, scoped to one site, never to a department."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from dispatch.account_rules import AccountError, check_role
from dispatch.config import PERSON_ROLES, Department, DevUser, Role, account_role_problem


def test_a_council_account_names_its_site() -> None:
    assert Role.COUNCIL in PERSON_ROLES
    assert account_role_problem(Role.COUNCIL, None, False, "compound-demo") is None
    check_role(Role.COUNCIL, None, False, "compound-demo")
    with pytest.raises(AccountError, match="a council account names its site"):
        check_role(Role.COUNCIL, None, False)


@pytest.mark.parametrize(
    ("role", "department", "is_head", "site_id", "problem"),
    [
        (Role.COUNCIL, Department.PROPERTY_MANAGEMENT, False, "s", "other roles name none"),
        (Role.COUNCIL, None, True, "s", "only a supervisor or worker"),
        (Role.DISPATCHER, None, False, "s", "a council account names its site"),
        (Role.WORKER, Department.FIRE_RESCUE, False, "s", "a council account names its site"),
    ],
)
def test_other_combinations_are_refused(
    role: Role, department: Department | None, is_head: bool, site_id: str, problem: str
) -> None:
    found = account_role_problem(role, department, is_head, site_id)
    assert found is not None
    assert problem in found


def test_a_development_council_account_needs_its_site() -> None:
    password = SecretStr("council-pass-1")
    lead = DevUser(username="lead3", password=password, role=Role.COUNCIL, site_id="site-a")
    assert lead.site_id == "site-a"
    with pytest.raises(ValidationError, match="council account names its site"):
        DevUser(username="lead4", password=password, role=Role.COUNCIL)
