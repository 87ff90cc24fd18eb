"""Signed QR tokens: a poster's link ``/report?t=TOKEN`` says which site (and building) the
report comes from, so it arrives already located.

A token is ``base64url(payload JSON) + "." + base64url(HMAC-SHA256(secret, payload))``; the
payload is ``{site, building?, kid, issued}``: ``kid`` names the poster (the token id the
report records and the per-token limit counts), ``issued`` its Unix time. The signature is
checked in constant time before the payload is read. A forged, garbled or expired token is
refused with a reason (``TokenRefused.reason``) and counted by the caller.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.events import Identifier

MAX_TOKEN_CHARS = 512  # a poster's token is ~150 characters; longer is not ours
DEFAULT_MAX_AGE_DAYS = 3 * 365.0  # posters stay on walls for years; reprint to rotate


class TokenProblem(StrEnum):
    """Why a token was refused (the metric's label and the page's message key)."""

    GARBLED = "garbled"  # not two base64url parts, or not our payload
    FORGED = "forged"  # the signature does not match
    EXPIRED = "expired"  # older than the maximum age, or issued in the future


class TokenRefused(Exception):  # noqa: N818 - a refusal the page answers, not a bug
    def __init__(self, reason: TokenProblem) -> None:
        super().__init__(reason.value)
        self.reason = reason


class QrPayload(BaseModel):
    """What a poster's token says."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: Identifier
    building: str | None = Field(default=None, min_length=1, max_length=64)
    kid: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    issued: int = Field(ge=0)


@dataclass(frozen=True)
class QrSigner:
    """Signs and verifies tokens with the server's QR secret (ApiContext.qr_secret)."""

    secret: bytes
    max_age_days: float = DEFAULT_MAX_AGE_DAYS

    def sign(self, site: str, building: str | None, issued: int, kid: str | None = None) -> str:
        payload = QrPayload(
            site=site, building=building, kid=kid or secrets.token_urlsafe(9), issued=issued
        )
        body = _b64(payload.model_dump_json(exclude_none=True).encode())
        return f"{body}.{_b64(self._mac(body))}"

    def verify(self, token: str, now: float) -> QrPayload:
        """The payload of a genuine, current token; else TokenRefused with the reason."""
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            raise TokenRefused(TokenProblem.GARBLED)
        body, signature = token.split(".")
        try:
            given = _unb64(signature)
        except ValueError:
            raise TokenRefused(TokenProblem.GARBLED) from None
        if not hmac.compare_digest(given, self._mac(body)):
            raise TokenRefused(TokenProblem.FORGED)
        try:
            payload = QrPayload.model_validate(json.loads(_unb64(body)))
        except (ValueError, ValidationError):
            raise TokenRefused(TokenProblem.GARBLED) from None
        age = now - payload.issued
        if age < -300 or age > self.max_age_days * 86_400:  # five minutes of clock skew
            raise TokenRefused(TokenProblem.EXPIRED)
        return payload

    def _mac(self, body: str) -> bytes:
        return hmac.new(self.secret, body.encode("ascii"), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError("empty or not ASCII")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(str(exc)) from exc
