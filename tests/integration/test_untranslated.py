"""The untranslated-string crawl: every page, as every role, in both languages, read as a person
sees it (text and the attributes a screen reader or tooltip shows, not scripts), fails on a raw
catalogue key (``ui.xxx``), a raw enum (``fire_lane_blocking``), Latin words on a Chinese page
or Chinese on an English page.

Pages are found by following the links each role's home page offers, plus ``EXTRA_PAGES`` (pages
no link reaches: fragments, admin pages, other helpers' new pages). A page that does not exist
(404 for everyone) is skipped, so the list can name pages before they land. What is data, not
interface, is allowed: ids, names and places from the site registry, user names, plates, numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from contracts.sites import SiteRegistry
from dispatch.accounts import AccountService
from dispatch.config import Department, Role
from dispatch.sla import SWEEP_ACTOR
from dispatch.verification import Verification
from dispatch.web.i18n import LANGUAGE_COOKIE, LANGUAGES, load_catalogue
from dispatch.workflow import Action, Actor, CloseReason, Command, Workflow, system_actor
from storage.tables import Case, CaseTransition
from tests.integration.test_web_pages import Site, serve

PASSWORD = "a-long-password-for-crawling-1"

# (user name, role, department): one account per role the console serves.
ROLES: list[tuple[str, Role, Department | None]] = [
    ("crawl-admin", Role.ADMIN, None),
    ("crawl-desk", Role.DISPATCHER, None),
    ("crawl-super", Role.SUPERVISOR, Department.LAW_ENFORCEMENT),
    ("crawl-worker", Role.WORKER, Department.LAW_ENFORCEMENT),
    ("crawl-fire", Role.WORKER, Department.FIRE_RESCUE),
]

# Pages no link leads to. "{parking}"/"{fire}" are the seeded cases, "{site}" the first site.
# Add a new page here when it lands; a page that is not there yet (404) is skipped.
EXTRA_PAGES = [
    "/login",
    "/account/password",
    "/console",
    "/console/fragments/cases",
    "/console/fragments/sla",
    "/console/cases/{parking}",
    "/console/cases/{parking}/panel",
    "/console/cases/{fire}",
    "/console/cases/{fire}/panel",
    "/worker",
    "/worker/cases/{parking}",
    "/worker/cases/{fire}",  # another department's case for the law worker: the error page
    "/console/plans/{site}",
    "/admin/plans",
    "/console/templates",
    "/console/reports",
    "/wall",
    "/wall/fragment",
    "/console/cases/999999",  # a missing case: the error page, in the page's language
]
NOT_PAGES = ("/api/", "/static/", "/evidence", "/metrics", "/openapi", "/docs", "/open311")
NOT_PAGE_SUFFIXES = (".pdf", ".csv", ".xlsx", ".json", ".png", ".jpg")
MAX_PAGES_PER_ROLE = 60

# Interface words that are the same in every language: brands, formats, units. Keep it short.
ALLOWED_LATIN = {"English", "CivicWatch", "JPEG", "PNG", "MB", "KB", "SLA", "CSV", "XLSX", "PDF"}
ALLOWED_LATIN |= {"HTML", "AMap", "Excel", "p90", "p50", "ID", "URL", "HTTP", "UTF"}
ALLOWED_LATIN |= {"Enter", "Esc", "Tab", "Shift", "Ctrl"}  # keys as printed on the keyboard
ALLOWED_CHINESE = {"中文"}  # the language switch names Chinese in Chinese

CHINESE = re.compile(r"[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]+")
LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:['’][a-z]+)?")
SNAKE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
SHOWN_ATTRIBUTES = ("title", "placeholder", "aria-label", "alt", "label")
SKIPPED_ELEMENTS = {"script", "style", "template", "noscript"}
VOID_ELEMENTS = {"br", "img", "input", "meta", "link", "hr", "source", "area", "col", "wbr"}


class VisibleText(HTMLParser):
    """The text a person sees: text nodes and shown attributes, without scripts, hidden
    templates, what a person typed (``.typed``) and what declares another language (``lang``)."""

    def __init__(self, language: str) -> None:
        super().__init__(convert_charrefs=True)
        self.language = language
        self.parts: list[str] = []
        self.links: list[str] = []
        self._stack: list[bool] = []  # per open element: is its content skipped?

    @property
    def _skipping(self) -> bool:
        return any(self._stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "a" and values.get("href"):
            self.links.append(values["href"])
        lang = values.get("lang")
        skip = (
            tag in SKIPPED_ELEMENTS
            or "typed" in values.get("class", "").split()
            or (tag != "html" and lang is not None and lang != self.language)
        )
        if not skip and not self._skipping:
            self.parts += [values[name] for name in SHOWN_ATTRIBUTES if values.get(name)]
            if tag == "input" and values.get("type") in ("submit", "button"):
                self.parts.append(values.get("value", ""))
        if tag not in VOID_ELEMENTS:
            self._stack.append(skip)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID_ELEMENTS and self._stack:
            self._stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID_ELEMENTS and self._stack:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if not self._skipping and data.strip():
            self.parts.append(data)


@dataclass
class Finding:
    who: str
    language: str
    path: str
    problem: str
    text: str

    def __str__(self) -> str:
        return f"{self.language} {self.who} {self.path}: {self.problem}: {self.text!r}"


@dataclass
class Crawl:
    site: Site
    data_words: list[str]  # ids, names, places, plates: data, not interface
    key_pattern: re.Pattern[str]
    findings: list[Finding] = field(default_factory=list)
    pages: dict[str, set[str]] = field(default_factory=dict)  # language -> paths read

    def check(self, who: str, language: str, path: str, html: str) -> list[str]:
        reader = VisibleText(language)
        reader.feed(html)
        problems = untranslated(reader.parts, language, self.data_words, self.key_pattern)
        self.findings += [Finding(who, language, path, p, t) for p, t in problems]
        self.pages.setdefault(language, set()).add(path)
        return reader.links


def untranslated(
    parts: Iterable[str], language: str, data_words: Iterable[str], key_pattern: re.Pattern[str]
) -> list[tuple[str, str]]:
    """(problem, text) for each untranslated string among ``parts`` (a page's visible texts, one
    per element), data words (ids, names, plates) set aside. Shared with the browser crawl."""
    parts = [part.strip() for part in parts if part.strip()]
    text = "\n".join(parts)
    for word in data_words:
        text = text.replace(word, " ")
    problems: list[tuple[str, str]] = []
    problems += [("raw key", key) for key in key_pattern.findall(text)]
    problems += [("raw enum", word) for word in SNAKE.findall(text)]
    # A raw one-word enum fills its element (<dd>dispatched</dd>); inside a sentence the same
    # word is English ("to the department supervisor").
    enums = _enum_values()
    problems += [("raw enum", part) for part in parts if part in enums]
    if language == "zh-CN":
        problems += [
            ("Latin on a Chinese page", word)
            for word in LATIN_WORD.findall(text)
            if word not in ALLOWED_LATIN and len(word) > 1
        ]
    else:
        problems += [
            ("Chinese on an English page", word)
            for word in CHINESE.findall(text)
            if word not in ALLOWED_CHINESE
        ]
    return problems


def catalogue_pattern() -> re.Pattern[str]:
    groups = sorted({key.split(".", 1)[0] for key in load_catalogue("zh-CN")})
    return re.compile(rf"\b(?:{'|'.join(map(re.escape, groups))})\.[a-z_][a-z0-9_.]*\b")


@cache
def _enum_values() -> frozenset[str]:
    """One-word enum values a page must never show raw (``dispatched``, ``urgent``...)."""
    english = load_catalogue("en")
    groups = ("state", "priority", "tier", "role", "health", "action", "department", "kind")
    values = {key.split(".", 1)[1] for key in english if key.split(".", 1)[0] in groups}
    # A value that is also the English word shown for it ("Merge") is fine on an English page.
    return frozenset(v for v in values if v != "none")


def data_words(
    registry: SiteRegistry, session_names: Iterable[str], plates: Iterable[str]
) -> list[str]:
    words: set[str] = set(session_names) | {p for p in plates if p}
    for site in registry.sites:
        words |= {site.id, getattr(site, "name", "") or "", site.address or "", site.street or ""}
        for gateway in site.gateways:
            words.add(gateway.id)
            for camera in gateway.cameras:
                words |= {camera.id, camera.name or ""}
                for zone in camera.zones:
                    words |= {zone.id, getattr(zone, "name", "") or "", zone.building or ""}
    # Longest first, so "gate-no-parking" goes before "gate".
    return sorted((w for w in words if w), key=len, reverse=True)


def _seed(site: Site) -> None:
    """Give the two cases a timeline like a shift's: typed notes, an escalation by the SLA sweep,
    a camera re-check that failed, a transfer, a close with a reason."""
    sessions = site.rig.session_factory
    workflow = Workflow()
    desk = Actor("crawl-desk", Role.DISPATCHER)
    officer = Actor("crawl-worker", Role.WORKER, Department.LAW_ENFORCEMENT)
    police = Actor("police", Role.WORKER, Department.PUBLIC_SECURITY)
    with sessions.begin() as session:
        parking = session.get(Case, site.parking_id)
        fire = session.get(Case, site.fire_id)
        assert parking is not None
        assert fire is not None
        due = (parking.ack_due_at or parking.opened_at).isoformat()
        steps: list[tuple[Case, Command, Actor]] = [
            (parking, Command(Action.NOTE, "请到北门查看"), desk),
            (
                parking,
                Command(
                    Action.ESCALATE,
                    "ack deadline missed: to the supervisor",
                    detail={"level": 1, "deadline": "ack", "to": "supervisor", "due_at": due},
                ),
                system_actor(SWEEP_ACTOR),
            ),
            (parking, Command(Action.ACCEPT), officer),
            (parking, Command(Action.RESOLVE, "已挪车"), officer),
            (
                parking,
                Command(
                    Action.REOPEN,
                    "still in the zone on re-check by camera cam-a1: car (0.91)",
                    detail={"why": "still_there", "objects": ["car"], "blocked_share": 0.4},
                ),
                system_actor("camera:cam-a1"),
            ),
            (fire, Command(Action.TRANSFER, "转公安", department=Department.PUBLIC_SECURITY), desk),
            (fire, Command(Action.RETURN, "不属本部门"), police),
            (
                fire,
                Command(Action.CLOSE, "误报", close_reason=CloseReason.FALSE_ALARM),
                desk,
            ),
        ]
        for case, command, actor in steps:
            workflow.apply(session, case, command, actor, case.updated_at + timedelta(minutes=1))
        parking.verification = Verification.NOT_CLEAR.value  # as the verifier leaves it


@pytest.fixture
def crawl(tmp_path: Path) -> Iterator[Crawl]:
    with serve(f"sqlite:///{tmp_path / 'crawl.db'}", tmp_path) as site:
        accounts: AccountService = site.client.app.state.api.accounts  # type: ignore[attr-defined]
        for username, role, department in ROLES:
            accounts.create_user(username, PASSWORD, role, department)
        _seed(site)
        with site.rig.session_factory() as session:
            plates = session.scalars(select(Case.plate_text)).all()
        names = [name for name, _, _ in ROLES] + ["desk", "officer", "firefighter", "police"]
        yield Crawl(
            site,
            data_words(site.rig.registry, names, [p for p in plates if p]),
            catalogue_pattern(),
        )


def _sign_in(client: TestClient, username: str, language: str) -> None:
    client.cookies.clear()
    answer = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    client.cookies.set(LANGUAGE_COOKIE, language)


def _local(href: str) -> str | None:
    path = urldefrag(href)[0]
    parts = urlsplit(path)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return None
    if parts.path.startswith(NOT_PAGES) or parts.path.endswith(NOT_PAGE_SUFFIXES):
        return None
    if "lang=" in parts.query:  # the language switch: the crawl sets the language itself
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _crawl_as(crawl: Crawl, username: str, language: str) -> int:
    client = crawl.site.client
    _sign_in(client, username, language)
    site_id = crawl.site.rig.registry.sites[0].id
    start = [
        page.format(parking=crawl.site.parking_id, fire=crawl.site.fire_id, site=site_id)
        for page in EXTRA_PAGES
    ]
    queue, seen, read = list(start), set(start), 0
    while queue and read < MAX_PAGES_PER_ROLE:
        path = queue.pop(0)
        if path == "/login" or path.startswith("/account/password"):
            client.cookies.clear()  # signed out, as a person first sees them
            client.cookies.set(LANGUAGE_COOKIE, language)
            response = client.get(path)
            _sign_in(client, username, language)
        else:
            response = client.get(path)
        if response.status_code == 404 and "text/html" not in response.headers.get(
            "content-type", ""
        ):
            continue  # a page not built yet
        if "text/html" not in response.headers.get("content-type", ""):
            continue
        read += 1
        for href in crawl.check(username, language, path, response.text):
            link = _local(href)
            if link and link not in seen:
                seen.add(link)
                queue.append(link)
    return read


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_page_as_every_role_is_in_one_language(crawl: Crawl, language: str) -> None:
    read = {username: _crawl_as(crawl, username, language) for username, _, _ in ROLES}
    assert all(count >= 3 for count in read.values()), read  # the crawl reached pages
    assert {"/console", "/worker"} & crawl.pages[language]
    findings = sorted({str(finding) for finding in crawl.findings})
    assert findings == [], f"{len(findings)} untranslated string(s):\n" + "\n".join(findings)


def test_the_crawl_catches_each_kind_of_untranslated_string(crawl: Crawl) -> None:
    """The checks can fail: a raw key, a raw enum and the wrong script are each found."""
    page = (
        '<html lang="zh-CN"><body><p>ui.console</p><span title="fire_lane_blocking">x</span>'
        "<b>dispatched</b><i>Overdue</i><script>var ignored = 'ui.script';</script>"
        '<div class="reason typed">typed by a person</div></body></html>'
    )
    crawl.check("test", "zh-CN", "/made-up", page)
    problems = sorted((f.problem, f.text) for f in crawl.findings)
    assert ("raw key", "ui.console") in problems
    assert ("raw enum", "fire_lane_blocking") in problems
    assert ("raw enum", "dispatched") in problems
    assert ("Latin on a Chinese page", "Overdue") in problems
    assert not any("typed" in text or "script" in text for _, text in problems)
    crawl.findings.clear()
    crawl.check("test", "en", "/made-up", '<html lang="en"><p>已派遣 Dispatched</p></html>')
    assert [(f.problem, f.text) for f in crawl.findings] == [
        ("Chinese on an English page", "已派遣")
    ]


def test_the_language_switch_keeps_the_pages_other_parameters(crawl: Crawl) -> None:
    """A filtered list stays filtered when the user switches language."""
    client = crawl.site.client
    _sign_in(client, "crawl-desk", "zh-CN")
    html = client.get("/console?state=dispatched&lang=zh-CN").text
    switch = re.search(r'id="lang-en" href="([^"]+)"', html)
    assert switch is not None
    assert switch.group(1).replace("&amp;", "&") == "?state=dispatched&lang=en"


def test_ingest_and_routing_store_the_facts_the_timeline_tells(crawl: Crawl) -> None:
    """The writers keep their English reason for the audit trail and add the facts beside it."""
    with crawl.site.rig.session_factory() as session:
        entries = session.scalars(
            select(CaseTransition)
            .where(CaseTransition.case_id == crawl.site.parking_id)
            .order_by(CaseTransition.seq)
        ).all()
    register, dispatch = entries[0], entries[1]
    assert register.action == "register"
    assert register.detail["why"] == "opened"
    assert register.detail["camera_id"] in register.reason  # the prose says the same
    assert dispatch.action == "dispatch"
    assert dispatch.reason.startswith("default route for illegal_parking")
    assert dispatch.detail == {
        "why": "default_route",
        "kind": "illegal_parking",
        "department": "law_enforcement",
        "tier": dispatch.detail["tier"],
        "priority": dispatch.detail["priority"],
        "sla_minutes": dispatch.detail["sla_minutes"],
        "clock": dispatch.detail["clock"],
    }
    assert isinstance(dispatch.detail["sla_minutes"], int)
