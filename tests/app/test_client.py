"""``sse_hub.client``: its spec parser (tables and a round-trip property against
``sse_hub.messages.sse``), and Publisher and Subscription against the real app, including a
reconnection after the hub closes the stream and the ``reset`` a too-old id earns."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from sse_hub.client import (
    Event,
    HubConnectionError,
    Publication,
    Publisher,
    PublishError,
    SseParser,
    SubscribeError,
    Subscription,
    subscribe,
)
from sse_hub.messages import sse
from sse_hub.web.state import HUB
from tests.support.http import HubClientFactory
from tests.support.processes import free_port
from tests.support.waiting import wait_until


def base_url(client: TestClient[Any, Any]) -> str:
    return str(client.make_url(""))


async def next_event(events: Subscription, timeout: float = 5) -> Event:
    async with asyncio.timeout(timeout):
        return await anext(events)


async def next_message(events: Subscription, timeout: float = 5) -> Event:
    """The next event that is not the hub's ``connected``."""
    while (event := await next_event(events, timeout)).event == "connected":
        pass
    return event


def parse_all(*chunks: bytes, parser: SseParser | None = None) -> list[Event]:
    parser = parser or SseParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


# -- the parser (WHATWG HTML 9.2.6) ---------------------------------------------------------

PARSE_CASES: list[tuple[str, bytes, list[Event]]] = [
    ("lf", b"data: a\n\n", [Event(None, "message", "a")]),
    ("crlf", b"data: a\r\n\r\n", [Event(None, "message", "a")]),
    ("cr", b"data: a\r\r", [Event(None, "message", "a")]),
    ("data lines joined with lf", b"data: a\r\ndata: b\rdata: c\n\n", [Event(None, "message", "a\nb\nc")]),
    ("empty data is an event", b"data:\n\n", [Event(None, "message", "")]),
    ("a field name alone has an empty value", b"data\ndata\n\n", [Event(None, "message", "\n")]),
    ("one leading space stripped", b"data:  two\n\n", [Event(None, "message", " two")]),
    ("no space after the colon", b"data:x\n\n", [Event(None, "message", "x")]),
    ("event, id", b"id: 7\nevent: tick\ndata: x\n\n", [Event("7", "tick", "x")]),
    ("comments ignored", b": ping\n\n:x\ndata: y\n\n", [Event(None, "message", "y")]),
    ("unknown fields ignored", b"foo: bar\ndata: y\n\n", [Event(None, "message", "y")]),
    ("no data, no event", b"event: tick\nid: 3\n\n", []),
    (
        "the event name resets after dispatch",
        b"event: a\ndata: 1\n\ndata: 2\n\n",
        [
            Event(None, "a", "1"),
            Event(None, "message", "2"),
        ],
    ),
    ("an id with NUL is ignored", b"id: 1\x002\ndata: x\n\n", [Event(None, "message", "x")]),
    ("a leading BOM is skipped", b"\xef\xbb\xbfdata: x\n\n", [Event(None, "message", "x")]),
    ("a second BOM is data", b"\xef\xbb\xbfdata: \xef\xbb\xbfx\n\n", [Event(None, "message", "\ufeffx")]),
    ("invalid utf-8 is replaced", b"data: \xff\n\n", [Event(None, "message", "\ufffd")]),
    ("an unfinished block is not dispatched", b"data: x\n", []),
]


@pytest.mark.parametrize(("stream", "expected"), [case[1:] for case in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_parser_reads_the_spec_cases(stream: bytes, expected: list[Event]) -> None:
    assert parse_all(stream) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("5000", 5000), ("0", 0), ("5 000", 3000), ("-1", 3000), ("1.5", 3000), ("\u0665", 3000)]
)
def test_parser_takes_retry_only_from_ascii_digits(value: str, expected: int) -> None:
    parser = SseParser(reconnection_ms=3000)
    parser.feed(f"retry: {value}\n\n".encode())
    assert parser.reconnection_ms == expected


