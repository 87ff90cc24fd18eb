"""The message catalogue: both languages complete, every enum value named, every key the pages
use defined, placeholders alike, language choice, and the timeline told in one language."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import pytest
from starlette.requests import Request

from contracts.events import EvidenceLabel, ViolationKind
from contracts.kinds import ZONE_KINDS, ZoneKind
from contracts.status import CameraHealth, CameraProblem
from dispatch.accounts import LOCAL_ACTOR
from dispatch.config import DeadlineClock, Department, Priority, Role, Tier
from dispatch.routing import DISPATCH_ACTOR
from dispatch.sla import ACK, ESCALATION_TARGETS, RESOLVE, SWEEP_ACTOR
from dispatch.verification import EVIDENCE_LABEL, SYSTEM_ACTOR, Verification
from dispatch.web.evidence_view import AFTER_PHOTO
from dispatch.web.i18n import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    CatalogueError,
    load_catalogue,
    pick_language,
    translator,
)
from dispatch.web.timeline import TimelineText, actor_name, is_system_actor
from dispatch.workflow import Action, CloseReason
from ingest.writer.incidents import INGEST_ACTOR
from ingest.writer.matching import LinkReason
from storage.evidence_retention import ACTION as RETENTION_ACTION
from storage.evidence_retention import ACTOR as RETENTION_ACTOR
from storage.tables import CaseState, CaseTransition

ROOT = Path(__file__).resolve().parents[3]

ENUM_GROUPS: list[tuple[str, type[StrEnum]]] = [
    ("kind", ViolationKind),
    ("department", Department),
    ("state", CaseState),
    ("action", Action),
    ("priority", Priority),
    ("tier", Tier),
    ("role", Role),
    ("health", CameraHealth),
    ("problem", CameraProblem),
    ("close_reason", CloseReason),
    ("verification", Verification),
    ("zone_kind", ZoneKind),
    ("evidence_label", EvidenceLabel),
]

# Values shown on pages that are plain strings in the code, not enums.
VALUE_GROUPS: list[tuple[str, Iterable[str]]] = [
    ("evidence_label", [AFTER_PHOTO, EVIDENCE_LABEL]),
    ("escalation_target", ESCALATION_TARGETS.values()),
    ("escalation", ["0", *(str(level) for level in ESCALATION_TARGETS)]),
    ("deadline_kind", [ACK, RESOLVE]),
    ("link", [v for k, v in vars(LinkReason).items() if k.isupper()]),
    # What a camera re-check names: every class an edge rule watches.
    ("object", sorted({name for facts in ZONE_KINDS.values() for name in facts.default_classes})),
]


def test_both_languages_have_the_same_keys() -> None:
    chinese, english = (set(load_catalogue(language)) for language in LANGUAGES)
    assert chinese - english == set(), "keys only in zh-CN.yaml"
    assert english - chinese == set(), "keys only in en.yaml"


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(("group", "enum"), ENUM_GROUPS)
def test_every_enum_value_has_a_name(language: str, group: str, enum: type[StrEnum]) -> None:
    messages = load_catalogue(language)
    missing = [member.value for member in enum if f"{group}.{member.value}" not in messages]
    assert missing == [], f"{language}: no {group} name for {missing}"
    assert all(messages[f"{group}.{member.value}"].strip() for member in enum)


def test_the_audit_log_actions_ingest_writes_have_names_too() -> None:
    for language in LANGUAGES:
        t = translator(language)
        for action in ("register", "observe", "sighting", RETENTION_ACTION):
            assert t.name("action", action) != action


def test_chinese_names_are_the_districts_terms() -> None:
    t = translator("zh-CN")
    assert t.name("kind", ViolationKind.ILLEGAL_PARKING) == "违法停车"
    assert t.name("kind", ViolationKind.FIRE_LANE_BLOCKING) == "占用消防通道"
    assert t.name("department", Department.LAW_ENFORCEMENT) == "综合行政执法"
    assert t.name("department", Department.FIRE_RESCUE) == "消防救援"
    assert t.name("state", CaseState.NEW) == "待派遣"
    assert t.name("state", CaseState.RESOLVED) == "已办结待核查"
    assert t.name("state", CaseState.PARKED) == "挂账"
    assert t.name("department", None) == "未分派"
    assert translator("en")("ui.minutes_left", minutes=5) == "5 min left"


def test_a_broken_locale_file_names_the_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "xx.yaml").write_text("ui:\n  login: [not, text]\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"xx\.yaml: ui\.login"):
        load_catalogue("xx", tmp_path)


def _request(query: str = "", cookie: str = "", accept: str = "") -> Request:
    headers = []
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    if accept:
        headers.append((b"accept-language", accept.encode()))
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/",
            "query_string": query.encode(),
            "headers": headers,
        }
    )


@pytest.mark.parametrize(
    ("query", "cookie", "accept", "expected"),
    [
        ("", "", "", ("zh-CN", False)),
        # The browser's language never picks English: Chinese unless the user chose it.
        ("", "", "en-US,en;q=0.9", ("zh-CN", False)),
        ("", "", "fr;q=1, en;q=0.5, zh-CN;q=0.8", ("zh-CN", False)),
        ("", "", "de", (DEFAULT_LANGUAGE, False)),
        ("", "cw_lang=en", "zh-CN", ("en", False)),
        ("lang=en", "cw_lang=zh-CN", "", ("en", True)),
        ("lang=klingon", "", "", ("zh-CN", False)),
    ],
)
def test_language_choice(query: str, cookie: str, accept: str, expected: tuple[str, bool]) -> None:
    assert pick_language(_request(query, cookie, accept)) == expected


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(("group", "values"), VALUE_GROUPS)
def test_every_value_shown_has_a_name(language: str, group: str, values: Iterable[str]) -> None:
    messages = load_catalogue(language)
    missing = [value for value in values if not messages.get(f"{group}.{value}", "").strip()]
    assert missing == [], f"{language}: no {group} name for {missing}"


PLACEHOLDER = re.compile(r"\{(\w*)\}")


def test_both_languages_fill_the_same_placeholders() -> None:
    chinese, english = (load_catalogue(language) for language in LANGUAGES)
    differ = {
        key: (sorted(set(PLACEHOLDER.findall(text))), sorted(set(PLACEHOLDER.findall(other))))
        for key, text in chinese.items()
        if (other := english.get(key)) is not None
        and set(PLACEHOLDER.findall(text)) != set(PLACEHOLDER.findall(other))
    }
    assert differ == {}, "placeholders differ between zh-CN and en"


def _sources(folder: str, suffix: str) -> list[Path]:
    return sorted((ROOT / folder).rglob(f"*{suffix}"))


# A literal key only: t('panel.deadline_' ~ state) builds its key, which the enum tests cover.
TEMPLATE_KEY = re.compile(r"""\bt\(\s*['"]([a-z_]+\.[\w.]+)['"]\s*[,)]""")
TEMPLATE_GROUP = re.compile(r"""\bt\.(?:name|group)\(\s*['"]([a-z_]+)['"]""")
SCRIPT_KEY = re.compile(r"""\bt\(\s*['"]([a-z_]+)['"]\s*,\s*['"]([a-z_]+)['"]\s*[,)]""")


def _groups(messages: dict[str, str]) -> set[str]:
    return {key.split(".", 1)[0] for key in messages}


def test_every_key_a_template_names_exists() -> None:
    messages = load_catalogue(DEFAULT_LANGUAGE)
    missing = []
    for path in _sources("dispatch/web/templates", ".html"):
        text = path.read_text(encoding="utf-8")
        missing += [f"{path.name}: {k}" for k in TEMPLATE_KEY.findall(text) if k not in messages]
        missing += [
            f"{path.name}: group {group}"
            for group in TEMPLATE_GROUP.findall(text)
            if group not in _groups(messages)
        ]
    assert missing == []


def test_every_key_a_script_names_exists() -> None:
    """``CW.t("group", "key")`` in the pages' scripts: a missing key shows as itself."""
    messages = load_catalogue(DEFAULT_LANGUAGE)
    missing = [
        f"{path.name}: {group}.{key}"
        for path in _sources("dispatch/web/static", ".js")
        for group, key in SCRIPT_KEY.findall(path.read_text(encoding="utf-8"))
        if f"{group}.{key}" not in messages
    ]
    assert missing == []


def test_the_scan_finds_a_key_that_is_not_there() -> None:
    """The scans above can fail: a made-up key in a template's syntax is caught."""
    assert TEMPLATE_KEY.findall("{{ t('ui.no_such_thing') }}") == ["ui.no_such_thing"]
    assert SCRIPT_KEY.findall('CW.t("ui", "no_such_thing")') == [("ui", "no_such_thing")]
    assert "ui.no_such_thing" not in load_catalogue(DEFAULT_LANGUAGE)


# Error codes the API can give: error.<code> must exist in both languages (the console shows it).
API_ERROR = re.compile(r'ApiError\(\s*[\w.]+\s*,\s*"([a-z0-9_]+)"')
CODE_ATTRIBUTE = re.compile(r'^\s+code(?::\s*str)?\s*=\s*"([a-z0-9_]+)"', re.MULTILINE)
CODE_ARGUMENT = re.compile(r'\bcode="([a-z0-9_]+)"')


def _error_codes() -> set[str]:
    from dispatch import errors

    codes = set(errors.STATUS_CODES.values()) | {errors.WORKFLOW_FALLBACK_CODE}
    for path in [*_sources("dispatch", ".py"), *_sources("storage", ".py")]:
        text = path.read_text(encoding="utf-8")
        codes |= set(API_ERROR.findall(text))
        if "Error" in text:
            codes |= set(CODE_ATTRIBUTE.findall(text)) | set(CODE_ARGUMENT.findall(text))
    return codes


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_api_error_code_has_a_message(language: str) -> None:
    messages = load_catalogue(language)
    codes = _error_codes()
    assert {"case_not_found", "workflow_refused"} <= codes  # the scan sees the codes
    missing = sorted(code for code in codes if f"error.{code}" not in messages)
    assert missing == [], f"{language}: no error.<code> message for {missing}"


WHY = re.compile(r"""["']why["']\s*(?::|\]\s*=)\s*["']([a-z_]+)["']""")


# The modules that write case-timeline entries with facts; a new writer joins this list.
TIMELINE_WRITERS = [
    "dispatch/routing.py",
    "dispatch/verification.py",
    "dispatch/sla.py",
    "dispatch/workflow.py",
    "ingest/writer/case_rows.py",
    "ingest/writer/incidents.py",
]


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_fact_a_writer_records_has_a_name(language: str) -> None:
    """Each ``detail["why"]`` a timeline writer stores is told in both languages."""
    messages = load_catalogue(language)
    whys = {
        why
        for name in TIMELINE_WRITERS
        for why in WHY.findall((ROOT / name).read_text(encoding="utf-8"))
    }
    assert {"routing_rule", "opened", "still_there"} <= whys
    assert sorted(why for why in whys if f"why.{why}" not in messages) == []


# --- the timeline -------------------------------------------------------------------------------

CHINESE = re.compile(r"[\u4e00-\u9fff]")
LATIN_WORD = re.compile(r"[A-Za-z]{3,}")
AT = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


def _entry(action: str, actor: str, detail: dict[str, object], reason: str = "") -> CaseTransition:
    return CaseTransition(
        case_id=1,
        from_state="dispatched",
        to_state="dispatched",
        actor=actor,
        reason=reason,
        at=AT,
        action=action,
        detail=detail,
    )


def _local(value: datetime | str | None, _site: str | None) -> str:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.strftime("%m-%d %H:%M") if moment else "—"


# Entries as the writers store them today: English prose in reason, the facts in detail.
SYSTEM_ENTRIES = [
    _entry(
        "dispatch",
        DISPATCH_ACTOR,
        {
            "why": "routing_rule",
            "rule": 1,
            "match": {
                "kind": "fire_lane_blocking",
                "zone_kind": "fire_lane",
                "hours": "22:00-07:00",
            },
            "department": "fire_rescue",
            "tier": "department",
            "priority": "urgent",
            "sla_minutes": 30,
            "clock": DeadlineClock.CALENDAR.value,
        },
        "routing rule #1 (kind=fire_lane_blocking): fire_rescue, department, urgent, SLA 30 min",
    ),
    _entry(
        "dispatch",
        DISPATCH_ACTOR,
        {"why": "default_route", "kind": "illegal_parking", "department": "law_enforcement"},
        "default route for illegal_parking: law_enforcement, department, normal, SLA 60 min",
    ),
    _entry(
        "register",
        INGEST_ACTOR,
        {"why": "opened", "camera_id": "cam-a1", "violation_id": "x", "phase": "opened"},
        "violation x opened on camera cam-a1",
    ),
    _entry(
        "observe",
        INGEST_ACTOR,
        {"why": "merged_violation", "camera_id": "cam-b1", "link": "plate"},
        "merged violation y from camera cam-b1 (same plate)",
    ),
    _entry(
        "escalate",
        SWEEP_ACTOR,
        {"level": 1, "deadline": "ack", "to": "supervisor", "due_at": AT.isoformat()},
        "ack deadline 2026-05-04T16:00+08:00 missed: to the supervisor of fire_rescue",
    ),
    _entry(
        "transfer",
        SWEEP_ACTOR,
        {
            "deadline": "resolve",
            "from_department": "property_management",
            "department": "law_enforcement",
            "deadline_from": AT.isoformat(),
            "deadline_to": "2026-05-04T10:00:00+00:00",
        },
        "property_management did not resolve it by ...: escalated to law_enforcement",
    ),
    _entry(
        "reopen",
        "camera:cam-a1",
        {"why": "still_there", "objects": ["car", "truck"], "blocked_share": 0.5},
        "still in the zone on re-check by camera cam-a1: car (0.91); 50% of the lane blocked",
    ),
    _entry(
        "verify",
        "camera:cam-a1",
        {"why": "verified_clear", "frames_checked": 3},
        "zone clear on re-check",
    ),
    _entry(
        "note",
        SYSTEM_ACTOR,
        {"why": "verification_timeout", "camera_id": "cam-a1", "waited_seconds": 600},
        "camera cam-a1 did not answer the re-check within 0:10:00: verify by hand",
    ),
    _entry(
        RETENTION_ACTION,
        RETENTION_ACTOR,
        {"why": "retention_period", "images": 5, "photos": 1, "retention_days": 180},
        "evidence removed after the retention period",
    ),
]
IDS = {"cam-a1", "cam-b1"}


@pytest.mark.parametrize("entry", SYSTEM_ENTRIES, ids=lambda e: f"{e.action}-{e.actor}")
def test_system_entries_read_in_one_language(entry: CaseTransition) -> None:
    chinese = TimelineText(translator("zh-CN"), _local)(entry)
    english = TimelineText(translator("en"), _local)(entry)
    assert chinese.facts, "a system entry says what happened"
    assert english.facts
    assert chinese.prose == english.prose == "", "its English prose is not shown"
    zh_text = " ".join([*chinese.facts, chinese.actor])
    for name in IDS:
        zh_text = zh_text.replace(name, "")
    assert LATIN_WORD.findall(zh_text) == [], zh_text
    assert CHINESE.findall(" ".join([*english.facts, english.actor])) == []


def test_the_routing_line_names_rule_match_and_terms() -> None:
    line = TimelineText(translator("zh-CN"), _local)(SYSTEM_ENTRIES[0])
    assert line.facts[0] == (
        "按分派规则 #1（违规类型：占用消防通道；区域类型：消防通道；时段：22:00-07:00）"
    )
    assert line.facts[1:] == ["消防救援", "大事派单", "紧急", "办结时限 30 分钟"]
    assert line.actor == "指挥中心（自动分派）"


def test_a_deadline_move_says_from_and_to_in_local_time() -> None:
    line = TimelineText(translator("en"), _local)(SYSTEM_ENTRIES[5])
    assert "Resolve deadline moved from 05-04 08:00 to 05-04 10:00" in line.facts
    assert "Urban law enforcement" in " ".join(line.facts)


def test_a_persons_reason_shows_as_typed_and_their_name_as_is() -> None:
    typed = _entry(
        "transfer",
        "desk01",
        {"department": "fire_rescue", "from_department": None},
        "wrong team, fire lane",
    )
    line = TimelineText(translator("zh-CN"), _local)(typed)
    assert (line.actor, line.typed, line.prose) == ("desk01", "wrong team, fire lane", "")
    assert line.facts == ["消防救援"]
    assign = _entry("assign", "desk01", {"assignee": "li"})
    assert TimelineText(translator("zh-CN"), _local)(assign).facts == ["指派给 li"]


def test_an_old_system_entry_with_prose_only_still_shows_it() -> None:
    old = _entry("dispatch", DISPATCH_ACTOR, {"department": "fire_rescue"}, "routing rule #1 (...)")
    line = TimelineText(translator("zh-CN"), _local)(old)
    assert line.prose == "routing rule #1 (...)"
    assert line.facts == ["消防救援"]


@pytest.mark.parametrize(
    "actor", [DISPATCH_ACTOR, INGEST_ACTOR, SWEEP_ACTOR, SYSTEM_ACTOR, LOCAL_ACTOR, "camera:cam-a1"]
)
def test_every_system_actor_has_a_name_in_both_languages(actor: str) -> None:
    assert is_system_actor(actor)
    chinese, english = actor_name(translator("zh-CN"), actor), actor_name(translator("en"), actor)
    assert CHINESE.search(chinese)
    assert not CHINESE.search(english)
    assert actor not in (chinese, english)
