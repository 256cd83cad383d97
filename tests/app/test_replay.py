"""Replay: ``Last-Event-ID`` (header) and ``?last_event_id=`` / ``?lastEventId=`` (query)
give exactly the missed messages, in order, then live ones, with no gap and no duplicate;
``reset`` tells a client that history cannot make it whole."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sse_hub.broker.memory import MemoryBroker
from sse_hub.messages.contract import History
from sse_hub.web.app import create_app
from sse_hub.web.state import HUB
from tests.support.http import HubClientFactory, open_stream, publish
from tests.support.settings import make_settings
from tests.support.sse_client import Event, EventStream
from tests.support.waiting import wait_until


@contextlib.asynccontextmanager
async def resume(client: TestClient[Any, Any], path: str, last_event_id: str, how: str) -> AsyncIterator[EventStream]:
    """Open ``path`` asking for replay after ``last_event_id`` in one of the three ways."""
    if how == "header":
        async with open_stream(client, path, headers={"Last-Event-ID": last_event_id}) as stream:
            yield stream
    else:
        separator = "&" if "?" in path else "?"
        async with open_stream(client, f"{path}{separator}{how}={last_event_id}") as stream:
            yield stream


async def publish_ids(client: TestClient[Any, Any], bodies: list[dict[str, Any]]) -> list[str]:
    return [(await publish(client, body))["id"] for body in bodies]


def reset_data(event: Event) -> Any:
    assert event.event == "reset", event
    assert event.id is None, "a reset carries no id line"
    return event.json()


HOW = ["header", "last_event_id", "lastEventId"]


@pytest.mark.parametrize("how", HOW)
async def test_resuming_replays_exactly_the_missed_messages_in_order(client: TestClient[Any, Any], how: str) -> None:
    ids = await publish_ids(
        client,
        [
            {"channel": "a", "data": "a1"},
            {"channel": "a", "data": "a2"},
            {"channel": "b", "data": "b1"},
            {"channel": "a", "data": "a3"},
            {"data": "global"},
            {"channels": ["b", "a"], "data": "a4 and b2"},
            {"channel": "c", "data": "c1"},
            {"channel": "a", "event": "named", "data": "a5"},
        ],
    )
    async with resume(client, "/events/a", ids[1], how) as stream:
        replayed = await stream.take(4)
        live = await publish(client, {"channel": "a", "data": "live"})
        after = await stream.next()
    assert [(event.id, event.event, event.data) for event in replayed] == [
        (ids[3], "message", "a3"),
        (ids[4], "message", "global"),
        (ids[5], "message", "a4 and b2"),
        (ids[7], "named", "a5"),
    ]
    assert (after.id, after.data) == (live["id"], "live")


async def test_the_header_wins_over_the_query(client: TestClient[Any, Any]) -> None:
    ids = await publish_ids(client, [{"channel": "a", "data": n} for n in range(3)])
    async with open_stream(client, f"/events/a?last_event_id={ids[0]}", headers={"Last-Event-ID": ids[1]}) as stream:
        assert (await stream.next()).id == ids[2]


async def test_resuming_from_the_latest_id_replays_nothing(client: TestClient[Any, Any]) -> None:
    ids = await publish_ids(client, [{"channel": "a", "data": n} for n in range(3)])
    async with resume(client, "/events/a", ids[-1], "header") as stream:
        live = await publish(client, {"channel": "a", "data": "live"})
        assert (await stream.next()).id == live["id"]


async def test_resuming_on_several_channels_replays_their_messages_merged_in_id_order(
    client: TestClient[Any, Any],
) -> None:
    ids = await publish_ids(
        client,
        [
            {"channel": "a", "data": "a1"},
            {"channel": "b", "data": "b1"},
            {"channel": "a", "data": "a2"},
            {"channel": "c", "data": "c1"},
            {"channel": "b", "data": "b2"},
        ],
    )
    async with resume(client, "/events?channel=b&channel=a", "0", "header") as stream:
        replayed = await stream.take(4)
    assert [event.id for event in replayed] == [ids[0], ids[1], ids[2], ids[4]]


async def test_a_message_on_two_subscribed_channels_replays_once(client: TestClient[Any, Any]) -> None:
    both, marker = await publish_ids(client, [{"channels": ["a", "b"], "data": "both"}, {"channel": "b", "data": "m"}])
    async with resume(client, "/events?channel=a&channel=b", "0", "header") as stream:
        assert [event.id for event in await stream.take(2)] == [both, marker]


class SlowHistoryBroker(MemoryBroker):
    """The memory broker, but reading history waits until more messages were published
    before and after the read, as a Redis round trip lets happen: the messages published
    before the read are both replayed and held live, those after it are held only."""

    def __init__(self, history_size: int, published: list[int]) -> None:
        super().__init__(history_size)
        self._published = published
        self._slowed = False

    async def history(self, channels: Iterable[str], after_id: int, limit: int | None = None) -> History:
        if self._slowed:  # the later pages of the replay read at once: publishing may be over
            return await super().history(channels, after_id, limit)
        self._slowed = True
        await self._more_published(5)
        history = await super().history(channels, after_id, limit)
        await self._more_published(5)
        return history

    async def _more_published(self, count: int) -> None:
        target = len(self._published) + count
        await wait_until(lambda: len(self._published) >= target)


async def resume_while_publishing(client: TestClient[Any, Any], published: list[int]) -> tuple[list[int], list[int]]:
    """Read 20 messages, reconnect with the last id while a task keeps publishing; return
    the ids each connection received, once the second one has seen the last message."""
    reconnected = asyncio.Event()
    after_reconnect, max_before = 50, 2000

    async def publisher() -> None:
        # Keep publishing while the subscriber reconnects, then a few more: the second
        # connection's registration, history read and go-live all happen mid-stream.
        while not reconnected.is_set() and len(published) < max_before:
            published.append(int((await publish(client, {"channel": "a", "data": len(published)}))["id"]))
        for _ in range(after_reconnect):
            published.append(int((await publish(client, {"channel": "a", "data": len(published)}))["id"]))

    first: list[int] = []
    second: list[int] = []
    task = asyncio.create_task(publisher())
    try:
        async with open_stream(client, "/events/a") as stream:
            while len(first) < 20:
                first.append(int((await stream.next()).id or 0))
        async with resume(client, "/events/a", str(first[-1]), "header") as stream:
            reconnected.set()
            assert not task.done(), "the publisher finished before the reconnection; publish more"
            await task
            while not second or second[-1] < published[-1]:
                second.append(int((await stream.next()).id or 0))
    finally:
        task.cancel()
    return first, second


async def test_replay_has_no_gap_and_no_duplicate_under_concurrent_publishing(client: TestClient[Any, Any]) -> None:
    published: list[int] = []
    first, second = await resume_while_publishing(client, published)
    assert len(second) == len(set(second)), "a message arrived twice on the second connection"
    assert first + second == published == list(range(published[0], published[0] + len(published)))


async def test_replay_has_no_gap_and_no_duplicate_when_reading_history_takes_a_while(aiohttp_client: Any) -> None:
    published: list[int] = []
    app = create_app(make_settings())
    app[HUB].broker = SlowHistoryBroker(1000, published)
    client = await aiohttp_client(app)
    first, second = await resume_while_publishing(client, published)
    assert len(second) == len(set(second)), "a message arrived twice on the second connection"
    assert first + second == published == list(range(published[0], published[0] + len(published)))


@pytest.mark.parametrize("how", HOW)
async def test_reset_history_expired_precedes_the_retained_messages(hub_client: HubClientFactory, how: str) -> None:
    client = await hub_client(history={"size": 3})
    ids = await publish_ids(client, [{"channel": "a", "data": n} for n in range(10)])
    async with resume(client, "/events/a", ids[1], how) as stream:
        reset = await stream.next()
        replayed = await stream.take(3)
        live = await publish(client, {"channel": "a", "data": "live"})
        after = await stream.next()
    assert reset_data(reset) == {"reason": "history_expired", "last_event_id": ids[1]}
    assert [event.id for event in replayed] == ids[7:]
    assert after.id == live["id"]


async def test_no_reset_when_every_newer_message_is_still_retained(hub_client: HubClientFactory) -> None:
    client = await hub_client(history={"size": 3})
    ids = await publish_ids(client, [{"channel": "a", "data": n} for n in range(10)])
    async with resume(client, "/events/a", ids[6], "header") as stream:
        assert [(event.event, event.id) for event in await stream.take(3)] == [("message", i) for i in ids[7:]]


async def test_an_evicted_message_of_another_channel_triggers_no_reset(hub_client: HubClientFactory) -> None:
    client = await hub_client(history={"size": 2})
    mine = await publish(client, {"channel": "a", "data": "mine"})
    await publish_ids(client, [{"channel": "b", "data": n} for n in range(5)])
    async with resume(client, "/events/a", str(int(mine["id"]) - 1), "header") as stream:
        event = await stream.next()
    assert (event.event, event.id) == ("message", mine["id"])


async def test_an_evicted_global_message_triggers_reset_for_every_channel(hub_client: HubClientFactory) -> None:
    client = await hub_client(history={"size": 2})
    ids = await publish_ids(client, [{"data": f"global {n}"} for n in range(4)])
    async with resume(client, "/events/a", ids[0], "header") as stream:
        reset = await stream.next()
        replayed = await stream.take(2)
    assert reset_data(reset) == {"reason": "history_expired", "last_event_id": ids[0]}
    assert [event.id for event in replayed] == ids[2:]


async def test_with_no_history_kept_a_resume_after_a_publish_is_reset(hub_client: HubClientFactory) -> None:
    client = await hub_client(history={"size": 0})
    ids = await publish_ids(client, [{"channel": "a", "data": n} for n in range(2)])
    async with resume(client, "/events/a", ids[0], "header") as stream:
        reset = await stream.next()
        live = await publish(client, {"channel": "a", "data": "live"})
        after = await stream.next()
    assert reset_data(reset)["reason"] == "history_expired"
    assert after.id == live["id"]


@pytest.mark.parametrize("bad_id", ["abc", "-1", "1.5", "1e3", "+1", "0x10", "\uff11\uff12"])
async def test_a_non_numeric_id_gets_reset_unknown_id_then_live_messages_only(
    client: TestClient[Any, Any], bad_id: str
) -> None:
    await publish_ids(client, [{"channel": "a", "data": n} for n in range(3)])
    async with open_stream(client, "/events/a", headers={"Last-Event-ID": bad_id}) as stream:
        reset = await stream.next()
        live = await publish(client, {"channel": "a", "data": "live"})
        after = await stream.next()
    assert reset_data(reset) == {"reason": "unknown_id", "last_event_id": bad_id}
    assert (after.id, after.data) == (live["id"], "live")


@pytest.mark.parametrize("how", HOW)
async def test_an_id_newer_than_anything_published_gets_reset_unknown_id(
    client: TestClient[Any, Any], how: str
) -> None:
    ids = await publish_ids(client, [{"channel": "a", "data": n} for n in range(3)])
    future = str(int(ids[-1]) + 1000)
    async with resume(client, "/events/a", future, how) as stream:
        reset = await stream.next()
        live = await publish(client, {"channel": "a", "data": "live"})
        after = await stream.next()
    assert reset_data(reset) == {"reason": "unknown_id", "last_event_id": future}
    assert after.id == live["id"]


async def test_a_huge_id_gets_reset_unknown_id(client: TestClient[Any, Any]) -> None:
    huge = "9" * 40
    async with resume(client, "/events/a", huge, "header") as stream:
        reset = await stream.next()
    assert reset_data(reset) == {"reason": "unknown_id", "last_event_id": huge}


async def test_a_reset_frame_has_no_id_line(hub_client: HubClientFactory) -> None:
    client = await hub_client(history={"size": 1})
    ids = await publish_ids(client, [{"channel": "a", "data": n} for n in range(3)])
    response = await client.get("/events/a", headers={"Last-Event-ID": ids[0]})
    try:
        raw = b""
        while b"event: reset" not in raw or not raw.endswith(b"\n\n"):
            raw += await response.content.readany()
    finally:
        response.close()
    blocks = raw.decode().split("\n\n")
    reset_block = next(block for block in blocks if "event: reset" in block)
    assert not any(line.startswith("id") for line in reset_block.split("\n"))
    assert json.loads(reset_block.split("data: ", 1)[1]) == {"reason": "history_expired", "last_event_id": ids[0]}


async def test_an_empty_last_event_id_is_a_fresh_subscription(client: TestClient[Any, Any]) -> None:
    await publish_ids(client, [{"channel": "a", "data": n} for n in range(3)])
    async with open_stream(client, "/events/a?last_event_id=", headers={"Last-Event-ID": ""}) as stream:
        live = await publish(client, {"channel": "a", "data": "live"})
        event = await stream.next()
    assert (event.event, event.id) == ("message", live["id"])


async def test_replayed_messages_keep_their_event_name_retry_and_data(client: TestClient[Any, Any]) -> None:
    receipt = await publish(client, {"channel": "a", "event": "tick", "retry": 2500, "data": "two\nlines"})
    async with resume(client, "/events/a", "0", "header") as stream:
        event = await stream.next()
    assert (event.id, event.event, event.retry, event.data) == (receipt["id"], "tick", 2500, "two\nlines")
