"""Hostile input at every door a resident's report comes in by: /report (and its QR posters),
Open311 POST requests.json, the hotline form and the tracking page, as ONE table. Each row
checks the status, the error code, that nothing was half stored (resident_reports,
report_photos, case_evidence, cases and the evidence files on disk, counted before and after)
and the counter that should move: civicwatch_report_refusals_total{channel, code} for the
intake's refusals, civicwatch_qr_token_refusals_total{reason} for posters' tokens; refusals
made before the intake (the request's shape: nested or oversized bodies, a malformed site id)
are answered in the route's error shape and counted by neither.

Covered elsewhere, not repeated here:
- test_report_page.py: CSRF missing or forged, a text file named .jpg, an unknown category,
  <script> in the description escaped on the tracking page, the lookup limit (429), forged and
  garbled tokens on the GET, a forged token on the POST.
- test_open311_post.py: every field refusal (key, service, location, site, media_url, phone,
  30 000-character and NUL descriptions), <script> stored as text and never echoed, the
  per-integration flood (429 with Retry-After), a revoked key.
- test_hotline.py: a bad phone, an unknown category, a worker filing.
- test_report_refusal_metrics.py: the counter per channel, the tracking page's limit counted.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from dispatch.residents.tokens import DEFAULT_MAX_AGE_DAYS, QrSigner
from storage.tables import Case, ResidentReport
from tests.integration.resident_rig import (
    HOTLINE,
    OPEN311,
    PHOTO_BYTES,
    REFUSALS,
    SECRET,
    ResidentRig,
    auth,
    jpeg,
    poster_token,
    resident_rig,
)

PHONE = "13812341234"
Files = list[tuple[str, tuple[str, bytes, str]]]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ResidentRig]:
    yield from resident_rig(tmp_path)


# --- hostile pictures ---------------------------------------------------------------------


def noise_jpeg(side: int = 320) -> bytes:
    """Random pixels compress badly: a real JPEG well over the rig's byte cap."""
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, "JPEG", quality=95)
    data = out.getvalue()
    assert len(data) > PHOTO_BYTES
    return data


def pixel_bomb() -> bytes:
    """A small PNG (about 15 KB) that decodes to 16 megapixels: over the rig's 4."""
    out = io.BytesIO()
    Image.new("L", (4000, 4000), 0).save(out, "PNG", optimize=True)
    data = out.getvalue()
    assert len(data) < PHOTO_BYTES
    return data


def zip_bytes() -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("evil.html", "<script>alert(1)</script>")
    return out.getvalue()


PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
HTML = b"<!doctype html><html><script>alert(document.cookie)</script></html>"
# A GIF header whose bytes also read as script: the classic image/script polyglot.
GIF_SCRIPT = b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00*/=alert(1);//" + b"\x00" * 32
# A PDF header followed by a whole JPEG: a reader that looks past the magic would see a picture.
PDF_THEN_JPEG = b"%PDF-1.4\n" + jpeg()


def photo(data: bytes, name: str = "p.jpg") -> Files:
    return [("photos", (name, data, "image/jpeg"))]


def expired_token() -> str:
    issued = int(time.time() - (DEFAULT_MAX_AGE_DAYS + 1) * 86_400)
    return poster_token(at=issued)


