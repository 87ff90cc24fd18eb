"""The warning_stage rule, the repeat-offender skip, the warning phases and the announcement."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.announce import (
    MAX_ANNOUNCE_BYTES,
    Announcement,
    AnnouncementRefused,
    AnnounceRefusal,
    announce_topic,
    announcement_texts,
    read_announcement,
)
from contracts.events import Phase, ViolationEvent, WarningNotice
from contracts.exemptions import (
    Outcome,
    RuleDocument,
    StageWhy,
    StayHistory,
    WarningStageRule,
    evaluate,
    warning_stage,
)
from contracts.sites import SiteConfig, ZoneConfig, ZoneKind
from tests.factories import make_frame

T0 = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
SITE = SiteConfig(id="s1")
POLYGON = [[0, 0], [100, 0], [100, 100]]
KERB = ZoneConfig(id="kerb", name="东门路边", kind=ZoneKind.NO_PARKING, polygon=POLYGON)
LANE = ZoneConfig(id="lane", kind=ZoneKind.FIRE_LANE, polygon=POLYGON)
PLATE = "沪A12345"


def stage(**extra: Any) -> WarningStageRule:
    fields: dict[str, Any] = {
        "id": "warn-site",
        "site_id": "s1",
        "valid_from": T0 - timedelta(days=1),
        "reason": "先提醒后执法",
        "issued_at": T0,
        "grace_minutes": 5,
        "channels": ["announce", "owner"],
        "repeat_warnings": 3,
        "repeat_days": 30,
    }
    return WarningStageRule(**(fields | extra))


def document(*rules: Any, offenders: tuple[str, ...] = ()) -> RuleDocument:
    return RuleDocument(
        site_id="s1",
        gateway_id="g1",
        version=1,
        issued_at=T0,
        rules=list(rules),
        repeat_offenders=list(offenders),
    )


def test_stage_applies_on_its_site_and_zone_not_in_fire_lanes() -> None:
    doc = document(stage())
    decision = warning_stage(doc, PLATE, 0.95, KERB, SITE, T0)
    assert decision.warn
    assert decision.rule is not None
    assert decision.rule.id == "warn-site"
    assert warning_stage(doc, PLATE, 0.95, LANE, SITE, T0).why is StageWhy.FIRE_LANE
    assert warning_stage(None, PLATE, 0.95, KERB, SITE, T0).why is StageWhy.NO_STAGE
    assert warning_stage(document(), PLATE, 0.95, KERB, SITE, T0).why is StageWhy.NO_STAGE
    lapsed = document(stage(valid_to=T0 - timedelta(minutes=1)))
    assert warning_stage(lapsed, PLATE, 0.95, KERB, SITE, T0).why is StageWhy.NO_STAGE
    other_zone = document(stage(zone_id="elsewhere"))
    assert warning_stage(other_zone, PLATE, 0.95, KERB, SITE, T0).why is StageWhy.NO_STAGE


def test_a_zone_stage_replaces_the_site_stage() -> None:
    doc = document(stage(), stage(id="warn-kerb", zone_id="kerb", grace_minutes=2))
    decision = warning_stage(doc, PLATE, 0.95, KERB, SITE, T0)
    assert decision.rule is not None
    assert (decision.rule.id, decision.rule.grace_minutes) == ("warn-kerb", 2)


def test_repeat_offenders_skip_the_warning_only_on_a_readable_plate() -> None:
    doc = document(stage(), offenders=(PLATE,))
    assert warning_stage(doc, PLATE, 0.95, KERB, SITE, T0).why is StageWhy.REPEAT_OFFENDER
    # Below the confidence floor (0.8) the reading is never linked as a repeat offender.
    assert warning_stage(doc, PLATE, 0.5, KERB, SITE, T0).warn
    assert warning_stage(doc, None, None, KERB, SITE, T0).warn
    # The gateway's own count: K warnings skip the next one.
    plain = document(stage())
    assert warning_stage(plain, PLATE, 0.95, KERB, SITE, T0, warnings_here=2).warn
    gateway_count = warning_stage(plain, PLATE, 0.95, KERB, SITE, T0, warnings_here=3)
    assert gateway_count.why is StageWhy.REPEAT_AT_GATEWAY
    assert warning_stage(plain, PLATE, 0.5, KERB, SITE, T0, warnings_here=3).warn


def test_a_stage_is_not_an_exemption() -> None:
    history = StayHistory(T0 - timedelta(minutes=10))
    decision = evaluate(document(stage()), PLATE, 0.95, KERB, SITE, T0, history)
    assert decision.outcome is Outcome.ENFORCE


@pytest.mark.parametrize(
    "bad",
    [
        {"grace_minutes": 0},
        {"grace_minutes": 24 * 60 + 1},
        {"channels": []},
        {"channels": ["announce", "announce"]},
        {"channels": ["fax"]},
        {"repeat_warnings": 0},
        {"repeat_days": 0},
        {"unknown": 1},
    ],
)
def test_hostile_stage_rules_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        stage(**bad)


def test_the_document_refuses_a_bad_repeat_offender_plate() -> None:
    with pytest.raises(ValidationError):
        document(stage(), offenders=("not a plate",))


def notice() -> WarningNotice:
    return WarningNotice(
        rule_id="warn-site", warned_at=T0, grace_until=T0 + timedelta(minutes=5), announced=True
    )


def violation(phase: Phase, **extra: Any) -> dict[str, Any]:
    return {
        "message_id": str(uuid.uuid4()),
        "violation_id": str(uuid.uuid4()),
        "sequence": 1,
        "phase": phase.value,
        "kind": "illegal_parking",
        "site_id": "s1",
        "gateway_id": "g1",
        "camera_id": "cam",
        "zone_id": "kerb",
        "started_at": T0.isoformat(),
        "observed_at": T0.isoformat(),
        "dwell_seconds": 60,
        **extra,
    }


def test_warning_phases_need_their_notice_and_warned_its_frames() -> None:
    frame = make_frame(1).model_dump(mode="json")
    warned = notice().model_dump(mode="json")
    ViolationEvent.model_validate(violation(Phase.WARNED, evidence=[frame], warning=warned))
    ViolationEvent.model_validate(violation(Phase.COMPLIED, warning=warned))
    with pytest.raises(ValidationError, match="must carry its warning"):
        ViolationEvent.model_validate(violation(Phase.WARNED, evidence=[frame]))
    with pytest.raises(ValidationError, match="must carry its warning"):
        ViolationEvent.model_validate(violation(Phase.COMPLIED))
    with pytest.raises(ValidationError, match="dwell-crossed frames"):
        ViolationEvent.model_validate(violation(Phase.WARNED, warning=warned))
    backwards = {**warned, "grace_until": (T0 - timedelta(seconds=1)).isoformat()}
    with pytest.raises(ValidationError, match="grace_until"):
        ViolationEvent.model_validate(violation(Phase.COMPLIED, warning=backwards))


def announcement(**extra: Any) -> Announcement:
    texts = announcement_texts(PLATE, "东门路边", 5)
    fields: dict[str, Any] = {
        "message_id": uuid.uuid4(),
        "violation_id": uuid.uuid4(),
        "site_id": "s1",
        "gateway_id": "g1",
        "camera_id": "cam",
        "zone_id": "kerb",
        "warned_at": T0,
        "grace_until": T0 + timedelta(minutes=5),
        "plate": PLATE,
        "text_zh": texts["zh-CN"],
        "text_en": texts["en"],
    }
    return Announcement(**(fields | extra))


def test_announcement_texts_in_both_languages() -> None:
    texts = announcement_texts(PLATE, "东门路边", 5)
    assert set(texts) == {"zh-CN", "en"}
    assert PLATE in texts["zh-CN"]
    assert "5分钟" in texts["zh-CN"]
    assert "东门路边" in texts["zh-CN"]
    assert PLATE in texts["en"]
    assert "5 min" in texts["en"]
    anonymous = announcement_texts(None, "kerb", 0.5)
    assert "None" not in anonymous["zh-CN"]
    assert "None" not in anonymous["en"]
    assert "0.5" in anonymous["en"]


def test_read_announcement_checks_size_model_and_topic() -> None:
    topic = announce_topic("s1", "g1")
    assert topic == "civicwatch/v1/s1/g1/announce"
    good = announcement()
    assert read_announcement(topic, good.to_wire()) == good
    cases: list[tuple[str, bytes, AnnounceRefusal]] = [
        (topic, b"x" * (MAX_ANNOUNCE_BYTES + 1), AnnounceRefusal.OVERSIZE),
        (topic, b"{not json", AnnounceRefusal.INVALID),
        (
            topic,
            json.dumps({**json.loads(good.to_wire()), "image": "AAAA"}).encode(),
            AnnounceRefusal.INVALID,
        ),
        (announce_topic("s1", "g2"), good.to_wire(), AnnounceRefusal.FORGED),
        ("civicwatch/v1/s1/g1/rules", good.to_wire(), AnnounceRefusal.WRONG_TOPIC),
    ]
    for where, payload, reason in cases:
        with pytest.raises(AnnouncementRefused) as refused:
            read_announcement(where, payload)
        assert refused.value.reason is reason


def test_an_announcement_never_carries_a_picture_or_a_long_text() -> None:
    assert "data" not in Announcement.model_fields
    assert "image" not in Announcement.model_fields
    with pytest.raises(ValidationError):
        announcement(text_zh="长" * 201)
