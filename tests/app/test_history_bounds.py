"""Memory history is bounded by age (``history.ttl_seconds``) and by channel count
(``history.max_channels``, least recently published first), and a resume into a dropped
history starts with ``reset`` (``history_expired``) while a resume from an id newer than
the drop does not. Time is a fake clock handed to the broker: no test sleeps."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from sse_hub.broker.memory import MemoryBroker
from sse_hub.messages.contract import History
from sse_hub.messages.message import GLOBAL_CHANNEL, Draft
from sse_hub.web.app import create_app
from sse_hub.web.state import HUB
from tests.support.fakes import FakeClock
from tests.support.http import HubClientFactory, open_stream, publish
from tests.support.settings import make_settings
from tests.support.sse_client import EventStream

TTL = 100


def draft(*channels: str) -> Draft:
    return Draft(event="message", data="x", channels=channels)


async def started(clock: FakeClock, **bounds: int) -> MemoryBroker:
    broker = MemoryBroker(10, ttl_seconds=TTL, clock=clock, **bounds)
    await broker.start(lambda message: None)
    return broker


async def publish_on(broker: MemoryBroker, *channels: str) -> int:
    return (await broker.publish([draft(*channels)]))[0].id


def ids(history: History) -> list[int]:
    return [message.id for message in history.messages]


# -- the broker, directly ----------------------------------------------------------------


async def test_a_channel_with_no_publish_for_the_ttl_loses_its_history() -> None:
    clock = FakeClock()
    broker = await started(clock)
    old = await publish_on(broker, "old")
    clock.now += 50
    recent = await publish_on(broker, "recent")
    clock.now += 49.9
    assert ids(await broker.history(["old"], 0)) == [old]
    clock.now += 0.1  # "old" has now gone TTL seconds without a publish
    dropped = await broker.history(["old"], 0)
    assert (ids(dropped), dropped.expired) == ([], True)
    assert ids(await broker.history(["recent"], 0)) == [recent]
    assert broker.channels_with_history == 1


async def test_a_publish_keeps_a_channel_history_alive() -> None:
    clock = FakeClock()
    broker = await started(clock)
    first = await publish_on(broker, "a")
    clock.now += TTL - 1
    second = await publish_on(broker, "a")
    clock.now += TTL - 1
    history = await broker.history(["a"], 0)
    assert (ids(history), history.expired) == ([first, second], False)


async def test_the_global_channel_follows_the_same_ttl() -> None:
    clock = FakeClock()
    broker = await started(clock)
    global_id = await publish_on(broker, GLOBAL_CHANNEL)
    clock.now += TTL
    history = await broker.history(["a", GLOBAL_CHANNEL], 0)
    assert (ids(history), history.expired) == ([], True)
    assert broker.channels_with_history == 0
    assert not (await broker.history(["a", GLOBAL_CHANNEL], global_id)).expired


async def test_past_max_channels_the_least_recently_published_history_goes_first() -> None:
    clock = FakeClock()
    broker = await started(clock, max_channels=3)
    a1 = await publish_on(broker, "a")
    await publish_on(broker, "b")
    c = await publish_on(broker, "c")
    a2 = await publish_on(broker, "a")  # "b" is now the least recently published
    d = await publish_on(broker, "d")
    assert broker.channels_with_history == 3
    assert ids(await broker.history(["a"], 0)) == [a1, a2]
    assert ids(await broker.history(["c"], 0)) == [c]
    assert ids(await broker.history(["d"], 0)) == [d]
    assert (await broker.history(["b"], 0)).messages == []
    e = await publish_on(broker, "e")  # then "c", the next least recently published
    assert (await broker.history(["c"], 0)).messages == []
    assert [ids(await broker.history([name], 0)) for name in ("a", "d", "e")] == [[a1, a2], [d], [e]]


async def test_a_resume_into_a_dropped_history_is_expired_and_a_newer_one_is_not() -> None:
    clock = FakeClock()
    broker = await started(clock)
    before = await publish_on(broker, "other")
    dropped = await publish_on(broker, "a")
    clock.now += TTL
    assert (await broker.history(["a"], before)).expired, "message `dropped` is lost to this client"
    assert not (await broker.history(["a"], dropped)).expired, "this client saw everything `a` held"


async def test_a_channel_published_to_again_after_a_drop_still_reports_the_loss() -> None:
    clock = FakeClock()
    broker = await started(clock)
    before = await publish_on(broker, "other")
    dropped = await publish_on(broker, "a")
    clock.now += TTL
    fresh = await publish_on(broker, "a")
    lost = await broker.history(["a"], before)
    assert (ids(lost), lost.expired) == ([fresh], True)
    whole = await broker.history(["a"], dropped)
    assert (ids(whole), whole.expired) == ([fresh], False)


async def test_a_dropped_channel_does_not_expire_a_resume_on_an_intact_one() -> None:
    """Every resume also asks for ``*``; a hub that never broadcasts globally has no ``*``
    history, and that must not turn every old resume into a reset."""
    clock = FakeClock()
    broker = await started(clock)
    await publish_on(broker, "gone")
    clock.now += TTL / 2
    kept = await publish_on(broker, "kept")
    clock.now += TTL / 2
    history = await broker.history(["kept", GLOBAL_CHANNEL], 0)
    assert (ids(history), history.expired) == ([kept], False)
    assert broker.channels_with_history == 1


async def test_many_channels_never_hold_more_than_max_channels_histories() -> None:
    clock = FakeClock()
    broker = await started(clock, max_channels=50)
    for n in range(5000):
        await publish_on(broker, f"c{n}")
        clock.now += 0.01
    assert broker.channels_with_history == 50
    clock.now += TTL
    await broker.history(["c0"], 0)
    assert broker.channels_with_history == 0


# -- through the app ---------------------------------------------------------------------


async def app_with_clock(aiohttp_client: Any, clock: FakeClock, **sections: Any) -> TestClient[Any, Any]:
    settings = make_settings(**sections)
    app = create_app(settings)
    app[HUB].broker = MemoryBroker.from_settings(settings, clock=clock)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    return client


async def first_event_after(client: TestClient[Any, Any], stream: EventStream, channel: str) -> tuple[str, Any]:
    """The stream's first event, with a live message published after it opened as a
    marker: a stream that owes no reset and no replay shows the marker first."""
    marker = await publish(client, {"channel": channel, "data": "marker"})
    event = await stream.next()
    return event.event, event.json() if event.event == "reset" else event.id == marker["id"]


async def test_a_resume_into_an_expired_channel_gets_reset_history_expired(aiohttp_client: Any) -> None:
    clock = FakeClock()
    client = await app_with_clock(aiohttp_client, clock, history={"ttl_seconds": TTL})
    first = (await publish(client, {"channel": "x", "data": "one"}))["id"]
    await publish(client, {"channel": "x", "data": "two"})
    clock.now += TTL
    async with open_stream(client, "/events/x", headers={"Last-Event-ID": first}) as stream:
        assert await first_event_after(client, stream, "x") == (
            "reset",
            {"reason": "history_expired", "last_event_id": first},
        )


async def test_a_resume_from_an_id_newer_than_the_drop_gets_no_reset(aiohttp_client: Any) -> None:
    clock = FakeClock()
    client = await app_with_clock(aiohttp_client, clock, history={"ttl_seconds": TTL})
    await publish(client, {"channel": "x", "data": "dropped"})
    clock.now += TTL / 2
    seen = (await publish(client, {"channel": "y", "data": "seen"}))["id"]
    clock.now += TTL / 2  # x's history is gone, y's is not
    async with open_stream(client, "/events?channel=x&channel=y", headers={"Last-Event-ID": seen}) as stream:
        assert await first_event_after(client, stream, "x") == ("message", True)
    assert client.server.app[HUB].counters.resets == 0


async def test_max_channels_from_the_config_drops_the_least_recently_published(hub_client: HubClientFactory) -> None:
    client = await hub_client(history={"max_channels": 2})
    for channel in ("a", "b", "c"):
        await publish(client, {"channel": channel, "data": channel})
    async with open_stream(client, "/events/b", headers={"Last-Event-ID": "0"}) as stream:
        event = await stream.next()
        assert (event.event, event.data) == ("message", "b"), "b kept its history"
    async with open_stream(client, "/events/a", headers={"Last-Event-ID": "0"}) as stream:
        assert await first_event_after(client, stream, "a") == (
            "reset",
            {"reason": "history_expired", "last_event_id": "0"},
        )
