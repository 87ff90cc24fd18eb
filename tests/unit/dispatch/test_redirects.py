"""local_target: the login page's ``next`` stays on this site, read the way a browser reads it."""

from __future__ import annotations

from urllib.parse import urljoin

import pytest

from dispatch.web.redirects import MAX_TARGET_LENGTH, local_target

ORIGIN = "http://console.example:8080"

HOSTILE = [
    "//evil.example/x",
    "///evil.example/x",
    "/\\evil.example/x",
    "\\\\evil.example/x",
    "\\/evil.example/x",
    "/\t/evil.example/x",
    "/\n/evil.example/x",
    "/\r/evil.example/x",
    "/\r\n/evil.example/x",
    "\t//evil.example/x",
    " //evil.example/x",
    "\x00//evil.example/x",
    "/\x00/evil.example",
    "/\t\\evil.example",
    "https://evil.example/x",
    "HTTPS://evil.example",
    "http:/evil.example",
    "http:evil.example",
    "//evil.example@console.example/",
    "https:\\\\evil.example",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example/x",
    "console",
    "",
    None,
    "/" + "a" * MAX_TARGET_LENGTH,
]

LOCAL = [
    ("/console", "/console"),
    ("/worker/cases/7", "/worker/cases/7"),
    ("/console?lang=en", "/console?lang=en"),
    ("/console/cases/3#evidence", "/console/cases/3#evidence"),
    ("/", "/"),
    ("/console/cases/3?a=1&b=2", "/console/cases/3?a=1&b=2"),
    ("/%2F%2Fevil.example", "/%2F%2Fevil.example"),  # an encoded slash is a path character
    ("/con\tsole", "/console"),  # the browser drops the tab as well
    ("/a b", "/a%20b"),
    ("/案件", "/%E6%A1%88%E4%BB%B6"),
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_anything_that_leaves_the_site_is_refused(hostile: str | None) -> None:
    assert local_target(hostile) is None


@pytest.mark.parametrize(("given", "expected"), LOCAL)
def test_a_path_on_the_site_is_kept(given: str, expected: str) -> None:
    assert local_target(given) == expected


@pytest.mark.parametrize("given", [value for value in HOSTILE if value] + [g for g, _ in LOCAL])
def test_whatever_comes_back_resolves_on_the_origin(given: str) -> None:
    target = local_target(given)
    if target is not None:
        resolved = urljoin(ORIGIN + "/login", target)
        assert resolved.startswith(ORIGIN + "/"), (given, target, resolved)
        assert not any(c in target for c in "\t\n\r\\ ")
