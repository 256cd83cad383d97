"""``GET /events/{channel}``, ``GET /events?channel=...`` and the configured aliases: what a
subscriber sees on the wire, what is refused, and how an admin ends a stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from sse_hub.messages.message import Draft
from sse_hub.web.state import HUB
from tests.support.http import HubClientFactory, get_stats, open_stream, publish, read_raw_until
from tests.support.sse_client import EventStream
from tests.support.waiting import wait_until


async def raw_exchange(client: TestClient[Any, Any], request: bytes, timeout: float = 5) -> bytes:
    """Send raw bytes to the test server and read until it closes the connection."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


async def read_until_comment(stream: EventStream, timeout: float = 5) -> str:
    """Read raw chunks until the parser has seen a comment line; returns the first one."""
    async with asyncio.timeout(timeout):
        while not stream.parser.comments:
            chunk = await stream.response.content.readany()
            if not chunk:
                raise EOFError("stream ended")
            stream.parser.feed(chunk.decode())
    return stream.parser.comments[0]


# -- subscribing ------------------------------------------------------------------------


async def test_a_path_stream_receives_its_channel(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/news") as stream:
        receipt = await publish(client, {"channel": "news", "event": "headline", "data": {"title": "hi"}})
        event = await stream.next()
    assert (event.id, event.event, event.json()) == (receipt["id"], "headline", {"title": "hi"})


async def test_a_query_stream_receives_every_named_channel(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events?channel=a&channel=b") as stream:
        connected = json.loads(stream.parser.events[0].data)
        first = await publish(client, {"channel": "a", "data": "for a"})
        second = await publish(client, {"channel": "b", "data": "for b"})
        events = await stream.take(2)
    assert connected["channels"] == ["a", "b"]
    assert [(event.id, event.data) for event in events] == [(first["id"], "for a"), (second["id"], "for b")]


async def test_a_repeated_channel_is_subscribed_once(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events?channel=a&channel=a") as stream:
        assert json.loads(stream.parser.events[0].data)["channels"] == ["a"]


async def test_a_message_on_two_subscribed_channels_arrives_once(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events?channel=a&channel=b") as stream:
        both = await publish(client, {"channels": ["a", "b"], "data": "both"})
        marker = await publish(client, {"channel": "b", "data": "marker"})
        events = await stream.take(2)
    assert [event.id for event in events] == [both["id"], marker["id"]]


async def test_a_stream_skips_messages_for_other_channels(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/a") as stream:
        await publish(client, {"channel": "b", "data": "not for a"})
        await publish(client, {"channels": ["b", "c"], "data": "not for a either"})
        mine = await publish(client, {"channel": "a", "data": "for a"})
        event = await stream.next()
    assert (event.id, event.data) == (mine["id"], "for a")


async def test_configured_aliases_stream_their_bound_channels(hub_client: HubClientFactory) -> None:
    client = await hub_client(
        streams=[
            {"path": "/api/stocks", "channels": ["stocks"]},
            {"path": "/api/markets", "channels": ["stocks", "bonds"]},
        ]
    )
    async with open_stream(client, "/api/stocks") as stocks, open_stream(client, "/api/markets") as markets:
        assert json.loads(stocks.parser.events[0].data)["channels"] == ["stocks"]
        assert json.loads(markets.parser.events[0].data)["channels"] == ["stocks", "bonds"]
        bond = await publish(client, {"channel": "bonds", "data": "bond"})
        stock = await publish(client, {"channel": "stocks", "data": "stock"})
        assert (await stocks.next()).id == stock["id"]
        assert [event.id for event in await markets.take(2)] == [bond["id"], stock["id"]]


async def test_the_default_alias_streams_the_events_channel(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/api/events") as stream:
        receipt = await publish(client, {"channel": "events", "data": "classic"})
        assert (await stream.next()).id == receipt["id"]


async def test_an_alias_ignores_channels_in_the_query(hub_client: HubClientFactory) -> None:
    client = await hub_client(streams=[{"path": "/api/stocks", "channels": ["stocks"]}])
    async with open_stream(client, "/api/stocks?channel=secret") as stream:
        assert json.loads(stream.parser.events[0].data)["channels"] == ["stocks"]


# -- the wire ---------------------------------------------------------------------------


async def test_a_stream_has_the_sse_headers(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/news") as stream:
        headers = stream.response.headers
        assert stream.response.status == 200
        assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert headers["Cache-Control"] == "no-cache, no-transform"
        assert headers["X-Accel-Buffering"] == "no"
        assert "Content-Length" not in headers
        assert "Content-Encoding" not in headers


async def test_a_stream_starts_with_retry_and_a_connected_event_without_id(hub_client: HubClientFactory) -> None:
    client = await hub_client(sse={"retry_ms": 1234})
    async with open_stream(client, "/events?channel=a&channel=b") as stream:
        connected = stream.parser.events[0]
        assert stream.parser.retries == [1234]
        assert connected.event == "connected" and connected.id is None
        assert stream.parser.last_event_id == ""
        body = connected.json()
        assert isinstance(body, dict) and set(body) == {"client_id", "channels"}
        assert body["channels"] == ["a", "b"]
        clients = (await get_stats(client))["clients"]
        assert [entry["id"] for entry in clients] == [body["client_id"]]


async def test_the_preamble_is_the_first_bytes_of_the_stream(client: TestClient[Any, Any]) -> None:
    raw = await read_raw_until(client, "/events/news", b"\n\n")
    # Comments may come first; then retry, then the connected event.
    lines = [line for line in raw.decode().split("\n") if not line.startswith(":")]
    assert lines[0] == "retry: 3000"
    assert lines[1] == "event: connected"
    assert lines[2].startswith('data: {"client_id":"')


async def test_every_stream_gets_its_own_client_id(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/a") as first, open_stream(client, "/events/a") as second:
        ids = {json.loads(stream.parser.events[0].data)["client_id"] for stream in (first, second)}
    assert len(ids) == 2


async def test_an_idle_stream_gets_heartbeat_comments(hub_client: HubClientFactory) -> None:
    client = await hub_client(sse={"heartbeat_seconds": 0.3})
    async with open_stream(client, "/events/news") as stream:
        comment = await read_until_comment(stream, timeout=3)
        assert comment
        receipt = await publish(client, {"channel": "news", "data": "after a ping"})
        event = await stream.next()
    assert (event.id, event.data) == (receipt["id"], "after a ping")


async def test_a_message_frame_has_id_event_and_data_lines(client: TestClient[Any, Any]) -> None:
    response = await client.get("/events/news")
    try:
        receipt = await publish(client, {"channel": "news", "event": "tick", "data": "x"})
        frame = f"id: {receipt['id']}\nevent: tick\ndata: x\n\n".encode()
        raw = b""
        while frame not in raw:
            raw += await response.content.readany()
    finally:
        response.close()


# -- refused ----------------------------------------------------------------------------

BAD_STREAM_PATHS = {
    "no channel": "/events",
    "an empty channel parameter": "/events?channel=",
    "an empty channels list": "/events?channels=,",
    "a space": "/events/a%20b",
    "a space in the query": "/events?channel=a&channel=a%20b",
    "129 characters": "/events/" + "x" * 129,
    "the global channel": "/events/*",
    "the global channel in the query": "/events?channel=*",
    "a slash": "/events?channel=a/b",
    "a non-ASCII letter": "/events/caf%C3%A9",
    "a newline": "/events?channel=a%0Ab",
    "a NUL": "/events?channel=a%00",
}


@pytest.mark.parametrize("path", BAD_STREAM_PATHS.values(), ids=BAD_STREAM_PATHS.keys())
async def test_a_bad_channel_is_a_400_json_error_never_a_stream(client: TestClient[Any, Any], path: str) -> None:
    response = await client.get(path)
    assert response.status == 400
    assert response.content_type == "application/json"
    assert set(await response.json()) == {"error", "detail"}
    assert (await get_stats(client))["total_clients"] == 0


async def test_a_channel_of_128_characters_is_accepted(client: TestClient[Any, Any]) -> None:
    name = "x" * 128
    async with open_stream(client, f"/events/{name}") as stream:
        receipt = await publish(client, {"channel": name, "data": 1})
        assert (await stream.next()).id == receipt["id"]


async def test_every_allowed_character_is_accepted_in_a_channel_name(client: TestClient[Any, Any]) -> None:
    name = "Az09_.:@-"
    async with open_stream(client, f"/events/{name}") as stream:
        receipt = await publish(client, {"channel": name, "data": 1})
        assert (await stream.next()).id == receipt["id"]


async def test_too_many_channels_is_400(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_channels_per_connection": 2})
    async with open_stream(client, "/events?channel=a&channel=b"):
        pass
    response = await client.get("/events?channel=a&channel=b&channel=c")
    assert response.status == 400
    assert set(await response.json()) == {"error", "detail"}


async def test_an_http_1_0_request_is_505_with_a_json_body(client: TestClient[Any, Any]) -> None:
    raw = await raw_exchange(client, b"GET /events/news HTTP/1.0\r\nHost: localhost\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    assert status_line.split(" ")[1] == "505"
    assert headers["content-type"].startswith("application/json")
    assert set(json.loads(body)) == {"error", "detail"}
    assert (await get_stats(client))["total_clients"] == 0


async def test_an_unknown_path_is_404_with_a_json_body(client: TestClient[Any, Any]) -> None:
    response = await client.get("/nowhere")
    assert response.status == 404
    assert set(await response.json()) == {"error", "detail"}


async def test_a_post_to_a_stream_path_is_405_with_a_json_body(client: TestClient[Any, Any]) -> None:
    response = await client.post("/events/news", json={})
    assert response.status == 405
    assert set(await response.json()) == {"error", "detail"}


async def test_a_head_request_gets_the_stream_headers_and_no_body(client: TestClient[Any, Any]) -> None:
    raw = await raw_exchange(client, b"HEAD /events/news HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw
    assert b"text/event-stream" in head
    assert body == b""
    assert (await get_stats(client))["total_clients"] == 0


# -- ending a stream --------------------------------------------------------------------


async def test_deleting_a_client_ends_its_stream_cleanly_and_others_keep_receiving(
    client: TestClient[Any, Any],
) -> None:
    async with open_stream(client, "/events/news") as doomed, open_stream(client, "/events/news") as survivor:
        doomed_id = json.loads(doomed.parser.events[0].data)["client_id"]
        before = await publish(client, {"channel": "news", "data": "before"})
        assert (await doomed.next()).id == before["id"]
        response = await client.delete(f"/clients/{doomed_id}")
        assert response.status == 200, await response.text()
        # read_until_closed raises ClientPayloadError unless the chunked body ends properly.
        await doomed.read_until_closed()
        assert doomed.response.content.at_eof()
        after = await publish(client, {"channel": "news", "data": "after"})
        assert [event.id for event in await survivor.take(2)] == [before["id"], after["id"]]
    await wait_until_gone(client, doomed_id)


async def wait_until_gone(client: TestClient[Any, Any], client_id: str) -> None:
    hub = client.server.app[HUB]
    await wait_until(lambda: hub.registry.get(client_id) is None)
    assert client_id not in [entry["id"] for entry in (await get_stats(client))["clients"]]


async def test_a_deleted_client_is_gone_from_stats_and_from_direct_messages(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/news") as doomed:
        doomed_id = json.loads(doomed.parser.events[0].data)["client_id"]
        assert (await client.delete(f"/clients/{doomed_id}")).status == 200
        await doomed.read_until_closed()
    await wait_until_gone(client, doomed_id)
    response = await client.post("/broadcast", json={"client_id": doomed_id, "data": 1})
    assert response.status == 404


async def test_a_stream_ended_while_messages_arrive_leaves_its_connection_usable(
    client: TestClient[Any, Any],
) -> None:
    # The kick and a publish in the same loop iteration: nothing may be written after the
    # chunked terminator, or the next response on this keep-alive connection is garbage.
    hub = client.server.app[HUB]
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(str(client.make_url("/")), connector=connector) as session:
        async with open_stream(session, "/events/news") as doomed:
            doomed_id = json.loads(doomed.parser.events[0].data)["client_id"]
            await hub.kick(doomed_id)  # local: returns without suspending, same iteration
            await hub.publish([Draft(event="message", data="late", channels=("news",))])
            await doomed.read_until_closed()
            assert doomed.parser.events[1:] == []
        for _ in range(3):
            async with session.get("/healthz") as response:
                assert response.status == 200
                assert await response.json() == {"status": "ok"}


async def test_deleting_an_unknown_client_is_404(client: TestClient[Any, Any]) -> None:
    response = await client.delete("/clients/c_nobody")
    assert response.status == 404
    assert set(await response.json()) == {"error", "detail"}
