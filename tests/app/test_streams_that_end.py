"""Streams that end (docs/api.md#streams-that-end): ``?from=start`` replays everything kept
then goes live; a final message is followed by ``event: end`` and, once every channel of
the stream ended, by the end of the stream; a stream that would get nothing is answered
``204``; a publish to an ended channel is ``409``; an ended channel is forgotten after
``history.finished_ttl_seconds``.

The broker is a fixture parameter: memory, Redis and Redis Cluster in one-slot mode. On
the Redis ones each test runs two instances: streams open on one, and ``publish`` goes
through the other (``PUBLISHER``), so the final mark and the end travel between
instances."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from sse_hub.broker.memory import MemoryBroker
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
KINDS = ["memory", "redis", "redis-cluster"]
# The instance each test hub publishes through (itself on memory, the other of two on Redis).
PUBLISHER: dict[Client, Client] = {}


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
    return await publish_to(PUBLISHER.get(client, client), body, expect)


async def publish_all(client: Client, bodies: list[dict[str, Any]]) -> list[str]:
    return [(await publish(client, body))["id"] for body in bodies]


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
    ids = await publish_all(
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
    assert seen(replayed) == [(ids[0], "message", "a1"), (ids[2], "message", "global"), (ids[3], "message", "a2")]
    assert (after.id, after.data) == (live["id"], "live")


async def test_from_start_begins_with_reset_when_history_no_longer_reaches_the_first_message(
    small_hub: Client,
) -> None:
    ids = await publish_all(small_hub, [{"channel": "a", "data": str(n)} for n in range(5)])
    async with open_stream(small_hub, "/events/a?from=start") as stream:
        reset, *replayed = await stream.take(4)
    assert (reset.event, reset.id, reset.json()) == (
        "reset",
        None,
        {"reason": "history_expired", "last_event_id": None},
    )
    assert [event.id for event in replayed] == ids[2:]


async def test_a_last_event_id_wins_over_from_start(hub: Client) -> None:
    ids = await publish_all(hub, [{"channel": "a", "data": str(n)} for n in range(3)])
    async with open_stream(hub, "/events/a?from=start", headers={"Last-Event-ID": ids[1]}) as stream:
        assert (await stream.next()).id == ids[2]


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
    assert seen(events) == [(token["id"], "message", "t1"), (final["id"], "message", "done"), end("job")]
    await wait_until(lambda: len(hub.app[HUB].registry) == 0)
    assert hub.app[HUB].counters.disconnects.get("finished") == 1


async def test_a_two_channel_stream_drops_the_ended_channel_and_goes_on(hub: Client) -> None:
    async with open_stream(hub, "/events?channel=job&channel=news") as stream:
        final = await publish(hub, {"channel": "job", "data": "done", "final": True})
        news = await publish(hub, {"channel": "news", "data": "still here"})
        events = await stream.take(3)
        assert seen(events) == [(final["id"], "message", "done"), end("job"), (news["id"], "message", "still here")]
        last = await publish(hub, {"channels": ["news", "other"], "data": "bye", "final": True})
        assert seen(await rest_of(stream)) == [(last["id"], "message", "bye"), end("news")]


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
    ids = await publish_all(
        hub, [{"channel": "job", "data": "t1"}, {"channel": "job", "data": "t2"}, {"channel": "job", "data": "t3"}]
    )
    final = await publish(hub, {"channel": "job", "data": "done", "final": True})
    async with open_stream(hub, "/events/job", headers={"Last-Event-ID": ids[0]}) as stream:
        events = await rest_of(stream)
    assert seen(events) == [
        (ids[1], "message", "t2"),
        (ids[2], "message", "t3"),
        (final["id"], "message", "done"),
        end("job"),
    ]


async def test_from_start_on_an_ended_channel_gets_the_whole_history_then_end_then_the_close(hub: Client) -> None:
    ids = await publish_all(hub, [{"channel": "job", "data": "t1"}, {"channel": "job", "data": "done", "final": True}])
    async with open_stream(hub, "/events/job?from=start") as stream:
        events = await rest_of(stream)
    assert seen(events) == [(ids[0], "message", "t1"), (ids[1], "message", "done"), end("job")]


async def test_a_stream_on_an_ended_and_a_live_channel_gets_end_for_the_ended_one_and_goes_on(hub: Client) -> None:
    await publish(hub, {"channel": "job", "data": "done", "final": True})
    async with open_stream(hub, "/events?channel=job&channel=news") as stream:
        assert seen([await stream.next()]) == [end("job")]
        news = await publish(hub, {"channel": "news", "data": "live"})
        assert (await stream.next()).id == news["id"]


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
        assert (await stream.next()).id == marker["id"], "nothing of the refused batches was delivered"
    async with open_stream(hub, "/events/other?from=start") as replay:
        assert (await replay.next()).id == marker["id"], "nor stored"


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
