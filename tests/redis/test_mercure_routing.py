"""Mercure routing by interest on Redis: an instance hears the routing names of the exact
topics its streams hold, and the shared feed only when a stream has a pattern.

Two hubs on one Redis; ``messages_received`` (every payload read from the subscription,
before any check) counts what an instance was sent. Never timed: one connection carries
every subscription in publish order, so once a later marker arrived, anything published
before it to a name the instance listens on would have arrived too.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from sse_hub.broker.redis import RedisBroker
from sse_hub.broker.redis.keyspace import Keyspace
from sse_hub.messages.mercure import FEED_CHANNEL, MercureMeta
from sse_hub.messages.message import Draft, Message
from sse_hub.web.state import HUB
from tests.redis.test_mercure_endpoint import BOOKS, MERCURE, Hubs
from tests.support.plugin import HubsFactory
from tests.support.waiting import wait_until

TIMEOUT = 10
MINE = f"{BOOKS}/mine"
UPDATES = 20
# Instances judge each other's wire versions every presence refresh (2 s).
PRESENCE_TIMEOUT = 10


def broker_of(client: TestClient[Any, Any]) -> RedisBroker:
    broker = client.app[HUB].broker
    assert isinstance(broker, RedisBroker)
    return broker


async def two_hubs(start_hubs: HubsFactory) -> Hubs:
    """``a`` publishes, ``b`` subscribes (``Hubs(b, a)`` subscribes on ``a``)."""
    return Hubs(*await start_hubs("redis", mercure=MERCURE))


async def test_an_instance_holding_one_exact_topic_receives_no_update_to_other_topics(
    start_hubs: HubsFactory,
) -> None:
    hubs = await two_hubs(start_hubs)
    b = broker_of(hubs.b)
    on_a = Hubs(hubs.b, hubs.a)  # subscribes on a
    async with (
        hubs.subscribe([("topic", MINE)]) as (exact, _),
        on_a.subscribe([("topic", f"{BOOKS}/{{id}}")]) as (
            template,
            _,
        ),
    ):
        before = b.messages_received
        for n in range(UPDATES):
            await hubs.publish([f"{BOOKS}/other-{n}"], f"other {n}")
        await hubs.publish([MINE], "marker")
        assert (await exact.next(TIMEOUT)).data == "marker"
        assert b.messages_received - before == 1, "b heard only the update to the topic it holds"
        got = await template.take(UPDATES + 1)
        assert [event.data for event in got] == [*(f"other {n}" for n in range(UPDATES)), "marker"]


async def test_an_update_reaches_an_exact_subscriber_of_its_alternate_topic(start_hubs: HubsFactory) -> None:
    hubs = await two_hubs(start_hubs)
    b = broker_of(hubs.b)
    async with hubs.subscribe([("topic", MINE)]) as (stream, _):
        before = b.messages_received
        await hubs.publish([f"{BOOKS}/canonical", MINE], "by its alternate")
        assert (await stream.next(TIMEOUT)).data == "by its alternate"
        assert b.messages_received - before == 1


async def test_exact_and_template_streams_on_one_instance_get_each_update_once(start_hubs: HubsFactory) -> None:
    hubs = await two_hubs(start_hubs)
    b = broker_of(hubs.b)
    async with (
        hubs.subscribe([("topic", MINE)]) as (exact, _),
        hubs.subscribe([("topic", f"{BOOKS}/{{id}}")]) as (
            template,
            _,
        ),
    ):
        before = b.messages_received
        await hubs.publish([MINE], "one")
        await hubs.publish([MINE], "two")
        for stream in (exact, template):
            assert [event.data for event in await stream.take(2)] == ["one", "two"]
        # Each update came twice (its routing name and the feed); the repeat was dropped.
        assert b.messages_received - before == 4
        await hubs.publish([f"{BOOKS}/other"], "template only")
        await hubs.publish([MINE], "marker")
        assert (await exact.next(TIMEOUT)).data == "marker", "delivered once, and nothing else"
        assert [event.data for event in await template.take(2)] == ["template only", "marker"]


async def test_a_private_update_on_a_routed_topic_still_skips_an_anonymous_subscriber(
    start_hubs: HubsFactory,
) -> None:
    hubs = await two_hubs(start_hubs)
    async with hubs.subscribe([("topic", MINE)]) as (stream, _):
        await hubs.publish([MINE], "secret", private="on")
        await hubs.publish([MINE], "marker")
        assert (await stream.next(TIMEOUT)).data == "marker"


async def test_an_exact_stream_recovers_from_the_feed_history_after_a_reconnect(
    start_hubs: HubsFactory, redis: Redis, prefix: str
) -> None:
    hubs = await two_hubs(start_hubs)
    b = broker_of(hubs.b)
    async with hubs.subscribe([("topic", MINE)]) as (stream, _):
        await hubs.publish([MINE], "before")
        assert (await stream.next(TIMEOUT)).data == "before"
        # An update b missed while its subscription was down: stored, never published.
        missed_id = int(await redis.incr(f"{prefix}:seq"))
        missed = Message(
            id=missed_id, event="message", data="missed", channels=(FEED_CHANNEL,), mercure=MercureMeta((MINE,))
        )
        await redis.xadd(f"{prefix}:history:{FEED_CHANNEL}", {"m": missed.to_payload()}, id=f"{missed_id}-0")
        name = f"sse-hub:{b.instance_id}"
        subscriber = [c for c in await redis.client_list() if c["name"] == name and "P" in c["flags"]]
        await redis.client_kill_filter(_id=subscriber[0]["id"])
        await wait_until(lambda: b.reconnects == 1 and b.connected, TIMEOUT)
        await hubs.publish([MINE], "after")
        assert [event.data for event in await stream.take(2)] == ["missed", "after"]


# -- beside an instance of wire version 1 (the release before routing names) -------------


async def register_version_1_instance(redis: Redis, prefix: str, instance: str) -> None:
    """A live instance announcing wire version 1, as its presence script writes one, for
    a minute (longer than any test); see tests/e2e/test_upgrade.py for the real release."""
    ttl_ms = 60_000
    summary = {"wire_version": 1, "wire_compatible": [1], "instance": instance, "total_clients": 0, "channels": {}}
    await redis.set(f"{prefix}:instance:{instance}", json.dumps(summary, separators=(",", ":")), px=ttl_ms)
    await redis.zadd(f"{prefix}:instances", {instance: int(time.time() * 1000) + ttl_ms})


async def test_beside_an_instance_of_wire_version_1_an_exact_stream_hears_its_feed_only_updates(
    start_hubs: HubsFactory, redis: Redis, prefix: str
) -> None:
    hubs = await two_hubs(start_hubs)
    a, b = broker_of(hubs.a), broker_of(hubs.b)
    await register_version_1_instance(redis, prefix, "version-1")
    await wait_until(lambda: b.mercure.older_peers, PRESENCE_TIMEOUT)
    async with hubs.subscribe([("topic", MINE)]) as (stream, _):
        # What a version 1 instance publishes: the feed only, no routing name.
        update = Draft(event="message", data="from version 1", channels=(FEED_CHANNEL,), mercure=MercureMeta((MINE,)))
        await a.publisher.publish([update], [[Keyspace(prefix).topic(FEED_CHANNEL)]])
        assert (await stream.next(TIMEOUT)).data == "from version 1"
    await redis.zrem(f"{prefix}:instances", "version-1")
    await wait_until(lambda: not b.mercure.older_peers, PRESENCE_TIMEOUT)
    assert b.listener.attached(FEED_CHANNEL) == 0, "the feed is let go once no such instance is live"


async def test_exact_streams_end_to_resume_when_an_instance_of_wire_version_1_appears(
    start_hubs: HubsFactory, redis: Redis, prefix: str
) -> None:
    hubs = await two_hubs(start_hubs)
    async with hubs.subscribe([("topic", MINE)]) as (stream, _):
        await register_version_1_instance(redis, prefix, "version-1")
        # Its first updates may have gone to the feed alone: the stream resumes from history.
        await stream.read_until_closed(PRESENCE_TIMEOUT)
