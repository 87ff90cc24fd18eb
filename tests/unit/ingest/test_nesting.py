"""The depth bound that runs before any JSON parser: it must agree with the parser's nesting."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.validation import MAX_JSON_DEPTH, Refusal, RefusalReason, check_nesting

# Strings full of what could fool a byte scan: quotes, backslashes and brackets as text.
tricky_text = st.text(alphabet='ab"\\{}[]/ \n\u00e9', max_size=12)
leaves = st.none() | st.booleans() | st.integers() | tricky_text
values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(tricky_text, children, max_size=3)
    ),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    return 0


def _refused(payload: bytes) -> bool:
    try:
        check_nesting(payload)
    except Refusal as refusal:
        return refusal.reason is RefusalReason.NESTING
    return False


@settings(max_examples=300, deadline=None)
@given(value=values, wrap=st.integers(0, MAX_JSON_DEPTH + 3), ascii_only=st.booleans())
def test_the_scan_counts_the_depth_the_parser_sees(value: Any, wrap: int, ascii_only: bool) -> None:
    for _ in range(wrap):  # deepen it, with tricky keys on the way
        value = {'k"\\[': value}
    payload = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert _refused(payload) == (_depth(value) > MAX_JSON_DEPTH)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"a":' * 1100 + b"1" + b"}" * 1100,
        b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
        b"[" * 100_000,  # never closed
        b'["\\\\",' * 40 + b"1" + b"]" * 40,  # escaped backslashes do not hide the brackets
        b"[]" * 5_000,  # flat, but more containers than any event has
        b'""' * 20_000,  # more strings than any event has
    ],
)
def test_hostile_shapes_are_refused(payload: bytes) -> None:
    assert _refused(payload)


def test_brackets_inside_strings_are_text() -> None:
    text = '"' + "[" * 200 + '\\"' + "{" * 200 + '"'
    assert not _refused(f'{{"note": {text}}}'.encode())
