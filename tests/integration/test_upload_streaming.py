"""After-photo uploads sent chunked (no Content-Length) to the real server under uvicorn: nobody
gets the server to take a body before they are authenticated, and nobody more than the limit.

The request is written by hand on a socket, chunk by chunk, as an attacker would; a middleware
added outermost counts the body bytes the app takes from uvicorn.
"""

from __future__ import annotations

import http.client
import select
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from civicwatch.config import CivicwatchConfig, ServerSettings
from civicwatch.server import Server, build_server
from civicwatch.serving import BackgroundApi
from dispatch.config import ApiSettings
from dispatch.web.settings import WebOptions
from ingest.config import IngestSettings
from tests.conftest import MosquittoProcess, free_port
from tests.factories import (
    API_TOKENS,
    EventFactory,
    jpeg_bytes,
    make_registry,
    start_from_migrated_template,
)

LIMIT = WebOptions().attachment_max_bytes
CHUNK = 64 * 1024
BOUNDARY = "civicwatch-upload-boundary"


class BodyMeter:
    """Records the size of each request body message the app takes (ASGI receive), per path."""

    def __init__(self, app: ASGIApp, taken: dict[str, list[int]]) -> None:
        self._app = app
        self._taken = taken

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")

        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self._taken.setdefault(path, []).append(len(message.get("body", b"")))
            return message

        await self._app(scope, counted, send)


@dataclass
class Live:
    url: str
    port: int
    server: Server
    taken: dict[str, list[int]]
    case_id: int

    def messages(self) -> list[int]:
        """The body messages the app took for the upload, in order."""
        return self.taken.get(f"/api/v1/cases/{self.case_id}/attachments", [])


@pytest.fixture
def live(tmp_path: Path, mosquitto: MosquittoProcess) -> Iterator[Live]:
    config = CivicwatchConfig(
        sites=make_registry().sites,
        broker=mosquitto.settings,
        server=ServerSettings(
            database_url=f"sqlite:///{tmp_path / 'civicwatch.db'}",
            ingest=IngestSettings(
                client_id=f"ingest-upload-{uuid.uuid4().hex[:8]}", evidence_dir=tmp_path / "ev"
            ),
            api=ApiSettings(tokens=[API_TOKENS["law"]]),
        ),
    )
    start_from_migrated_template(config.server.database_url)
    server = build_server(config)
    taken: dict[str, list[int]] = {}
    server.app.add_middleware(BodyMeter, taken=taken)
    server.start()
    port = free_port()
    api = BackgroundApi(server.app, "127.0.0.1", port)
    api.start()
    try:
        # A case of the worker's department, accepted: an after-photo is welcome on it.
        server.service.store(EventFactory().event())
        url = f"http://127.0.0.1:{port}"
        accepted = httpx.post(
            f"{url}/api/v1/cases/1/actions", json={"action": "accept"}, headers=_auth()
        )
        assert accepted.status_code == 200, accepted.text
        yield Live(url, port, server, taken, 1)
    finally:
        api.stop()
        server.stop()


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKENS['law'].token.get_secret_value()}"}


@dataclass
class Answer:
    status: int
    body: bytes
    sent: int  # body bytes written before the answer came (or the server stopped taking them)


def _pieces(photo: bytes, total: int) -> Iterator[bytes]:
    """A multipart body carrying ``photo`` padded with zeros to ``total`` bytes, in chunks."""
    yield (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="after.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    padded = photo + b"\0" * max(0, total - len(photo))
    for start in range(0, len(padded), CHUNK):
        yield padded[start : start + CHUNK]
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def chunked_upload(live: Live, headers: dict[str, str], photo: bytes, total: int) -> Answer:
    """POSTs an after-photo chunked, stopping as soon as the server answers."""
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=10)
    try:
        head = [
            f"POST /api/v1/cases/{live.case_id}/attachments HTTP/1.1",
            f"Host: 127.0.0.1:{live.port}",
            "Transfer-Encoding: chunked",
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent = 0
        finished = True
        for piece in _pieces(photo, total):
            if select.select([sock], [], [], 0)[0]:
                finished = False  # answered early
                break
            try:
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                finished = False  # the server stopped taking the body
                break
            sent += len(piece)
        if finished:
            sock.sendall(b"0\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        return Answer(response.status, response.read(), sent)
    finally:
        sock.close()


def test_an_unauthenticated_chunked_upload_is_refused_before_its_body_is_read(
    live: Live,
) -> None:
    total = 4 * LIMIT
    answer = chunked_upload(live, {}, jpeg_bytes(1), total)
    assert answer.status == 401, answer.body
    assert sum(live.messages()) == 0, "the app read the body of an unauthenticated upload"
    assert answer.sent < total, "the answer came only after the whole body was sent"


def test_an_oversize_chunked_upload_is_refused_after_at_most_the_limit(live: Live) -> None:
    total = 4 * LIMIT
    answer = chunked_upload(live, _auth(), jpeg_bytes(2), total)
    assert answer.status == 413, answer.body
    assert f"at most {LIMIT} bytes".encode() in answer.body
    # It stops at the message that crosses the limit (plus room for the multipart framing).
    before_last = sum(live.messages()[:-1])
    assert before_last <= LIMIT + 64 * 1024, f"the app read on past the limit: {before_last} B"
    assert answer.sent < total
    with httpx.Client() as client:
        case = client.get(f"{live.url}/api/v1/cases/{live.case_id}", headers=_auth()).json()
    assert [item["label"] for item in case["evidence"]].count("after_photo") == 0


def test_a_chunked_upload_within_the_limit_is_stored(live: Live) -> None:
    photo = jpeg_bytes(3)
    answer = chunked_upload(live, _auth(), photo, len(photo))
    assert answer.status == 201, answer.body
    with httpx.Client() as client:
        case = client.get(f"{live.url}/api/v1/cases/{live.case_id}", headers=_auth()).json()
    assert [item["label"] for item in case["evidence"]].count("after_photo") == 1
