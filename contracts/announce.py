"""The warning stage's announcement: what a gate speaker or an LED sign says, in both languages.

A gateway publishes one ``Announcement`` at QoS 1 (not retained) on its own announce topic,
``civicwatch/v1/{site}/{gateway}/announce`` (``announce_topic``), when a stop crosses its dwell
where a warning comes first (docs/exemptions.md, "Warning stage"). It carries no picture: the
plate's text at most, and only a reading at or above the rule document's confidence floor.

Whatever reads the topic (a speaker's controller, a sign) checks a message with
``read_announcement``: one over ``MAX_ANNOUNCE_BYTES``, one that is not the model, or one whose
site or gateway is not the topic's is refused with an ``AnnounceRefusal`` reason, never shown.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts.events import PLATE_PATTERN, Identifier
from contracts.topics import ROOT

ANNOUNCE_CHANNEL = "announce"
ANNOUNCE_SCHEMA_VERSION: Literal[1] = 1
MAX_ANNOUNCE_BYTES = 4_096
"""A real announcement is under 1 KB; anything bigger is refused unread."""
MAX_TEXT = 200

# The spoken / shown text, {plate} only when the plate was read well enough. Both languages are
# always sent: the sign or speaker plays the ones it is set up for.
_TEXTS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "plate": (
            "{plate} 车主请注意：您的车辆停在{place}，请在{minutes}分钟内驶离，逾期将转交处理。"
        ),
        "no_plate": "{place}停放的车辆请注意：请在{minutes}分钟内驶离，逾期将转交处理。",
    },
    "en": {
        "plate": (
            "Vehicle {plate}: you are parked at {place}. Please move within {minutes} min, "
            "or a case will be opened."
        ),
        "no_plate": (
            "The vehicle parked at {place}: please move within {minutes} min, "
            "or a case will be opened."
        ),
    },
}
LANGUAGES = tuple(_TEXTS)


def announce_topic(site_id: str, gateway_id: str) -> str:
    """A gateway's announce topic: its warnings for a gate speaker or an LED sign."""
    return f"{ROOT}/{site_id}/{gateway_id}/{ANNOUNCE_CHANNEL}"


class Announcement(BaseModel):
    """One warning, as a gate speaker or an LED sign plays it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    schema_version: Literal[1] = ANNOUNCE_SCHEMA_VERSION
    message_id: UUID
    violation_id: UUID
    site_id: Identifier
    gateway_id: Identifier
    camera_id: Identifier
    zone_id: Identifier
    warned_at: AwareDatetime
    grace_until: AwareDatetime
    plate: str | None = Field(default=None, pattern=PLATE_PATTERN)
    text_zh: str = Field(min_length=1, max_length=MAX_TEXT)
    text_en: str = Field(min_length=1, max_length=MAX_TEXT)

    @model_validator(mode="after")
    def _grace_after_warning(self) -> Announcement:
        if self.grace_until <= self.warned_at:
            raise ValueError("grace_until must be after warned_at")
        return self

    def to_wire(self) -> bytes:
        return self.model_dump_json().encode()


def announcement_texts(plate: str | None, place: str, minutes: float) -> dict[str, str]:
    """The announcement in each language; ``place`` is the zone's name as people say it."""
    shown = f"{minutes:g}"
    key = "plate" if plate is not None else "no_plate"
    return {
        language: texts[key].format(plate=plate, place=place, minutes=shown)[:MAX_TEXT]
        for language, texts in _TEXTS.items()
    }


class AnnounceRefusal(StrEnum):
    OVERSIZE = "oversize"
    INVALID = "invalid"  # not JSON, or not the model
    WRONG_TOPIC = "wrong_topic"  # not an announce topic
    FORGED = "forged"  # names another site or gateway than its topic


class AnnouncementRefused(Exception):  # noqa: N818 - an outcome, named as the docs name it
    def __init__(self, reason: AnnounceRefusal, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


def read_announcement(topic: str, payload: bytes) -> Announcement:
    """Check one message from an announce topic; raises AnnouncementRefused with the reason."""
    if len(payload) > MAX_ANNOUNCE_BYTES:
        raise AnnouncementRefused(
            AnnounceRefusal.OVERSIZE, f"{len(payload)} bytes, the limit is {MAX_ANNOUNCE_BYTES}"
        )
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != ROOT or parts[4] != ANNOUNCE_CHANNEL:
        raise AnnouncementRefused(AnnounceRefusal.WRONG_TOPIC, f"{topic!r} is no announce topic")
    try:
        announcement = Announcement.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise AnnouncementRefused(AnnounceRefusal.INVALID, f"{where}: {first['msg']}") from None
    if (announcement.site_id, announcement.gateway_id) != (parts[2], parts[3]):
        raise AnnouncementRefused(
            AnnounceRefusal.FORGED,
            f"names {announcement.site_id}/{announcement.gateway_id} on {parts[2]}/{parts[3]}'s "
            "topic",
        )
    return announcement
