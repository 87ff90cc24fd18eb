"""The API's one error shape: every code it answers reads in both languages."""

from __future__ import annotations

import string

import pytest

from dispatch.errors import (
    API_CODES,
    STATUS_CODES,
    ApiError,
    english,
    validation_problem,
    workflow_refusal,
)
from dispatch.web.i18n import LANGUAGES, catalogue
from dispatch.workflow import MissingInputError, WorkflowError


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("code", sorted({*API_CODES, *STATUS_CODES.values()}))
def test_every_code_has_a_message_in_both_languages_with_the_same_placeholders(code: str) -> None:
    messages = [catalogue(language).get(f"error.{code}") for language in LANGUAGES]
    assert None not in messages, f"error.{code} is missing in a language"
    assert len({frozenset(_placeholders(m or "")) for m in messages}) == 1, messages


def test_an_api_error_says_its_message_in_english_with_its_params() -> None:
    error = ApiError(404, "case_not_found", {"case_id": 12})
    assert (error.status_code, error.detail) == (404, "Case 12 does not exist.")
    assert english("no_such_code", {"a": 1}) == "no_such_code {'a': 1}"


def test_only_unknown_query_parameters_make_a_400() -> None:
    unknown = {"loc": ("query", "stat"), "msg": "Extra inputs", "type": "extra_forbidden"}
    bad = {"loc": ("query", "limit"), "msg": "too big", "type": "less_than_equal", "input": "9"}
    answer = validation_problem([unknown])
    assert answer.status_code == 400
    mixed = validation_problem([unknown, bad])
    assert mixed.status_code == 422
    assert b'"input"' not in mixed.body  # what was refused is not echoed back


def test_a_workflow_refusal_keeps_its_code_or_falls_back() -> None:
    coded = workflow_refusal(MissingInputError("needs a reason", "reason_required", action="x"))
    assert (coded.status_code, coded.code, coded.params["action"]) == (422, "reason_required", "x")
    assert coded.detail == "needs a reason"
    plain = workflow_refusal(WorkflowError("no"))
    assert plain.code == "workflow_refused"
