"""``sse_hub.client.Subscription`` and streams that end (issue 26): the iteration stops
after the ``end`` of its last channel, with no reconnection; each channel's ``end`` is
yielded once; ``from_start`` asks for ``?from=start`` until an id was seen. First against
a scripted server (what the client does with exactly these bytes), then against the real
app (what the hub sends)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sse_hub.client import Event, Publisher, Subscription, subscribe


async def drain(events: Subscription, timeout: float = 5) -> list[Event]:
    """Every event until the iteration stops (bounded: a client that reconnected forever
    would fail here)."""
    async with asyncio.timeout(timeout):
        return [event async for event in events]


def end(channel: str) -> bytes:
    return b'event: end\ndata: {"channel":"%s"}\n\n' % channel.encode()


@dataclass
class Script:
    """A server that answers the n-th ``GET /events`` with ``bodies[n]`` and then keeps the
    stream open (as a hub that has not closed it yet); it records each request."""

    bodies: list[bytes]
    requests: list[tuple[dict[str, str], str | None]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def events(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((dict(request.query), request.headers.get("Last-Event-ID")))
        if len(self.requests) > len(self.bodies):
            return web.Response(status=503, headers={"Retry-After": "0"})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        body = self.bodies[len(self.requests) - 1]
        await response.write(b"retry: 10\n" + body.removesuffix(b"<close>"))
        if not body.endswith(b"<close>"):
            await self.release.wait()
        return response


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Script, str]]:
    script = Script([])
    app = web.Application()
    app.router.add_get("/events", script.events)
    async with TestServer(app, host="127.0.0.1") as server:
        try:
            yield script, str(server.make_url(""))
        finally:
            script.release.set()


async def test_subscription_stops_after_the_end_of_its_channel_without_waiting_for_the_close(
    scripted: tuple[Script, str],
) -> None:
    script, url = scripted
    script.bodies = [b"id: 1\ndata: token\n\nid: 2\ndata: last\n\n" + end("job")]
    async with subscribe(url, ["job"]) as events:
        received = await drain(events)
        assert events.finished and events.ended == {"job"}
    assert [(event.id, event.event, event.data) for event in received] == [
        ("1", "message", "token"),
        ("2", "message", "last"),
        (None, "end", '{"channel":"job"}'),
    ]
    assert len(script.requests) == 1


async def test_subscription_of_two_channels_goes_on_after_one_ends_and_yields_each_end_once(
    scripted: tuple[Script, str],
) -> None:
    script, url = scripted
    script.bodies = [
        b"id: 1\ndata: a-last\n\n" + end("a") + b"<close>",
        # A hub may send the end of a channel that ended before again on a resume.
        end("a") + b"id: 2\ndata: b-last\n\n" + end("b"),
    ]
    async with subscribe(url, ["a", "b"]) as events:
        received = await drain(events)
    assert [(event.event, event.data) for event in received] == [
        ("message", "a-last"),
        ("end", '{"channel":"a"}'),
        ("message", "b-last"),
        ("end", '{"channel":"b"}'),
    ]
    assert [last_event_id for _, last_event_id in script.requests] == [None, "1"]


async def test_subscription_from_start_asks_for_it_until_an_id_was_seen(scripted: tuple[Script, str]) -> None:
    script, url = scripted
    script.bodies = [b"<close>", b"id: 3\ndata: first\n\n<close>", end("job")]
    async with subscribe(url, ["job"], from_start=True) as events:
        received = await drain(events)
    assert [event.data for event in received] == ["first", '{"channel":"job"}']
    assert script.requests == [
        ({"channel": "job", "from": "start"}, None),
        ({"channel": "job", "from": "start"}, None),  # nothing seen yet: still from the start
        ({"channel": "job"}, "3"),
    ]


async def test_subscription_takes_an_end_for_another_channel_as_an_event_that_ends_nothing(
    scripted: tuple[Script, str],
) -> None:
    script, url = scripted
    script.bodies = [end("other") + b"event: end\ndata: not json\n\n" + end("job")]
    async with subscribe(url, ["job"]) as events:
        received = await drain(events)
        assert events.ended == {"other", "job"}
    assert [event.data for event in received] == ['{"channel":"other"}', "not json", '{"channel":"job"}']


# -- against the real app ---------------------------------------------------------------------


def base_url(client: TestClient[Any, Any]) -> str:
    return str(client.make_url(""))


async def publish_job(client: TestClient[Any, Any], channel: str, tokens: list[str]) -> list[str]:
    """Publish ``tokens`` to ``channel``, the last one final; returns their ids."""
    items = [{"channel": channel, "data": token} for token in tokens]
    items[-1]["final"] = True
    response = await client.post("/broadcast", json=items)
    assert response.status == 202, await response.text()
    return [receipt["id"] for receipt in await response.json()]


async def test_subscription_from_start_reads_an_ended_channel_then_stops(client: TestClient[Any, Any]) -> None:
    ids = await publish_job(client, "job-1", ["one", "two", "three"])
    async with subscribe(base_url(client), ["job-1"], from_start=True) as events:
        received = await drain(events)
        assert events.finished
    assert [(event.id, event.event, event.data) for event in received] == [
        (None, "connected", received[0].data),
        *[(event_id, "message", token) for event_id, token in zip(ids, ["one", "two", "three"], strict=True)],
        (None, "end", '{"channel":"job-1"}'),
    ]


async def test_subscription_live_on_a_channel_stops_at_its_final_message(client: TestClient[Any, Any]) -> None:
    url = base_url(client)
    async with subscribe(url, ["job-2"]) as events, Publisher(url) as publisher:
        assert (await anext(events)).event == "connected"
        await publisher.publish("before", channels=["job-2"])
        ids = await publish_job(client, "job-2", ["last"])
        received = await drain(events)
    assert [(event.id, event.data) for event in received] == [
        (received[0].id, "before"),
        (ids[0], "last"),
        (None, '{"channel":"job-2"}'),
    ]


async def test_subscription_resuming_at_the_final_message_gets_204_and_stops(client: TestClient[Any, Any]) -> None:
    [final_id] = await publish_job(client, "job-3", ["only"])
    async with subscribe(base_url(client), ["job-3"], last_event_id=final_id) as events:
        assert await drain(events) == []
        assert events.finished and events.ended == set()
