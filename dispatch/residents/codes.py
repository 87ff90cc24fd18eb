"""Tracking codes: the resident's only key to their report (``/report/t/<code>``)."""

from __future__ import annotations

import re
import secrets

# No 0/O or 1/I: a code read aloud on the hotline or copied from a screen stays unambiguous.
ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
LENGTH = 10  # 32**10 = 2**50 codes: guessing one is hopeless at the lookup rate limit
TRACKING_CODE = re.compile(f"^[{ALPHABET}]{{{LENGTH}}}$")
TRACKING_PATH = "/report/t/{code}"


def new_tracking_code() -> str:
    """A fresh random code (secrets, not random: codes must not be predictable)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalise_tracking_code(text: str) -> str | None:
    """The code as typed (any case, spaces and dashes ignored), or None if it cannot be one."""
    cleaned = re.sub(r"[\s-]", "", text).upper()
    return cleaned if TRACKING_CODE.match(cleaned) else None


def tracking_path(code: str) -> str:
    """The resident's link to follow the report, relative to the server's public address."""
    return TRACKING_PATH.format(code=code)
