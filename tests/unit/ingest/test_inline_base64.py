"""Evidence bytes arrive as base64 text: the decoder refuses exactly what the strict standard
library check refused (b64decode with validate=True), and decodes the rest the same."""

from __future__ import annotations

import base64
import binascii

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from contracts.events import InlineBytes

_INLINE: TypeAdapter[bytes] = TypeAdapter(InlineBytes)
# Mostly the alphabet and padding, with what a forged message could slip in between.
_TEXT = st.text(alphabet="ABCQwxyz09+/=-_ \n\r\t.\\\u00e9", max_size=24)


def _reference(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _decoded(text: str) -> bytes | None:
    try:
        return _INLINE.validate_python(text)
    except ValidationError:
        return None


@settings(max_examples=2_000, deadline=None)
@given(text=_TEXT)
def test_any_text_is_refused_or_decoded_as_the_strict_check_does(text: str) -> None:
    assert _decoded(text) == _reference(text)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64))
def test_every_encoding_decodes_back(data: bytes) -> None:
    assert _decoded(base64.b64encode(data).decode()) == data


@pytest.mark.parametrize(
    "text",
    ["QQ", "QQ=", "QQ===", "=QQ=", "QQ==QQ==", "QUJD\nREVG", "QUJD REVG", "QUJD-_==", "QUJDé"],
)
def test_forged_padding_and_foreign_characters_are_refused(text: str) -> None:
    assert _reference(text) is None
    with pytest.raises(ValidationError):
        _INLINE.validate_python(text)
