"""Streams that end (docs/api.md#streams-that-end): ``?from=start`` replays everything kept
then goes live; a final message is followed by ``event: end`` and, once every channel of
the stream ended, by the end of the stream; a stream that would get nothing is answered
``204``; a publish to an ended channel is ``409``; an ended channel is forgotten after
``history.finished_ttl_seconds``.

The broker is a fixture parameter: memory, Redis, and Redis Cluster in one-slot and in
sharded mode. On the Redis ones each test runs two instances: streams open on one, and
``publish`` goes through the other (``PUBLISHER``), so the final mark and the end travel
between instances.

Ids are compared exactly on every kind: on one id sequence a stream shows a message with
its receipt's id; on sharded a stream's id is its position in each of its channels and in
``*`` (``core/positions/event_ids.py``), which ``id_on`` derives from the receipts published
so far (``PUBLISHED``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from sse_hub.broker.memory import MemoryBroker
from sse_hub.core.positions.event_ids import list_checksum
from sse_hub.messages.positions import PerChannelBroker
from sse_hub.web.app import create_app
from sse_hub.web.state import HUB
from tests.support.fakes import FakeClock
from tests.support.http import open_stream
from tests.support.http import publish as publish_to
from tests.support.plugin import HubsFactory
from tests.support.settings import make_settings
from tests.support.sse_client import Event, EventStream
from tests.support.waiting import wait_until

Client = TestClient[Any, Any]
KINDS = ["memory", "redis", "redis-cluster", "sharded"]
# The instance each test hub publishes through (itself on memory, the other of two on Redis).
PUBLISHER: dict[Client, Client] = {}
# The receipts of what each test hub published, in order (for ``id_on``).
PUBLISHED: dict[Client, list[dict[str, Any]]] = {}


@pytest.fixture(params=KINDS)
async def hub(request: pytest.FixtureRequest, start_hubs: HubsFactory) -> Client:
    streams, publisher = await start_hubs(request.param, 2)
    PUBLISHER[streams] = publisher
    return streams


@pytest.fixture(params=KINDS)
async def small_hub(request: pytest.FixtureRequest, start_hubs: HubsFactory) -> Client:
    """History keeps 3 messages per channel."""
    streams, publisher = await start_hubs(request.param, 2, history={"size": 3})
    PUBLISHER[streams] = publisher
    return streams


async def publish(client: Client, body: object, expect: int = 202) -> Any:
    """Publish through the other instance of ``client``'s pair (itself when alone)."""
    answer = await publish_to(PUBLISHER.get(client, client), body, expect)
    if expect == 202:
        PUBLISHED.setdefault(client, []).extend(answer if isinstance(answer, list) else [answer])
    return answer