def test_parser_treats_crlf_split_between_reads_as_one_line_end() -> None:
    # A CR ends the line at once; the LF that follows in the next read must not add an
    # empty line, which would dispatch "a" on its own.
    assert parse_all(b"data: a\r", b"\ndata: b\r\n", b"\r\n") == [Event(None, "message", "a\nb")]


def test_parser_joins_a_utf8_character_split_between_reads() -> None:
    encoded = "data: \u20ac\n\n".encode()
    assert parse_all(*(encoded[i : i + 1] for i in range(len(encoded)))) == [Event(None, "message", "\u20ac")]


def test_parser_commits_the_last_event_id_only_when_the_block_is_dispatched() -> None:
    parser = SseParser()
    parser.feed(b"id: 1\ndata: one\n\nid: 2\ndata: two\n")
    assert parser.last_event_id == "1"
    parser.feed(b"\n")
    assert parser.last_event_id == "2"


def test_parser_keeps_the_last_event_id_across_events_without_one() -> None:
    parser = SseParser(last_event_id="9")
    assert parse_all(b"event: connected\ndata: {}\n\n", parser=parser) == [Event(None, "connected", "{}")]
    assert parser.last_event_id == "9"
    parse_all(b"id: 10\n\n", parser=parser)  # an id-only block moves it without an event
    assert parser.last_event_id == "10"
    parse_all(b"id\ndata: x\n\n", parser=parser)  # an empty id clears it
    assert parser.last_event_id == ""


UNICODE = st.characters(blacklist_categories=["Cs"])  # lone surrogates cannot be UTF-8


