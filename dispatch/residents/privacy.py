"""A resident's phone number: which are accepted, and who sees it whole.

Dispatchers see it whole; everybody else masked (138****1234); a department sees the reporter
at all only when the resident agreed (contact_consent); Open311 output never carries it.
"""

from __future__ import annotations

import re

from dispatch.config import SCOPED_ROLES, Role

# Mainland mobile numbers; landlines with their area code (010-12345678, 0571 8888 7777).
MOBILE = re.compile(r"^1[3-9]\d{9}$")
LANDLINE = re.compile(r"^0\d{2,3}\d{7,8}$")
_SEPARATORS = re.compile(r"[\s()-]")


class PhoneError(ValueError):
    """Not a phone number this service can call back."""


def normalise_phone(text: str) -> str:
    """The number as stored: digits only, a leading +86 or 0086 dropped. Raises PhoneError."""
    digits = _SEPARATORS.sub("", text.strip())
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix):
            digits = digits[len(prefix) :]
            break
    if not (MOBILE.match(digits) or LANDLINE.match(digits)):
        raise PhoneError("not a mainland mobile (1[3-9] and 9 digits) or a landline with area code")
    return digits


def mask_phone(phone: str) -> str:
    """``13812341234`` -> ``138****1234``: the first three and last four kept, the rest hidden."""
    if len(phone) <= 7:
        return "*" * len(phone)
    return f"{phone[:3]}{'*' * (len(phone) - 7)}{phone[-4:]}"


def reporter_visible(role: Role, contact_consent: bool) -> bool:
    """Whether ``role`` may see who reported at all: departments only with the resident's
    consent; the command centre and admins always; integrations and councils never."""
    if role in (Role.DISPATCHER, Role.ADMIN):
        return True
    if role in SCOPED_ROLES:
        return contact_consent
    return False


def phone_for(role: Role, phone: str | None, contact_consent: bool) -> str | None:
    """The phone as ``role`` may see it: whole for dispatchers, masked for those who may see the
    reporter, None for the rest."""
    if phone is None or not reporter_visible(role, contact_consent):
        return None
    return phone if role is Role.DISPATCHER else mask_phone(phone)
