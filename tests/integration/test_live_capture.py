"""A live HTTP source through OpenCV: frames flow, a dropped stream is reconnected.

The stream is vtest.avi served over HTTP on loopback by a real HTTP server; when the server
closes the stream (end of file), the camera shows offline and the capture reconnects.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from contracts.status import CameraHealth
from edge.capture import LiveCapture
from tests.conftest import SHARED_DATA


@pytest.fixture
def http_clip_server() -> Iterator[tuple[str, list[int]]]:
    """Serves ../shared/data/clips over HTTP; yields the URL of vtest.avi and a request log."""
    requests: list[int] = []

    class CountingHandler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(1)
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            return

    handler = functools.partial(CountingHandler, directory=str(SHARED_DATA / "clips"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/vtest.avi", requests
    finally:
        server.shutdown()
        server.server_close()


def test_an_http_stream_delivers_frames_and_reconnects_after_it_drops(
    http_clip_server: tuple[str, list[int]],
) -> None:
    url, requests = http_clip_server
    capture = LiveCapture("cam-http", url, fps=10)
    capture.start()
    try:
        frame = capture.latest(timeout=20)
        assert frame is not None
        assert frame.image.shape == (576, 768, 3)
        # The clip ends after 795 frames: the stream drops, and the capture opens it again.
        deadline = time.monotonic() + 60
        while capture.frames_read <= 795 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert capture.frames_read > 795, f"only {capture.frames_read} frames, no reconnect"
        assert len(requests) >= 2
    finally:
        capture.stop()


def test_an_unreachable_stream_reports_offline_and_keeps_trying() -> None:
    capture = LiveCapture("cam-gone", "http://127.0.0.1:9/nothing.avi", fps=10)
    capture.start()
    try:
        deadline = time.monotonic() + 20
        while capture.health is not CameraHealth.OFFLINE and time.monotonic() < deadline:
            time.sleep(0.05)
        assert capture.health is CameraHealth.OFFLINE
        assert "cannot open" in capture.detail
        assert capture.latest() is None
    finally:
        capture.stop()