@settings(max_examples=200, deadline=None)
@given(
    data=st.text(UNICODE),
    event=st.text(UNICODE, min_size=1).filter(lambda name: not any(char in name for char in "\r\n\x00")),
    event_id=st.from_regex(r"[0-9]{1,19}", fullmatch=True),
    splits=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_parser_reads_back_what_the_hub_encodes_however_it_is_split(
    data: str, event: str, event_id: str, splits: list[int]
) -> None:
    frame = sse.encode_event(data, event, event_id)
    cuts = sorted({0, len(frame), *(cut % (len(frame) + 1) for cut in splits)})
    chunks = [frame[start:end] for start, end in itertools.pairwise(cuts)]
    # The spec joins data lines with LF: CRLF and CR in a payload arrive as LF.
    assert parse_all(*chunks) == [Event(event_id, event, "\n".join(sse.split_lines(data)))]


# -- publishing against the real app -----------------------------------------------------------


async def test_publisher_returns_the_receipt_of_a_stored_message(client: TestClient[Any, Any]) -> None:
    async with Publisher(base_url(client)) as publisher:
        receipt = await publisher.publish({"price": 1.5}, channels=["stocks", "news"], event="tick")
        everyone = await publisher.publish("hi")
    assert receipt["channels"] == ["stocks", "news"] and receipt["id"].isdigit()
    assert everyone["channels"] == ["*"] and int(everyone["id"]) > int(receipt["id"])
    history = await client.app[HUB].broker.history(("stocks",), 0)
    assert [message.data for message in history.messages] == ['{"price":1.5}']


async def test_publisher_takes_a_single_channel_name_as_one_channel(client: TestClient[Any, Any]) -> None:
    async with Publisher(base_url(client)) as publisher:
        receipt = await publisher.publish("x", channels="news")
    assert receipt["channels"] == ["news"]


async def test_publisher_sends_a_batch_and_returns_one_receipt_per_message(client: TestClient[Any, Any]) -> None:
    async with Publisher(base_url(client)) as publisher:
        receipts = await publisher.publish_batch(
            [Publication("a", channels=["news"]), Publication([1, 2], channels=["news"], event="list", retry=100)]
        )
    assert [receipt["channels"] for receipt in receipts] == [["news"], ["news"]]
    assert int(receipts[1]["id"]) == int(receipts[0]["id"]) + 1


async def test_publisher_raises_publish_error_with_the_status_and_json_body(client: TestClient[Any, Any]) -> None:
    async with Publisher(base_url(client)) as publisher:
        with pytest.raises(PublishError) as bad_channel:
            await publisher.publish("x", channels=["no spaces"])
        with pytest.raises(PublishError) as unknown_client:
            await publisher.publish("x", client_id="c_nobody")
    assert (bad_channel.value.status, bad_channel.value.error) == (400, "bad_request")
    assert isinstance(bad_channel.value.body, dict) and "detail" in bad_channel.value.body
    assert (unknown_client.value.status, unknown_client.value.error) == (404, "unknown_client")
    assert "404" in str(unknown_client.value)


async def test_publisher_raises_a_connection_error_when_no_hub_listens() -> None:
    async with Publisher(f"http://127.0.0.1:{free_port()}", timeout=5) as publisher:
        with pytest.raises(HubConnectionError, match=r"cannot connect to the hub at .*: Connection refused"):
            await publisher.publish("x")


def test_client_refuses_a_url_that_is_not_http() -> None:
    with pytest.raises(ValueError, match="http"):
        Publisher("127.0.0.1:8080")
    with pytest.raises(ValueError, match="http"):
        subscribe("ftp://127.0.0.1", ["news"])
    with pytest.raises(ValueError, match="channel"):
        subscribe("http://127.0.0.1", [])


# -- subscribing against the real app ----------------------------------------------------------


async def test_subscription_yields_connected_then_the_published_events(client: TestClient[Any, Any]) -> None:
    url = base_url(client)
    async with Publisher(url) as publisher, subscribe(url, ["news", "other"]) as events:
        connected = await next_event(events)
        assert connected.event == "connected" and connected.id is None
        assert connected.json() == {"client_id": events.client_id, "channels": ["news", "other"]}
        first = await publisher.publish("line 1\r\nline 2\rline 3", channels=["news"], event="multi")
        second = await publisher.publish({"a": [1, None]}, channels=["other"])
        assert await next_event(events) == Event(first["id"], "multi", "line 1\nline 2\nline 3")
        assert await next_event(events) == Event(second["id"], "message", '{"a":[1,null]}')
        assert events.last_event_id == second["id"]


async def test_subscription_client_id_lets_a_publisher_skip_that_client(client: TestClient[Any, Any]) -> None:
    url = base_url(client)
    async with Publisher(url) as publisher, subscribe(url, ["news"]) as events:
        await next_event(events)
        await publisher.publish("not for me", channels=["news"], exclude_client_id=events.client_id)
        direct = await publisher.publish("only for me", client_id=events.client_id)
        assert direct == {"id": direct["id"], "channels": [], "client_id": events.client_id}
        assert (await next_event(events)).data == "only for me"


async def test_subscription_reconnects_after_the_hub_closes_the_stream_with_no_gap_or_duplicate(
    hub_client: HubClientFactory,
) -> None:
    client = await hub_client(sse={"retry_ms": 20})
    hub, url = client.app[HUB], base_url(client)
    async with Publisher(url) as publisher, subscribe(url, ["news"]) as events:
        await next_event(events)
        one = await publisher.publish("one", channels=["news"])
        assert (await next_event(events)).id == one["id"]
        first_client = events.client_id
        assert first_client is not None
        response = await client.delete(f"/clients/{first_client}")
        assert response.status == 200
        await wait_until(lambda: hub.registry.get(first_client) is None)
        # The subscription reads nothing until asked, so "two" is published while it is
        # away: only a reconnection that sends Last-Event-ID: <one> brings it back.
        two = await publisher.publish("two", channels=["news"])
        reconnected = await next_event(events)
        assert reconnected.event == "connected" and events.client_id != first_client
        three = await publisher.publish("three", channels=["news"])
        received = [await next_event(events), await next_event(events)]
    assert [(event.id, event.data) for event in received] == [(two["id"], "two"), (three["id"], "three")]


async def test_subscription_surfaces_reset_when_its_id_is_older_than_the_history(
    hub_client: HubClientFactory,
) -> None:
    client = await hub_client(history={"size": 2})
    url = base_url(client)
    async with Publisher(url) as publisher:
        receipts = [await publisher.publish(f"m{n}", channels=["news"]) for n in range(4)]
    async with subscribe(url, ["news"], last_event_id=receipts[0]["id"]) as events:
        assert (await next_event(events)).event == "connected"
        reset = await next_event(events)
        assert (reset.id, reset.event) == (None, "reset")
        assert reset.json() == {"reason": "history_expired", "last_event_id": receipts[0]["id"]}
        assert [(await next_event(events)).data for _ in range(2)] == ["m2", "m3"]


async def test_subscription_raises_subscribe_error_when_the_hub_refuses_the_channel(
    client: TestClient[Any, Any],
) -> None:
    async with subscribe(base_url(client), ["no spaces"]) as events:
        with pytest.raises(SubscribeError) as refused:
            await next_event(events)
    assert (refused.value.status, refused.value.error) == (400, "invalid_channel")


# -- reconnection rules against a scripted server ----------------------------------------------


@pytest.fixture
async def scripted_server() -> AsyncIterator[tuple[list[str | None], web.Application]]:
    """A tiny server whose ``/events`` streams ``retry: 10`` and one event, then ends the
    stream; the second request gets a 503. It records every request's Last-Event-ID."""
    seen: list[str | None] = []

    async def events(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Last-Event-ID"))
        if request.query.get("channel") == "done":
            return web.Response(status=204)
        if len(seen) == 2:
            return web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "0"})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(f"retry: 10\nid: {len(seen)}\ndata: connection {len(seen)}\n\n".encode())
        return response

    app = web.Application()
    app.router.add_get("/events", events)
    yield seen, app


