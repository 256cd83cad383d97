"""Hostile clients: connection floods, half-sent requests, oversized headers and URLs,
bodies over the limits. Each test attacks a limit and checks that the hub refuses with a
4xx/503 (JSON where the hub answers), never a 5xx, and keeps serving everyone else.

Raw sockets are used where a well-behaved client library would refuse to send the attack.
Slow clients and log forging, on a real process: tests/e2e/test_hostile.py.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from sse_hub.web.state import HUB
from tests.support.http import HubClientFactory, open_stream, publish
from tests.support.processes import HubProcess
from tests.support.raw_http import RawReply, get_request, raw_request, status_of
from tests.support.waiting import wait_until

HubFactory = Callable[..., HubProcess]
TIMEOUT = 5


async def assert_still_serving(client: TestClient[Any, Any]) -> None:
    """The hub answers /healthz and delivers a published message to a new stream."""
    assert (await client.get("/healthz")).status == 200
    async with open_stream(client, "/events/still-serving") as stream:
        receipt = await publish(client, {"channel": "still-serving", "data": "ok"})
        event = await stream.next_message()
        assert (event.id, event.data) == (receipt["id"], "ok")


async def assert_json_error(response: aiohttp.ClientResponse | RawReply, expected: int) -> None:
    """``expected`` with a JSON error body; any other status fails at once (and a stream
    is never read to its end)."""
    if response.status != expected:
        response.close()
        raise AssertionError(f"expected {expected}, got {response.status}")
    payload = await response.json()
    assert set(payload) == {"error", "detail"}, payload


# -- connection caps --------------------------------------------------------------------


async def test_a_flood_of_streams_over_max_connections_gets_503_with_retry_after(
    hub_client: HubClientFactory,
) -> None:
    client = await hub_client(limits={"max_connections": 3})
    async with contextlib.AsyncExitStack() as held:
        for n in range(3):
            await held.enter_async_context(open_stream(client, f"/events/flood-{n}"))
        for _ in range(20):
            response = await client.get("/events/flood-x")
            await assert_json_error(response, 503)
            assert int(response.headers["Retry-After"]) >= 1
        assert len(client.server.app[HUB].registry) == 3
    await wait_until(lambda: len(client.server.app[HUB].registry) == 0)
    await assert_still_serving(client)


async def test_a_flood_from_one_address_over_max_connections_per_ip_gets_429(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_connections_per_ip": 2})
    async with open_stream(client, "/events/a"), open_stream(client, "/events/b"):
        for _ in range(20):
            response = await client.get("/events/c")
            await assert_json_error(response, 429)
        assert len(client.server.app[HUB].registry) == 2


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("channel=a&channel=b&channel=c", 200),
        ("channel=a&channel=b&channel=c&channel=d", 400),
        ("channels=a,b,c,d", 400),
        ("channel=a&channel=a&channel=b&channel=b&channel=c", 200),  # duplicates count once
        ("&".join(f"channel=c{n}" for n in range(500)), 400),
    ],
    ids=["at-limit", "over-limit", "comma-list-over-limit", "duplicates-count-once", "500-channels"],
)
async def test_max_channels_per_connection_bounds_one_stream(
    hub_client: HubClientFactory, query: str, expected: int
) -> None:
    client = await hub_client(limits={"max_channels_per_connection": 3})
    response = await client.get(f"/events?{query}")
    try:
        if expected == 400:
            await assert_json_error(response, 400)
        else:
            assert response.status == 200
    finally:
        response.close()
    await wait_until(lambda: len(client.server.app[HUB].registry) == 0)


# -- bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/broadcast", "/tickets"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_max_message_bytes_is_413(hub_client: HubClientFactory, path: str, chunked: bool) -> None:
    client = await hub_client(limits={"max_message_bytes": 1024})
    body = json.dumps({"channel": "big", "channels": ["big"], "data": "x" * 100_000}).encode()

    async def pieces() -> Any:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = await client.post(path, data=pieces() if chunked else body, headers={"Content-Type": "application/json"})
    await assert_json_error(response, 413)
    assert client.server.app[HUB].counters.messages_published == 0
    await assert_still_serving(client)


async def test_a_content_length_far_over_the_limit_is_413_before_any_byte_is_read(
    hub_client: HubClientFactory,
) -> None:
    client = await hub_client(limits={"max_message_bytes": 1024})
    reply = await raw_request(
        client.port,
        b"POST /broadcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 999999999999\r\nConnection: close\r\n\r\n",
    )
    try:
        await assert_json_error(reply, 413)
    finally:
        reply.close()


async def test_a_batch_over_max_batch_is_400_and_publishes_nothing(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_batch": 10})
    response = await client.post("/broadcast", json=[{"channel": "batch", "data": n} for n in range(11)])
    await assert_json_error(response, 400)
    assert client.server.app[HUB].counters.messages_published == 0
    assert len(await publish(client, [{"channel": "batch", "data": n} for n in range(10)])) == 10


# -- oversized requests -----------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        get_request(b"/events/" + b"a" * 100_000),
        get_request(b"/events/a?x=" + b"b" * 100_000),
        get_request(b"/events/a", b"X-Big: " + b"c" * 100_000),
        get_request(b"/events/a", b"Cookie: sse_hub_token=" + b"d" * 100_000),
        get_request(b"/events/a", b"Last-Event-ID: " + b"9" * 100_000),
        get_request(b"/events/a", *(b"X-H%d: v" % n for n in range(1000))),
        get_request(b"/events/a", b"X-Folded: a\r\n b"),
        b"POST /broadcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}",
    ],
    ids=[
        "100KB-path",
        "100KB-query",
        "100KB-header",
        "100KB-cookie",
        "100KB-last-event-id",
        "1000-headers",
        "obsolete-line-folding",
        "content-length-and-chunked",
    ],
)
async def test_oversized_or_malformed_requests_are_4xx_not_5xx(
    hub_client: HubClientFactory, request_bytes: bytes
) -> None:
    client = await hub_client()
    status = await status_of(client.port, request_bytes)
    assert 400 <= status < 500, status
    assert len(client.server.app[HUB].registry) == 0
    await assert_still_serving(client)


async def test_a_header_just_under_the_parser_limit_is_served(hub_client: HubClientFactory) -> None:
    client = await hub_client()
    reply = await raw_request(client.port, get_request(b"/events/a", b"X-Padding: " + b"p" * 8000))
    try:
        assert reply.is_stream, reply.status
        assert (await reply.next_event()).event == "connected"
    finally:
        reply.close()


async def test_many_query_parameters_are_a_stream_or_4xx(hub_client: HubClientFactory) -> None:
    client = await hub_client()
    repeated = "&".join(["channel=same"] * 600)  # just under the 8 KB request line
    reply = await raw_request(client.port, get_request(f"/events?{repeated}".encode()))
    try:
        assert reply.is_stream, reply.status
        connected = await reply.next_event()
        assert json.loads(connected.data)["channels"] == ["same"]
    finally:
        reply.close()
    noise = "&".join(f"p{n}={n}" for n in range(900))
    assert await status_of(client.port, get_request(f"/events/a?{noise}".encode()[:8000])) == 200
    distinct = "&".join(f"channel=c{n}" for n in range(600))
    assert await status_of(client.port, get_request(f"/events?{distinct}".encode())) == 400
