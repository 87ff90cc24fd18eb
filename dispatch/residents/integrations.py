"""Open311 integrations' api keys: issued once, stored only as their SHA-256, revocable.

``civicwatch integrations add NAME`` prints a new key once; the database keeps its digest, so a
stolen database copy cannot file reports. A key is looked up by its digest (the digest of a
random 256-bit key is as unguessable as the key itself, so the lookup leaks nothing a timing
attack could use)."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.tables import IntegrationKey, utcnow

KEY_PREFIX = "cw311_"  # recognisable in a leaked-secret scan
MAX_KEY_CHARS = 128  # a real key is 49 characters; anything far longer is not one
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class IntegrationError(ValueError):
    """A refused integration command, in one line."""


@dataclass(frozen=True, slots=True)
class Integration:
    name: str
    active: bool
    created_at: datetime


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def add_integration(session: Session, name: str, *, clock: Callable[[], datetime] = utcnow) -> str:
    """A new integration and its key, returned once (the caller shows it and commits)."""
    if not _NAME.fullmatch(name):
        raise IntegrationError(
            f"integration name {name!r}: 1-64 of a-z 0-9 . _ -, starting with a letter or digit"
        )
    if session.get(IntegrationKey, name) is not None:
        raise IntegrationError(f"integration {name!r} exists: revoke it, or choose another name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(IntegrationKey(name=name, key_sha256=digest(key), active=True, created_at=clock()))
    session.flush()
    return key


def revoke_integration(session: Session, name: str) -> None:
    row = session.get(IntegrationKey, name)
    if row is None:
        raise IntegrationError(f"no integration named {name!r}")
    row.active = False


def list_integrations(session: Session) -> list[Integration]:
    rows = session.scalars(select(IntegrationKey).order_by(IntegrationKey.name))
    return [Integration(row.name, row.active, row.created_at) for row in rows]


def verify_key(session: Session, key: str) -> str | None:
    """The name of the active integration holding ``key``; None for an unknown, revoked or
    malformed key."""
    if not key.startswith(KEY_PREFIX) or len(key) > MAX_KEY_CHARS:
        return None
    row = session.scalars(
        select(IntegrationKey).where(IntegrationKey.key_sha256 == digest(key))
    ).one_or_none()
    if row is None or not row.active:
        return None
    return row.name