async def test_subscription_honours_retry_survives_a_busy_hub_and_resends_the_last_id_it_saw(
    scripted_server: tuple[list[str | None], web.Application],
) -> None:
    seen, app = scripted_server
    async with TestServer(app, host="127.0.0.1") as server:
        # Without the server's "retry: 10" the client would wait a minute between attempts.
        async with subscribe(str(server.make_url("")), ["news"], last_event_id="0", retry_ms=60_000) as events:
            received = [await next_event(events), await next_event(events)]
            assert events.reconnection_ms == 10
    assert [(event.id, event.data) for event in received] == [("1", "connection 1"), ("3", "connection 3")]
    assert seen[:3] == ["0", "1", "1"]


async def test_subscription_stops_when_the_server_answers_204(
    scripted_server: tuple[list[str | None], web.Application],
) -> None:
    _, app = scripted_server
    async with TestServer(app, host="127.0.0.1") as server:
        async with subscribe(str(server.make_url("")), ["done"], retry_ms=10) as events:
            with pytest.raises(StopAsyncIteration):
                await next_event(events)


async def test_subscription_replaces_a_connection_that_stays_silent_past_the_read_timeout() -> None:
    release = asyncio.Event()
    connections = 0

    async def silent_then_talkative(request: web.Request) -> web.StreamResponse:
        nonlocal connections
        connections += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if connections == 1:
            await release.wait()  # a hub that stopped talking without closing
            return response
        await response.write(b"data: hello\n\n")
        return response

    app = web.Application()
    app.router.add_get("/events", silent_then_talkative)
    async with TestServer(app, host="127.0.0.1") as server:
        try:
            async with subscribe(str(server.make_url("")), ["news"], retry_ms=10, read_timeout=0.2) as events:
                assert (await next_event(events)).data == "hello"
        finally:
            release.set()
    assert connections == 2
