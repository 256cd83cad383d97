"""Talking to a hub over HTTP: open an SSE stream, publish, read ``/stats``, check a JSON
error, read a stream's raw bytes; a subscriber that never reads."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from sse_hub.web.state import HUB
from tests.support.sse_client import EventStream
from tests.support.waiting import wait_until

# ``client = await hub_client(limits={...})`` (the ``hub_client`` fixture).
HubClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@contextlib.asynccontextmanager
async def open_stream(
    client: TestClient[Any, Any] | aiohttp.ClientSession, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[EventStream]:
    """Open an SSE stream, check it is one, read its ``connected`` event."""
    response = await client.get(path, headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_read=30))
    try:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        stream = EventStream(response)
        await stream.connected()
        yield stream
    finally:
        response.close()


async def publish(client: TestClient[Any, Any], body: object, expect: int = 202, **kwargs: Any) -> Any:
    response = await client.post("/broadcast", json=body, **kwargs)
    payload = await response.json()
    assert response.status == expect, payload
    return payload


async def get_stats(client: TestClient[Any, Any], query: str = "") -> Any:
    response = await client.get(f"/stats{query}")
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def expect_error(response: aiohttp.ClientResponse, status: int) -> Any:
    """A ``status`` reply with a JSON error body, which it returns; any other status fails
    at once (a stream is never read to its end)."""
    if response.status != status:
        response.close()
        raise AssertionError(f"expected {status}, got {response.status} ({response.content_type})")
    payload = await response.json()
    assert set(payload) == {"error", "detail"}, payload
    return payload


async def read_raw_until(
    client: TestClient[Any, Any], path: str, marker: bytes, headers: dict[str, str] | None = None, timeout: float = 5
) -> bytes:
    """The bytes of a stream as sent, from the first until ``marker`` has arrived."""
    response = await client.get(path, headers=headers)
    try:
        raw = b""
        async with asyncio.timeout(timeout):
            while marker not in raw:
                chunk = await response.content.readany()
                if not chunk:
                    raise EOFError(f"the stream ended before {marker!r}: {raw!r}")
                raw += chunk
    finally:
        response.close()
    return raw


async def broadcast(session: aiohttp.ClientSession, base_url: str, body: object, expect: int = 202) -> Any:
    """``publish`` to a hub in another process (or to nginx in front of hubs): POST ``body``
    to ``{base_url}/broadcast``, check the status, return the JSON reply."""
    async with session.post(f"{base_url}/broadcast", json=body) as response:
        payload = await response.json()
        assert response.status == expect, payload
        return payload


def client_id_of(stream: EventStream) -> str:
    """The client id the hub announced in the stream's ``connected`` event."""
    return str(json.loads(stream.parser.events[0].data)["client_id"])


@contextlib.contextmanager
def stalled_subscriber(client: TestClient[Any, Any], path: str, last_event_id: str = "") -> Iterator[socket.socket]:
    """A subscriber that sends its request and never reads: a tiny receive buffer, set
    before connecting so the TCP window stays small, fills at once."""
    resume = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5)
        sock.connect((str(client.host), int(client.port)))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{resume}\r\n".encode())
        yield sock
    finally:
        sock.close()


async def publish_until_dropped(client: TestClient[Any, Any], body: object, max_messages: int = 64) -> None:
    """Publish ``body`` until the hub has dropped every subscriber (a stalled one), at most
    ``max_messages`` times: with 32 kB of data, 2 MB, far over its buffer and the socket's."""
    hub = client.server.app[HUB]
    for _ in range(max_messages):
        await publish(client, body)
        if not len(hub.registry):
            break
    await wait_until(lambda: len(hub.registry) == 0)
