"""The API's listening socket (civicwatch.serving.bind_api_socket) as uvicorn serves it: asyncio
accepts each connection and must turn Nagle off on it. With Nagle on, a response's body waited
for the client's delayed ACK of its headers, ~40 ms on every request after the first on a
kept-alive connection (a browser's console paid it on every request)."""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor

from civicwatch.serving import bind_api_socket


async def _nodelay_of_an_accepted_connection(listener: socket.socket) -> int:
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_connect(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    # As uvicorn does with the sockets it is given: loop.create_server(sock=...).
    server = await asyncio.start_server(on_connect, sock=listener)
    async with server:
        port = listener.getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(accepted, 10)
        finally:
            writer.close()


def test_connections_accepted_on_the_api_socket_send_without_nagle() -> None:
    listener = bind_api_socket("127.0.0.1", 0)
    # A thread of its own: the browser tests' session-wide Playwright keeps an event loop
    # running on the main thread, where asyncio.run() refuses to start another.
    with ThreadPoolExecutor(max_workers=1) as thread:
        nodelay = thread.submit(asyncio.run, _nodelay_of_an_accepted_connection(listener))
        assert nodelay.result(timeout=30) != 0