async def publish_all(client: Client, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [await publish(client, body) for body in bodies]


def sharded(client: Client) -> bool:
    return isinstance(client.app[HUB].broker, PerChannelBroker)


def id_on(client: Client, *channels: str) -> Callable[[dict[str, Any]], str]:
    """The id a stream on ``channels`` shows for the message of a receipt: the receipt's id
    on one id sequence; on sharded, the stream's position in each of its channels and in ``*``
    after that message, from the receipts published before it (every test starts on unused
    channels, so a channel with none is at ``0``)."""

    def shown(receipt: dict[str, Any]) -> str:
        if not sharded(client):
            return str(receipt["id"])
        order = sorted(channels)
        at = dict.fromkeys((*order, "*"), "0")
        for published in PUBLISHED[client]:
            at.update((channel, position) for channel, position in receipt_positions(published) if channel in at)
            if published is receipt:
                return ".".join((list_checksum(order), *at.values()))
        raise AssertionError(f"{receipt} was not published")

    return shown


def receipt_positions(receipt: dict[str, Any]) -> list[tuple[str, str]]:
    """The position a sharded receipt names in each of its channels (``event_ids.receipt_id``:
    sorted channels, ``*`` alone for a global message)."""
    checksum, *positions = str(receipt["id"]).split(".")
    channels = sorted(channel for channel in receipt["channels"] if channel != "*") or ["*"]
    assert checksum == list_checksum([c for c in channels if c != "*"]), receipt
    return list(zip(channels, positions, strict=True))


async def rest_of(stream: EventStream) -> list[Event]:
    """Every event until the hub ends the stream (fails if it does not, within 5 s)."""
    await stream.read_until_closed()
    return stream.drain()


def seen(events: list[Event]) -> list[tuple[str | None, str, str]]:
    return [(event.id, event.event, event.data) for event in events]


def end(channel: str) -> tuple[None, str, str]:
    return (None, "end", json.dumps({"channel": channel}, separators=(",", ":")))


async def status_of(client: Client, path: str, headers: dict[str, str] | None = None) -> int:
    response = await client.get(path, headers=headers, timeout=aiohttp.ClientTimeout(total=5))
    status = response.status
    response.close()
    return status


# -- from the start ---------------------------------------------------------------------


async def test_from_start_replays_every_kept_message_then_live_ones_with_no_gap_or_duplicate(hub: Client) -> None:
    receipts = await publish_all(
        hub,
        [
            {"channel": "a", "data": "a1"},
            {"channel": "b", "data": "b1"},
            {"data": "global"},
            {"channel": "a", "data": "a2"},
        ],
    )
    async with open_stream(hub, "/events/a?from=start") as stream:
        replayed = await stream.take(3)
        live = await publish(hub, {"channel": "a", "data": "live"})
        after = await stream.next()
    shown = id_on(hub, "a")
    assert seen(replayed) == [
        (shown(receipts[0]), "message", "a1"),
        (shown(receipts[2]), "message", "global"),
        (shown(receipts[3]), "message", "a2"),
    ]
    assert (after.id, after.data) == (shown(live), "live")


async def test_from_start_begins_with_reset_when_history_no_longer_reaches_the_first_message(
    small_hub: Client,
) -> None:
    # The sharded broker trims with XADD MAXLEN ~, by whole stream nodes of 100 entries:
    # publish well past one, so that every broker has trimmed the first messages.
    receipts = await publish(small_hub, [{"channel": "a", "data": str(n)} for n in range(150)])
    async with open_stream(small_hub, "/events/a?from=start") as stream:
        reset = await stream.next()
        live = await publish(small_hub, {"channel": "a", "data": "live"})
        replayed = []
        while (event := await stream.next()).data != "live":
            replayed.append(event)
    assert (reset.event, reset.id, reset.json()) == (
        "reset",
        None,
        {"reason": "history_expired", "last_event_id": None},
    )
    kept = len(replayed)
    assert 3 <= kept < 150 if sharded(small_hub) else kept == 3
    shown = id_on(small_hub, "a")
    assert seen(replayed) == [(shown(receipt), "message", str(n)) for n, receipt in enumerate(receipts)][-kept:]
    assert event.id == shown(live)


async def test_a_last_event_id_wins_over_from_start(hub: Client) -> None:
    receipts = await publish_all(hub, [{"channel": "a", "data": str(n)} for n in range(3)])
    async with open_stream(hub, "/events/a?from=start", headers={"Last-Event-ID": receipts[1]["id"]}) as stream:
        assert (await stream.next()).id == id_on(hub, "a")(receipts[2])


async def test_from_takes_only_start(hub: Client) -> None:
    response = await hub.get("/events/a?from=yesterday")
    assert response.status == 400
    assert (await response.json())["error"] == "bad_request"


# -- a final message ----------------------------------------------------------------------


async def test_a_final_message_is_followed_by_end_and_the_close_of_a_one_channel_stream(hub: Client) -> None:
    async with open_stream(hub, "/events/job") as stream:
        token = await publish(hub, {"channel": "job", "data": "t1"})
        final = await publish(hub, {"channel": "job", "data": "done", "final": True})
        events = await rest_of(stream)
    assert final == {"id": final["id"], "channels": ["job"], "final": True}
    shown = id_on(hub, "job")
    assert seen(events) == [(shown(token), "message", "t1"), (shown(final), "message", "done"), end("job")]
    await wait_until(lambda: len(hub.app[HUB].registry) == 0)
    assert hub.app[HUB].counters.disconnects.get("finished") == 1


async def test_a_two_channel_stream_drops_the_ended_channel_and_goes_on(hub: Client) -> None:
    shown = id_on(hub, "job", "news")
    async with open_stream(hub, "/events?channel=job&channel=news") as stream:
        final = await publish(hub, {"channel": "job", "data": "done", "final": True})
        news = await publish(hub, {"channel": "news", "data": "still here"})
        events = await stream.take(3)
        assert seen(events) == [(shown(final), "message", "done"), end("job"), (shown(news), "message", "still here")]
        last = await publish(hub, {"channels": ["news", "other"], "data": "bye", "final": True})
        assert seen(await rest_of(stream)) == [(shown(last), "message", "bye"), end("news")]


async def test_a_final_message_excluding_a_client_still_ends_its_stream(hub: Client) -> None:
    async with open_stream(hub, "/events/job") as stream:
        client_id = json.loads(stream.parser.events[0].data)["client_id"]
        await publish(hub, {"channel": "job", "data": "done", "final": True, "exclude_client_id": client_id})
        assert seen(await rest_of(stream)) == [end("job")]


# -- opening on an ended channel ------------------------------------------------------------


async def test_a_resume_at_the_final_message_gets_204(hub: Client) -> None:
    final = await publish(hub, {"channel": "job", "data": "done", "final": True})
    assert await status_of(hub, "/events/job", {"Last-Event-ID": final["id"]}) == 204
    assert await status_of(hub, f"/events/job?last_event_id={final['id']}&from=start") == 204


async def test_a_fresh_stream_on_ended_channels_without_a_position_gets_204(hub: Client) -> None:
    await publish(hub, {"channels": ["job", "job2"], "data": "done", "final": True})
    assert await status_of(hub, "/events?channel=job&channel=job2") == 204
    assert len(hub.app[HUB].registry) == 0


async def test_a_resume_before_the_final_message_gets_the_rest_then_end_then_the_close(hub: Client) -> None:
    receipts = await publish_all(
        hub, [{"channel": "job", "data": "t1"}, {"channel": "job", "data": "t2"}, {"channel": "job", "data": "t3"}]
    )
    final = await publish(hub, {"channel": "job", "data": "done", "final": True})
    async with open_stream(hub, "/events/job", headers={"Last-Event-ID": receipts[0]["id"]}) as stream:
        events = await rest_of(stream)
    shown = id_on(hub, "job")
    assert seen(events) == [
        (shown(receipts[1]), "message", "t2"),
        (shown(receipts[2]), "message", "t3"),
        (shown(final), "message", "done"),
        end("job"),
    ]


async def test_from_start_on_an_ended_channel_gets_the_whole_history_then_end_then_the_close(hub: Client) -> None:
    token, final = await publish_all(
        hub, [{"channel": "job", "data": "t1"}, {"channel": "job", "data": "done", "final": True}]
    )
    async with open_stream(hub, "/events/job?from=start") as stream:
        events = await rest_of(stream)
    shown = id_on(hub, "job")
    assert seen(events) == [(shown(token), "message", "t1"), (shown(final), "message", "done"), end("job")]


async def test_a_stream_on_an_ended_and_a_live_channel_gets_end_for_the_ended_one_and_goes_on(hub: Client) -> None:
    await publish(hub, {"channel": "job", "data": "done", "final": True})
    async with open_stream(hub, "/events?channel=job&channel=news") as stream:
        assert seen([await stream.next()]) == [end("job")]
        news = await publish(hub, {"channel": "news", "data": "live"})
        assert (await stream.next()).id == id_on(hub, "job", "news")(news)


# -- publishing after the end ---------------------------------------------------------------


async def test_a_publish_to_an_ended_channel_is_409_channel_finished(hub: Client) -> None:
    await publish(hub, {"channel": "job", "data": "done", "final": True})
    refused = await publish(hub, {"channels": ["other", "job"], "data": "late"}, expect=409)
    assert refused == {"error": "channel_finished", "detail": {"channel": "job"}}


async def test_a_batch_naming_an_ended_channel_is_refused_whole_and_delivers_nothing(hub: Client) -> None:
    async with open_stream(hub, "/events/other") as stream:
        await publish(hub, {"channel": "job", "data": "done", "final": True})
        batch = [{"channel": "other", "data": "first"}, {"channel": "job", "data": "late"}]
        assert (await publish(hub, batch, expect=409))["detail"] == {"channel": "job"}
        ends_itself = [{"channel": "other", "data": "x", "final": True}, {"channel": "other", "data": "after"}]
        assert (await publish(hub, ends_itself, expect=409))["detail"] == {"channel": "other"}
        marker = await publish(hub, {"channel": "other", "data": "marker"})
        shown = id_on(hub, "other")
        assert (await stream.next()).id == shown(marker), "nothing of the refused batches was delivered"
    async with open_stream(hub, "/events/other?from=start") as replay:
        assert (await replay.next()).id == shown(marker), "nor stored"


# -- forgetting an ended channel ------------------------------------------------------------

TTL = 100


async def test_an_ended_channel_is_forgotten_after_its_ttl_and_takes_publishes_again(aiohttp_client: Any) -> None:
    clock = FakeClock()
    settings = make_settings(history={"finished_ttl_seconds": TTL})
    app = create_app(settings)
    app[HUB].broker = MemoryBroker.from_settings(settings, clock=clock)
    client: Client = await aiohttp_client(app)
    final = await publish(client, {"channel": "job", "data": "done", "final": True})
    clock.now += TTL - 1
    await publish(client, {"channel": "job", "data": "late"}, expect=409)
    assert await status_of(client, "/events/job", {"Last-Event-ID": final["id"]}) == 204
    clock.now += 1
    again = await publish(client, {"channel": "job", "data": "again"})
    async with open_stream(client, "/events/job", headers={"Last-Event-ID": final["id"]}) as stream:
        assert (await stream.next()).id == again["id"], "the final message and its mark are gone"
