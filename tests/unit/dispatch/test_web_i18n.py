"""The message catalogue: both languages complete, every enum value named, language choice."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import pytest
from starlette.requests import Request

from contracts.events import ViolationKind
from contracts.status import CameraHealth, CameraProblem
from dispatch.config import Department, Priority, Role, Tier
from dispatch.web.i18n import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    CatalogueError,
    load_catalogue,
    pick_language,
    translator,
)
from dispatch.workflow import Action
from storage.tables import CaseState

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
        for action in ("register", "observe", "sighting"):
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
