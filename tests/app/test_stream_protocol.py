"""A live stream's connection handed from aiohttp to ``StreamProtocol``: aiohttp lets go of
it entirely (it is the point: docs/performance.md, S3), and the stream still behaves as
one, from its first byte to its end, whoever ends it."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiohttp.web_protocol import RequestHandler

from sse_hub.web.state import CONNECTIONS, HUB
from sse_hub.web.stream_protocol import CHUNKED_END
from tests.support.http import client_id_of, open_stream, publish
from tests.support.waiting import wait_until


def aiohttp_connections(client: TestClient[Any, Any]) -> int:
    server = client.server.runner.server
    assert server is not None
    assert server.handler_cancellation, "as in server.py: a lost client cancels its request"
    return len(server.connections)


def request_handlers_alive() -> int:
    gc.collect()
    return sum(isinstance(thing, RequestHandler) for thing in gc.get_objects())


async def raw_stream(
    client: TestClient[Any, Any], path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A stream over a plain socket: its reader and writer, and its head."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readuntil(b"event: connected")
    return reader, writer, head


async def test_a_live_stream_is_held_by_aiohttp_no_longer_and_still_delivers(client: TestClient[Any, Any]) -> None:
    handlers_before = request_handlers_alive()
    async with open_stream(client, "/events/news") as stream:
        await wait_until(lambda: aiohttp_connections(client) == 0)
        # Its request handler (parser, request, response, tasks) is gone, not just unlisted.
        assert request_handlers_alive() == handlers_before
        receipt = await publish(client, {"channel": "news", "data": "after the handover"})
        event = await stream.next()
    assert (event.id, event.data) == (receipt["id"], "after the handover")


async def test_a_resumed_stream_is_handed_over_once_its_replay_is_fed(client: TestClient[Any, Any]) -> None:
    first = await publish(client, {"channel": "news", "data": "one"})
    second = await publish(client, {"channel": "news", "data": "two"})
    async with open_stream(client, "/events/news", headers={"Last-Event-ID": first["id"]}) as stream:
        assert (await stream.next()).id == second["id"]
        await wait_until(lambda: aiohttp_connections(client) == 0)
        third = await publish(client, {"channel": "news", "data": "three"})
        assert (await stream.next()).id == third["id"]


async def test_a_kicked_stream_ends_with_the_chunked_terminator_then_its_connection(
    client: TestClient[Any, Any],
) -> None:
    hub = client.server.app[HUB]
    reader, writer, head = await raw_stream(client, "/events/news")
    try:
        assert b"\r\nConnection: close\r\n" in head, "the response says the connection ends with it"
        await wait_until(lambda: aiohttp_connections(client) == 0)
        (subscriber,) = hub.registry.all()
        await hub.kick(subscriber.client_id)
        async with asyncio.timeout(5):
            rest = await reader.read()  # until the hub closes the connection
        assert rest.endswith(b"\r\n" + CHUNKED_END), rest
        await wait_until(lambda: len(hub.registry) == 0)
        assert hub.counters.disconnects == {"kicked": 1}
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_client_that_leaves_releases_its_stream_and_its_connection(client: TestClient[Any, Any]) -> None:
    hub = client.server.app[HUB]
    ours = client.server.app[CONNECTIONS]
    open_before = ours.streams
    _, writer, _ = await raw_stream(client, "/events/news")
    await wait_until(lambda: aiohttp_connections(client) == 0)
    assert ours.streams == open_before + 1
    writer.write(b"bytes after a stream request are ignored")
    writer.close()
    await writer.wait_closed()
    await wait_until(lambda: len(hub.registry) == 0 and ours.streams == open_before)
    assert hub.counters.disconnects == {"disconnected": 1}
    await publish(client, {"channel": "news", "data": "nobody listens"})


async def test_the_access_log_line_is_written_when_the_stream_goes_live(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    async with open_stream(client, "/events/news?x=1") as stream:
        await wait_until(lambda: aiohttp_connections(client) == 0)
        # The test server's access logger is aiohttp's (server.py's formats it otherwise).
        lines = [record.getMessage() for record in caplog.records if record.name == "aiohttp.access"]
        assert [line for line in lines if '"GET /events/news?x=1 HTTP/1.1" 200 ' in line], lines
        assert client_id_of(stream) in {subscriber.client_id for subscriber in client.server.app[HUB].registry}
