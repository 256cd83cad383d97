"""Routing by interest on one Redis: an instance receives the channels its streams hold,
global messages and its inbox, nothing else. Counted with ``messages_received`` (every
payload read from Redis), never timed: one connection carries every subscription in
publish order, so once a later marker message arrived, anything before it would have too."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from sse_hub.broker.redis import RedisBroker
from sse_hub.messages.message import Draft, Message
from tests.support.brokers import draft
from tests.support.http import client_id_of, open_stream, publish
from tests.support.plugin import BrokerFactory, HubsFactory
from tests.support.redis_proxy import redis_proxy
from tests.support.sse_client import Event
from tests.support.waiting import eventually, wait_until


async def marker_arrives(publisher: RedisBroker, delivered: list[Message], channel: str) -> Message:
    """Publish a marker to ``channel`` and wait for it: everything published before it to a
    channel the receiver serves has arrived by then."""
    [marker] = await publisher.publish([draft(channel, data="marker")])
    await wait_until(lambda: any(message.id == marker.id for message in delivered))
    return marker


async def test_an_instance_receives_nothing_for_channels_it_does_not_serve(start_broker: BrokerFactory) -> None:
    a, _ = await start_broker("redis", "a")
    b, delivered = await start_broker("redis", "b")
    await b.attach(["mine"])
    for batch in range(10):
        await a.publish([draft(f"other-{batch}-{n}") for n in range(20)])
    await marker_arrives(a, delivered, "mine")
    assert b.messages_received == 1, "only the marker reached b"
    assert [message.data for message in delivered] == ["marker"]


async def test_global_and_direct_messages_reach_an_instance_that_attached_nothing(start_broker: BrokerFactory) -> None:
    a, _ = await start_broker("redis", "a")
    b, delivered = await start_broker("redis", "b")
    b.directory.client_connected("c_on_b")
    await a.publish([draft("*", data="to all")])
    await eventually(lambda: a.directory.client_exists("c_on_b"))
    await a.publish([Draft(event="message", data="to you", channels=(), client_id="c_on_b")])
    await a.publish([Draft(event="message", data="", channels=(), client_id="c_on_b", kick=True)])
    await wait_until(lambda: len(delivered) == 3)
    assert [(m.data, m.client_id, m.kick) for m in delivered] == [
        ("to all", None, False),
        ("to you", "c_on_b", False),
        ("", "c_on_b", True),
    ]
    assert b.messages_received == 3


async def test_a_multi_channel_message_reaches_an_instance_once_whatever_it_serves(start_broker: BrokerFactory) -> None:
    a, _ = await start_broker("redis", "a")
    b, delivered = await start_broker("redis", "b")
    await b.attach(["x"])
    [some] = await a.publish([draft("x", "y", "z")])
    await wait_until(lambda: bool(delivered))
    assert b.messages_received == 1, "one copy: b serves x only"
    await b.attach(["y"])
    [both] = await a.publish([draft("x", "y", "z")])
    marker = await marker_arrives(a, delivered, "x")
    assert [message.id for message in delivered] == [some.id, both.id, marker.id], "delivered once each"
    assert b.messages_received == 1 + 2 + 1, "a copy per served channel, the repeat dropped"


async def test_a_channel_lingers_after_its_last_stream_then_is_unsubscribed(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    a, _ = await start_broker("redis", "a")
    b, delivered = await start_broker("redis", "b", linger_seconds=30)
    await b.attach(["keep"])
    await b.attach(["brief"])
    b.detach(["brief"])
    now = asyncio.get_running_loop().time()
    b.listener.sweep(now + 29)  # sweeps are explicit here: no waiting on the clock
    await a.publish([draft("brief", data="lingering")])
    await marker_arrives(a, delivered, "keep")
    assert [message.data for message in delivered] == ["lingering", "marker"], "still subscribed"
    b.listener.sweep(now + 31)
    assert "brief" not in b.listener.subscribed

    async def unsubscribed() -> bool:
        counts = dict(await redis.pubsub_numsub(f"{prefix}:ch:brief"))
        return counts.get(f"{prefix}:ch:brief".encode(), 0) == 0

    await eventually(unsubscribed)
    received = b.messages_received
    await a.publish([draft("brief", data="after the linger")])
    await marker_arrives(a, delivered, "keep")
    assert b.messages_received == received + 1, "only the marker"
    assert [message.data for message in delivered] == ["lingering", "marker", "marker"]


async def test_attach_returns_only_once_redis_confirmed_the_subscription(
    start_broker: BrokerFactory, redis_server: str, redis: Redis, prefix: str
) -> None:
    """The confirmation is held back by a proxy: the SUBSCRIBE is in place in Redis, and
    attach still waits until its confirmation has been read."""
    async with redis_proxy(redis_server) as proxy:
        try:
            a, _ = await start_broker("redis", "a")
            b, delivered = await start_broker("redis", "b", url=proxy.url)
            proxy.hold()
            attaching = asyncio.create_task(b.attach(["held"]))

            async def subscribed_in_redis() -> bool:
                counts = dict(await redis.pubsub_numsub(f"{prefix}:ch:held"))
                return counts.get(f"{prefix}:ch:held".encode(), 0) == 1

            await eventually(subscribed_in_redis)
            await wait_until(lambda: proxy.held_chunks > 0)
            assert not attaching.done(), "attach waits for the confirmation"
            proxy.release()
            await attaching
            await marker_arrives(a, delivered, "held")
        finally:
            await start_broker.stop()  # before the proxy goes


async def test_reattaching_within_the_linger_keeps_the_subscription(start_broker: BrokerFactory) -> None:
    a, _ = await start_broker("redis", "a")
    b, delivered = await start_broker("redis", "b", linger_seconds=0.3)
    for _ in range(5):
        await b.attach(["churn"])
        b.detach(["churn"])
    await b.attach(["churn"])
    await wait_until(lambda: not b.listener.lingering, timeout=2)
    assert b.listener.attached("churn") == 1 and "churn" in b.listener.subscribed
    await marker_arrives(a, delivered, "churn")


async def test_subscribe_churn_during_publishing_loses_nothing_after_each_attach(start_broker: BrokerFactory) -> None:
    """b attaches and detaches channels over and over (no linger: every cycle really
    unsubscribes) while a publishes without pause: b gets every message of its steady
    channel, in order, and each attach is followed by the message published right after it."""
    a, _ = await start_broker("redis", "a")
    b, delivered = await start_broker("redis", "b", linger_seconds=0)
    await b.attach(["steady"])
    published: list[Message] = []
    stop = asyncio.Event()

    async def publish_flat_out() -> None:
        n = 0
        while not stop.is_set():
            published.extend(await a.publish([draft("steady", data=str(n)), draft(f"churn-{n % 3}")]))
            n += 1

    publisher = asyncio.create_task(publish_flat_out())
    try:
        for cycle in range(30):
            channel = f"churn-{cycle % 3}"
            await b.attach([channel])
            [probe] = await a.publish([draft(channel, data=f"probe {cycle}")])
            await wait_until(lambda probe_id=probe.id: any(m.id == probe_id for m in delivered))  # type: ignore[misc]
            b.detach([channel])
    finally:
        stop.set()
        await publisher
    steady = [message.id for message in published if message.channels == ("steady",)]
    await wait_until(lambda: steady[-1] in {message.id for message in delivered})
    received_steady = [message.id for message in delivered if message.channels == ("steady",)]
    assert received_steady == steady, "no gap, no duplicate on the channel held throughout"
    ids = [message.id for message in delivered]
    assert ids == sorted(set(ids))


async def test_recovery_after_a_reconnect_reads_only_the_channels_served(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    a, delivered = await start_broker("redis", "a")
    await a.attach(["news"])
    [before] = await a.publish([draft("news")])
    await wait_until(lambda: len(delivered) == 1)
    missed = []
    for channel in ("news", "elsewhere"):
        missed_id = int(await redis.incr(f"{prefix}:seq"))
        message = Message(id=missed_id, event="message", data=channel, channels=(channel,))
        await redis.xadd(f"{prefix}:history:{channel}", {"m": message.to_payload()}, id=f"{missed_id}-0")
        missed.append(missed_id)
    scans = await scan_calls(redis)
    subscriber = [c for c in await redis.client_list() if c["name"] == "sse-hub:a" and "P" in c["flags"]]
    await redis.client_kill_filter(_id=subscriber[0]["id"])
    await wait_until(lambda: a.reconnects == 1 and a.connected)
    [after] = await a.publish([draft("news")])
    await wait_until(lambda: delivered[-1].id == after.id)
    assert [(m.id, m.data) for m in delivered] == [(before.id, "x"), (missed[0], "news"), (after.id, "x")]
    assert await scan_calls(redis) == scans, "no SCAN of every stream"


async def scan_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_scan", {}).get("calls", 0))


# -- through the hub: two apps on one Redis ---------------------------------------------


def broker_of(client: TestClient[Any, Any]) -> RedisBroker:
    from sse_hub.web.state import HUB

    broker = client.app[HUB].broker
    assert isinstance(broker, RedisBroker)
    return broker


async def test_a_stream_joining_a_channel_while_messages_flow_misses_nothing_after_connected(
    start_hubs: HubsFactory,
) -> None:
    a, b = await start_hubs("redis")
    stop = asyncio.Event()
    receipts: list[tuple[bool, str]] = []  # (sent after the stream's connected event, id)
    joined = asyncio.Event()

    async def publish_flat_out() -> None:
        n = 0
        while not stop.is_set():
            after_connected = joined.is_set()
            receipt = await publish(a, {"channel": "flow", "data": n})
            receipts.append((after_connected, receipt["id"]))
            n += 1

    publisher = asyncio.create_task(publish_flat_out())
    try:
        await wait_until(lambda: len(receipts) >= 5)
        async with open_stream(b, "/events/flow") as stream:
            joined.set()
            await wait_until(lambda: sum(after for after, _ in receipts) >= 20)
            stop.set()
            await publisher
            last = await publish(a, {"channel": "flow", "data": "last"})
            events: list[Event] = []
            while not events or events[-1].id != last["id"]:
                events.append(await stream.next_message())
    finally:
        stop.set()
        await publisher
    ids = [event.id for event in events]
    assert ids == sorted(set(ids), key=lambda event_id: int(event_id or 0)), "in order, no duplicate"
    owed = [message_id for after, message_id in receipts if after]
    assert set(owed) <= set(ids), "every message published after connected arrived"
    assert broker_of(b).listener.attached("flow") == 1


async def test_exclude_client_id_works_across_instances(start_hubs: HubsFactory) -> None:
    a, b = await start_hubs("redis")
    async with open_stream(b, "/events/room") as excluded, open_stream(b, "/events/room") as other:
        await publish(a, {"channel": "room", "data": "not you", "exclude_client_id": client_id_of(excluded)})
        await publish(a, {"channel": "room", "data": "everyone"})
        assert [(await other.next_message()).data for _ in range(2)] == ["not you", "everyone"]
        assert (await excluded.next_message()).data == "everyone"
