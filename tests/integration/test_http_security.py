"""Security headers on every response, evidence typed by its bytes and never cached, logout
clearing the browser's copy: through the real app (TestClient) over a real SQLite database.

The browser-side proof (a planted HTML file does not run, the next user on the same browser does
not get the original) is in tests/browser/test_evidence_browser.py.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from dispatch.config import Department, Role
from tests.factories import plant_evidence
from tests.integration.test_web_pages import Site, auth, jpeg, png, serve

SCRIPT = b"<script>document.title='pwned';fetch('/xss-ran')</script>"
HTML = b"<!doctype html><html><body><h1>evidence</h1>" + SCRIPT + b"</body></html>"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with serve(f"sqlite:///{tmp_path / 'civicwatch.db'}", tmp_path) as served:
        yield served


def _plant(site: Site, data: bytes, content_type: str) -> str:
    return plant_evidence(
        site.rig.session_factory, site.rig.evidence_store, site.parking_id, data, content_type
    )


def _jpeg_then_html() -> bytes:
    """A real JPEG with an HTML page after its end: a browser that sniffs might render it."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(buffer, format="JPEG")
    return buffer.getvalue() + HTML


@pytest.mark.parametrize(
    ("data", "declared", "served", "disposition"),
    [
        (HTML, "text/html", "application/octet-stream", 'attachment; filename="{sha}.bin"'),
        (HTML, "image/jpeg", "application/octet-stream", 'attachment; filename="{sha}.bin"'),
        (jpeg(), "text/html; charset=utf-8", "image/jpeg", 'inline; filename="{sha}.jpg"'),
        (png(), "image/jpeg", "image/png", 'inline; filename="{sha}.png"'),
        (_jpeg_then_html(), "text/html", "image/jpeg", 'inline; filename="{sha}.jpg"'),
    ],
    ids=["html-as-html", "html-as-jpeg", "jpeg-as-html", "png-as-jpeg", "jpeg-then-html"],
)
def test_evidence_is_served_as_what_its_bytes_are_not_as_declared(
    site: Site, data: bytes, declared: str, served: str, disposition: str
) -> None:
    sha = _plant(site, data, declared)
    response = site.client.get(f"/api/v1/evidence/{sha}", headers=auth("law"))
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == served
    assert response.headers["content-disposition"] == disposition.format(sha=sha)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]


def test_evidence_is_never_kept_in_the_browser_cache(site: Site) -> None:
    sha = _plant(site, jpeg(colour=(1, 2, 3)), "image/jpeg")
    for who in ("dispatcher", "law"):
        response = site.client.get(f"/api/v1/evidence/{sha}", headers=auth(who))
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"


def _sign_in(site: Site) -> None:
    """A worker's session cookie on the client, as the browser gets it."""
    accounts = site.client.app.state.api.accounts  # type: ignore[attr-defined]
    accounts.create_user("officer01", "a-long-password-2", Role.WORKER, Department.LAW_ENFORCEMENT)
    login = site.client.post(
        "/api/v1/auth/login", json={"username": "officer01", "password": "a-long-password-2"}
    )
    assert login.status_code == 200, login.text


def _check_common(path: str, headers: dict[str, str]) -> None:
    assert headers.get("x-content-type-options") == "nosniff", path
    assert headers.get("x-frame-options") == "DENY", path
    assert headers.get("referrer-policy") == "no-referrer", path
    assert "frame-ancestors 'none'" in headers.get("content-security-policy", ""), path


def test_every_html_page_has_a_restrictive_content_security_policy(site: Site) -> None:
    _sign_in(site)
    pages = [
        "/login",
        "/worker",
        f"/worker/cases/{site.parking_id}",
        "/console",  # a worker is sent on to /worker
        "/console/fragments/cases",
    ]
    for path in pages:
        response = site.client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        assert response.headers["content-type"].startswith("text/html")
        _check_common(path, dict(response.headers))
        policy = {
            part.split()[0]: part.split()[1:]
            for part in response.headers["content-security-policy"].split(";")
            if part.strip()
        }
        assert policy["default-src"] == ["'self'"], path
        assert policy["script-src"] == ["'self'"], path  # no inline script, no eval
        assert policy["object-src"] == ["'none'"], path
        assert policy["base-uri"] == ["'none'"], path
        assert policy["form-action"] == ["'self'"], path


def test_api_static_and_error_responses_carry_the_headers_too(site: Site) -> None:
    sha = _plant(site, jpeg(colour=(4, 5, 6)), "image/jpeg")
    requests = [
        ("/api/v1/cases", auth("dispatcher"), 200),
        (f"/api/v1/evidence/{sha}", auth("dispatcher"), 200),
        ("/api/v1/cases", {}, 401),
        ("/api/v1/cases/999999", auth("dispatcher"), 404),
        ("/static/app.js", {}, 200),
        ("/healthz", {}, 200),
        ("/metrics", {}, 200),
    ]
    for path, headers, expected in requests:
        response = site.client.get(path, headers=headers)
        assert response.status_code == expected, path
        _check_common(path, dict(response.headers))
        if not response.headers["content-type"].startswith("text/html"):
            # Nothing but a page may run anything, even if a browser is tricked into rendering it.
            assert response.headers["content-security-policy"].startswith("default-src 'none'")


def test_logout_tells_the_browser_to_clear_its_cache_cookies_and_storage(site: Site) -> None:
    _sign_in(site)
    response = site.client.post("/api/v1/auth/logout", headers={"X-Requested-With": "civicwatch"})
    assert response.status_code == 204
    cleared = {part.strip() for part in response.headers["clear-site-data"].split(",")}
    assert cleared == {'"cache"', '"cookies"', '"storage"'}
