"""QR poster tokens: a genuine token verifies; forged, garbled and expired ones are refused
with their reason."""

from __future__ import annotations

import base64

import pytest

from dispatch.residents.tokens import QrSigner, TokenProblem, TokenRefused

SIGNER = QrSigner(b"s" * 32, max_age_days=30)
NOW = 1_800_000_000


def refusal(token: str, now: float = NOW, signer: QrSigner = SIGNER) -> TokenProblem:
    with pytest.raises(TokenRefused) as caught:
        signer.verify(token, now)
    return caught.value.reason


def test_a_signed_token_verifies_and_is_url_safe() -> None:
    token = SIGNER.sign("site-a", "3号楼", NOW, kid="p1")
    assert all(c.isalnum() or c in "-_." for c in token)
    payload = SIGNER.verify(token, NOW + 60)
    assert (payload.site, payload.building, payload.kid, payload.issued) == (
        "site-a",
        "3号楼",
        "p1",
        NOW,
    )


def test_a_fresh_kid_is_drawn_per_poster() -> None:
    first = SIGNER.verify(SIGNER.sign("site-a", None, NOW), NOW)
    second = SIGNER.verify(SIGNER.sign("site-a", None, NOW), NOW)
    assert first.kid != second.kid
    assert first.building is None


def test_another_secret_or_a_changed_payload_is_forged() -> None:
    token = SIGNER.sign("site-a", None, NOW, kid="p1")
    assert refusal(token, signer=QrSigner(b"t" * 32)) is TokenProblem.FORGED
    _body, signature = token.split(".")
    other_body = SIGNER.sign("site-b", None, NOW, kid="p1").split(".")[0]
    assert refusal(f"{other_body}.{signature}") is TokenProblem.FORGED


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "a.!!!", "x" * 600, "é.é"])
def test_garbage_is_garbled(token: str) -> None:
    assert refusal(token) in {TokenProblem.GARBLED, TokenProblem.FORGED}
    if token.count(".") != 1:
        assert refusal(token) is TokenProblem.GARBLED


def test_a_signed_payload_that_is_not_ours_is_garbled() -> None:
    # Signed with the right secret but not a poster payload (e.g. a token from another use).
    body = "bm90IGpzb24"  # "not json"
    token = f"{body}.{SIGNER.sign('s', None, NOW).split('.')[1]}"
    assert refusal(token) is TokenProblem.FORGED
    mac = SIGNER._mac(body)
    signature = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert refusal(f"{body}.{signature}") is TokenProblem.GARBLED


def test_old_or_future_tokens_are_expired() -> None:
    token = SIGNER.sign("site-a", None, NOW)
    assert refusal(token, now=NOW + 31 * 86_400) is TokenProblem.EXPIRED
    assert refusal(token, now=NOW - 3600) is TokenProblem.EXPIRED
    SIGNER.verify(token, NOW + 29 * 86_400)
