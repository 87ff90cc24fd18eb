"""Tracking codes and phone privacy."""

from __future__ import annotations

import pytest

from dispatch.config import Role
from dispatch.residents.codes import (
    ALPHABET,
    LENGTH,
    new_tracking_code,
    normalise_tracking_code,
    tracking_path,
)
from dispatch.residents.privacy import (
    PhoneError,
    mask_phone,
    normalise_phone,
    phone_for,
    reporter_visible,
)


def test_codes_are_ten_unambiguous_characters_and_differ() -> None:
    codes = {new_tracking_code() for _ in range(2000)}
    assert len(codes) == 2000
    for code in codes:
        assert len(code) == LENGTH == 10
        assert set(code) <= set(ALPHABET)
    assert not set("0O1I") & set(ALPHABET)
    assert len(set("".join(codes))) == len(ALPHABET)  # every character is drawn


def test_a_typed_code_is_normalised_or_refused() -> None:
    assert normalise_tracking_code("abcd-efgh 23") == "ABCDEFGH23"
    assert normalise_tracking_code("ABCDEFGH2O") is None  # O is never in a code
    assert normalise_tracking_code("ABCDEFGH2") is None
    assert normalise_tracking_code("<script>") is None
    assert tracking_path("ABCDEFGH23") == "/report/t/ABCDEFGH23"


def test_mask_phone_keeps_the_first_three_and_last_four() -> None:
    assert mask_phone("13812341234") == "138****1234"
    assert mask_phone("01087654321") == "010****4321"
    assert mask_phone("1234567") == "*******"


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("13812341234", "13812341234"),
        ("+86 138 1234 1234", "13812341234"),
        ("0086-13812341234", "13812341234"),
        ("010-87654321", "01087654321"),
        ("(0571) 8888 7777", "057188887777"),
    ],
)
def test_callable_numbers_are_accepted(typed: str, stored: str) -> None:
    assert normalise_phone(typed) == stored


@pytest.mark.parametrize(
    "typed", ["12812341234", "1381234123", "138123412345", "+1 415 555 0100", "abc", "110"]
)
def test_other_numbers_are_refused(typed: str) -> None:
    with pytest.raises(PhoneError):
        normalise_phone(typed)


def test_who_sees_the_phone() -> None:
    phone = "13812341234"
    assert phone_for(Role.DISPATCHER, phone, contact_consent=False) == phone
    assert phone_for(Role.ADMIN, phone, contact_consent=False) == "138****1234"
    assert phone_for(Role.WORKER, phone, contact_consent=True) == "138****1234"
    assert phone_for(Role.SUPERVISOR, phone, contact_consent=False) is None
    assert phone_for(Role.COUNCIL, phone, contact_consent=True) is None
    assert phone_for(Role.INTEGRATION, phone, contact_consent=True) is None  # never in Open311
    assert not reporter_visible(Role.WORKER, contact_consent=False)
    assert reporter_visible(Role.WORKER, contact_consent=True)