# --- the table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """One hostile request: what to do first (floods: the allowed ones), the request, and what
    it must get: status, code (report_* / API code; for Open311 the spec has none beyond the
    status), and which counter moves (``report``: channel and code; ``qr``: the reason)."""

    send: Callable[[ResidentRig], httpx.Response]
    status: int
    code: str = ""
    counted: tuple[str, str] | None = None  # (channel, code) of civicwatch_report_refusals
    qr_reason: str = ""
    retry_after: bool = False
    prepare: Callable[[ResidentRig], None] | None = None


def _flood_web(rig: ResidentRig) -> None:
    for n in range(3):  # per_address = 3
        assert rig.web(description=f"bags {n}").status_code == 303


def _flood_poster(rig: ResidentRig) -> None:
    for n in range(2):  # per_token = 2 (one poster, whoever scans it)
        assert rig.web(t=poster_token(), description=f"bags {n}").status_code == 303


def _flood_phone(rig: ResidentRig) -> None:
    for n in range(2):  # per_phone = 2
        assert rig.hotline(phone=PHONE, description=f"call {n}").status_code == 200


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


CASES: dict[str, Hostile] = {
    # /report: pictures
    "web-photo-over-byte-cap": Hostile(
        lambda r: r.web(files=photo(noise_jpeg())),
        413,
        "report_photo_too_large",
        ("web", "report_photo_too_large"),
    ),
    "web-decompression-bomb": Hostile(
        lambda r: r.web(files=photo(pixel_bomb())),
        422,
        "report_photo_too_many_pixels",
        ("web", "report_photo_too_many_pixels"),
    ),
    "web-pdf-named-jpg": Hostile(
        lambda r: r.web(files=photo(PDF)), 422, "report_photo_type", ("web", "report_photo_type")
    ),
    "web-html-named-jpg": Hostile(
        lambda r: r.web(files=photo(HTML)), 422, "report_photo_type", ("web", "report_photo_type")
    ),
    "web-zip-named-jpg": Hostile(
        lambda r: r.web(files=photo(zip_bytes())),
        422,
        "report_photo_type",
        ("web", "report_photo_type"),
    ),
    "web-truncated-jpeg": Hostile(
        lambda r: r.web(files=photo(jpeg(640, 480)[:2000])),
        422,
        "report_photo_damaged",
        ("web", "report_photo_damaged"),
    ),
    "web-gif-script-polyglot": Hostile(
        lambda r: r.web(files=photo(GIF_SCRIPT)),
        422,
        "report_photo_type",
        ("web", "report_photo_type"),
    ),
    "web-pdf-jpeg-polyglot": Hostile(
        lambda r: r.web(files=photo(PDF_THEN_JPEG)),
        422,
        "report_photo_type",
        ("web", "report_photo_type"),
    ),
    "web-good-photos-then-a-bad-one": Hostile(
        lambda r: r.web(files=photo(jpeg()) + photo(jpeg(80, 60)) + photo(jpeg(640, 480)[:2000])),
        422,
        "report_photo_damaged",
        ("web", "report_photo_damaged"),
    ),
    "web-too-many-photos": Hostile(
        lambda r: r.web(files=photo(jpeg()) * 4),
        422,
        "report_too_many_photos",
        ("web", "report_too_many_photos"),
    ),
    "web-address-flood": Hostile(
        lambda r: r.web(description="one more"),
        429,
        "report_rate_limited",
        ("web", "report_rate_limited"),
        retry_after=True,
        prepare=_flood_web,
    ),
    # /report from a poster: tokens
    "qr-expired-token-post": Hostile(
        lambda r: r.web(t=expired_token()),
        400,
        "expired",
        ("qr", "report_bad_token"),
        qr_reason="expired",
    ),
    "qr-expired-token-get": Hostile(
        lambda r: r.client.get(f"/report?t={expired_token()}"), 400, "expired", qr_reason="expired"
    ),
    "qr-garbled-token-post": Hostile(
        lambda r: r.web(t="a.b.c"), 400, "garbled", ("qr", "report_bad_token"), qr_reason="garbled"
    ),
    "qr-token-for-an-unknown-site": Hostile(
        lambda r: r.web(t=QrSigner(SECRET).sign("nowhere", None, int(time.time()))),
        400,
        "unknown_site",
        ("qr", "report_bad_token"),
        qr_reason="unknown_site",
    ),
    "qr-poster-flood": Hostile(
        lambda r: r.web(t=poster_token(), description="one more"),
        429,
        "report_rate_limited",
        ("qr", "report_rate_limited"),
        retry_after=True,
        prepare=_flood_poster,
    ),
    # Open311 POST: bodies of the wrong shape and size
    "open311-nested-json": Hostile(
        lambda r: r.client.post(
            OPEN311, content=_nested(50_000), headers={"content-type": "application/json"}
        ),
        400,
        counted=("open311", "report_invalid_form"),
    ),
    "open311-oversized-json": Hostile(
        lambda r: r.client.post(
            OPEN311,
            content=b'{"api_key": "' + b"x" * 3_000_000 + b'"}',
            headers={"content-type": "application/json"},
        ),
        400,
        counted=("open311", "report_invalid_form"),
    ),
    "open311-oversized-form-field": Hostile(
        lambda r: r.open311(description="x" * 2_000_000),
        400,
        counted=("open311", "report_invalid_form"),
    ),
    "open311-javascript-media-url": Hostile(
        lambda r: r.open311(media_url="javascript:alert(1)"),
        400,
        counted=("open311", "report_bad_media_url"),
    ),
    # the hotline form
    "hotline-phone-flood": Hostile(
        lambda r: r.hotline(phone=PHONE, description="again"),
        429,
        "report_rate_limited",
        ("hotline", "report_rate_limited"),
        retry_after=True,
        prepare=_flood_phone,
    ),
    "hotline-malformed-site-id": Hostile(
        lambda r: r.hotline(site_id="../../etc"),
        422,
        "invalid_request",
        ("hotline", "report_invalid_form"),
    ),
    "hotline-nested-json": Hostile(
        lambda r: r.client.post(
            HOTLINE,
            content=_nested(50_000),
            headers=auth("dispatcher") | {"content-type": "application/json"},
        ),
        400,
        "bad_request",
        ("hotline", "report_invalid_form"),
    ),
    "hotline-unknown-field": Hostile(
        lambda r: r.hotline(case_id=1, state="closed"),
        422,
        "invalid_request",
        ("hotline", "report_invalid_form"),
    ),
    "hotline-control-characters": Hostile(
        lambda r: r.hotline(description="bell \x07 and nul \x00"),
        422,
        "report_text_invalid",
        ("hotline", "report_text_invalid"),
    ),
    # the tracking page
    "tracking-overlong-code": Hostile(lambda r: r.client.get("/report/t/" + "A" * 5000), 404),
    "tracking-sql-in-code": Hostile(lambda r: r.client.get("/report/t/'%20OR%201=1--"), 404),
    "tracking-path-in-code": Hostile(lambda r: r.client.get("/report/done/..%2F..%2Fetc"), 404),
}


def _all_refusals(rig: ResidentRig) -> float:
    return sum(
        sample.value
        for family in rig.metrics.collect()
        if family.name + "_total" == REFUSALS or family.name == REFUSALS
        for sample in family.samples
        if sample.name == REFUSALS
    )


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_refused_with_its_code_and_nothing_half_stored(
    rig: ResidentRig, name: str
) -> None:
    case = CASES[name]
    if case.prepare:
        case.prepare(rig)
    before = rig.stored()
    counted_before = rig.refusals(*case.counted) if case.counted else 0.0
    all_before = _all_refusals(rig)
    qr_before = rig.qr_refusals(case.qr_reason) if case.qr_reason else 0.0

    response = case.send(rig)

    assert response.status_code == case.status, response.text[:500]
    assert rig.stored() == before
    if case.counted:
        assert rig.refusals(*case.counted) == counted_before + 1
    else:
        assert _all_refusals(rig) == all_before  # not a report (a tracking lookup, a GET)
    if case.qr_reason:
        assert rig.qr_refusals(case.qr_reason) == qr_before + 1
    if case.retry_after:
        assert int(response.headers["Retry-After"]) > 0
    if response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        if isinstance(body, list):  # Open311's own error shape
            assert body[0]["code"] == case.status
        elif case.code:
            assert body["code"] == case.code
    elif case.status in (400, 422, 429) and response.request.url.path == "/report":
        assert 'role="alert"' in response.text  # the form again, saying why
    assert "Traceback" not in response.text


# --- script in text -----------------------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'
JS_URL = "javascript:alert(3)"


def _console_case(rig: ResidentRig, case_id: int) -> str:
    page = rig.client.get(f"/console/cases/{case_id}", headers=auth("dispatcher"))
    assert page.status_code == 200
    text: str = page.text
    return text


def test_script_in_every_field_is_stored_as_text_and_escaped_on_both_pages(
    rig: ResidentRig,
) -> None:
    sent = rig.web(
        query="?lang=en",
        description=f"{SCRIPT} {IMG} {JS_URL}",
        building=JS_URL,
        unit="<b>2</b>",
    )
    assert sent.status_code == 303, sent.text[:500]
    code = sent.headers["location"].rsplit("/", 1)[1]
    with rig.sessions() as session:
        report = session.scalars(select(ResidentReport)).one()
        assert report.description == f"{SCRIPT} {IMG} {JS_URL}"  # as typed, not "cleaned"
        assert report.building == JS_URL
        case_id = report.case_id
    track = rig.client.get(f"/report/t/{code}").text
    for raw in (SCRIPT, IMG, "<b>2</b>"):
        assert raw not in track
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in track
    assert "&lt;b&gt;2&lt;/b&gt;" in track
    assert f'href="{JS_URL}' not in track  # text, never a link
    console = _console_case(rig, case_id)
    for raw in (SCRIPT, IMG, "<b>2</b>"):
        assert raw not in console
    assert f'href="{JS_URL}' not in console
    assert (
        "'unsafe-inline'"
        not in rig.client.get(f"/report/t/{code}")
        .headers.get("content-security-policy", "'unsafe-inline'")
        .split("script-src", 1)[-1]
        .split(";", 1)[0]
    )


def test_script_from_the_hotline_is_escaped_on_the_console(rig: ResidentRig) -> None:
    filed = rig.hotline(description=SCRIPT, building="<i>5</i>", unit=IMG)
    assert filed.status_code == 200, filed.text
    console = _console_case(rig, filed.json()["case_id"])
    for raw in (SCRIPT, IMG, "<i>5</i>"):
        assert raw not in console
    track = rig.client.get(f"/report/t/{filed.json()['tracking_code']}").text
    assert SCRIPT not in track
    assert "&lt;script&gt;" in track


def test_a_jpeg_carrying_script_and_an_archive_is_kept_as_pixels_only(
    rig: ResidentRig,
) -> None:
    polyglot = jpeg(320, 240) + HTML + zip_bytes()  # a reader stops at the JPEG's end marker
    sent = rig.web(files=photo(polyglot))
    assert sent.status_code == 303, sent.text[:500]
    stored = [path.read_bytes() for path in rig.evidence_dir.rglob("*") if path.is_file()]
    assert len(stored) == 1
    assert stored[0].startswith(b"\xff\xd8")
    assert b"<script" not in stored[0]
    assert b"PK\x03\x04" not in stored[0]
    with rig.sessions() as session:
        assert session.scalars(select(Case)).one().source == "web"


def test_the_refused_page_does_not_echo_markup_back(rig: ResidentRig) -> None:
    refused = rig.web(files=photo(PDF), description=SCRIPT, building=IMG)
    assert refused.status_code == 422
    assert SCRIPT not in refused.text
    assert IMG not in refused.text
    assert re.search(r"&lt;script&gt;", refused.text)  # kept for the resident, as text
