"""bench.api_load's generator: it lets idle connections go before the API server closes them,
and it names each failed request (exception, httpcore step, idle time of the connection)."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading

import httpx
import uvicorn

from bench.api_load import (
    CLIENT_KEEPALIVE_EXPIRY,
    SERVER_KEEP_ALIVE_SECONDS,
    ConnectionTrace,
    Failure,
    client_limits,
    failure_of,
    failure_summary,
)


async def _app(scope: object, receive: object, send: object) -> None:  # pragma: no cover
    return None


def test_the_generator_drops_idle_connections_before_the_server_does() -> None:
    # civicwatch.serving leaves uvicorn's keep-alive timeout at its default; a client that
    # reuses a connection idle as long as that races the server's close (httpx's own default
    # expiry, 5 s, equals uvicorn's 5 s: the bench's unanswered requests at saturation).
    served = uvicorn.Config(_app).timeout_keep_alive
    assert served == SERVER_KEEP_ALIVE_SECONDS
    assert client_limits().keepalive_expiry == CLIENT_KEEPALIVE_EXPIRY
    assert served - CLIENT_KEEPALIVE_EXPIRY >= 1.0


def _answer_once_then_reset(listener: socket.socket) -> None:
    """Answers the first request on a connection; resets the connection on the next one."""
    connection, _ = listener.accept()
    with connection:
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        connection.recv(65536)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_a_failed_request_is_named_with_its_step_and_idle_time() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    server = threading.Thread(target=_answer_once_then_reset, args=(listener,), daemon=True)
    server.start()

    tracer = ConnectionTrace()

    async def two_requests() -> tuple[dict[str, object], dict[str, object], BaseException]:
        first: dict[str, object] = {}
        second: dict[str, object] = {}
        async with httpx.AsyncClient(limits=client_limits()) as client:
            url = f"http://127.0.0.1:{port}/"
            response = await client.get(url, extensions={"trace": tracer.extension(first)})
            await response.aread()
            await asyncio.sleep(0.3)
            try:
                await client.get(url, extensions={"trace": tracer.extension(second)})
            except httpx.HTTPError as exc:
                return first, second, exc
        raise AssertionError("the reset connection answered")

    try:
        first, second, exc = asyncio.run(two_requests())
    finally:
        server.join(timeout=5)
        listener.close()
    assert first == {"idle_s": None}  # a new connection
    idle = second["idle_s"]
    assert isinstance(idle, float)
    assert 0.25 < idle < 2.0  # the kept-alive one, idle 0.3 s
    assert second["step"] == "http11.receive_response_headers.failed"
    assert (tracer.reused, tracer.reused_late) == (1, 0)
    assert 0.25 < tracer.longest_idle < 2.0
    kind, _message = failure_of(exc)
    assert kind in ("ReadError", "RemoteProtocolError")


def test_failures_are_counted_by_kind_and_by_phase() -> None:
    seconds = 20.0
    failures = [
        Failure("stats", "ReadTimeout", "", -1.0, 0.5),  # sent in the warm-up
        Failure("note", "RemoteProtocolError", "gone", 0.2, 0.4, idle_s=4.9),
        Failure("cameras", "HTTP 500", "boom", 7.0, 7.1),
        Failure("note", "RemoteProtocolError", "gone", 19.5, 19.6, idle_s=4.95),
        Failure("stats", "ReadError", "reset", 19.9, 20.1),
    ]
    assert [failure.phase(seconds) for failure in failures] == [
        "warm-up",
        "start",
        "steady",
        "end",
        "after",
    ]
    summary = failure_summary(failures, seconds)
    assert summary["by_kind"] == {
        "RemoteProtocolError: gone": 2,
        "HTTP 500: boom": 1,
        "ReadError: reset": 1,
    }
    assert summary["by_phase"] == {"warm-up": 1, "start": 1, "steady": 1, "end": 1, "after": 1}
    assert [entry["idle_s"] for entry in summary["first"]] == [4.9, None, None, 4.95, None]
