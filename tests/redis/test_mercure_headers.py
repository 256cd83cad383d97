"""A Mercure stream's response headers go out only once its subscription is live.

``routes/mercure.py`` promises that an update published as soon as the client sees the
headers reaches it: the subscriber is registered and the feed attached first. On memory
attaching is free and registration is what counts. On Redis attaching is a ``SUBSCRIBE``
(of the topic's routing name for an exact selector, of the shared feed for a template)
round trip, which on a test machine always beats a publish made through HTTP after the
headers, so a hub that sent its headers first would still pass; here the subscribing
instance (``b``) reaches Redis through a proxy that makes its subscribe commands slow,
while the publishing one (``a``) talks to Redis directly. A hub that sends the headers
before the attach returns then loses the update, and the marker published once Redis
holds the subscription arrives first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

import pytest
from redis.asyncio import Redis

from sse_hub.broker.redis.keyspace import Keyspace
from sse_hub.messages.mercure import FEED_CHANNEL, route_channel
from tests.redis.test_mercure_endpoint import BOOKS, MERCURE, Hubs
from tests.support.plugin import HubsFactory
from tests.support.redis_proxy import RedisProxy, redis_proxy
from tests.support.waiting import eventually

# Far longer than a publish through the test client takes, so that a hub sending its
# headers before the attach returns is caught every time.
SUBSCRIBE_DELAY_SECONDS = 0.5
TIMEOUT = 10

Kind = Literal["memory", "redis"]


@pytest.fixture
async def proxy(redis_server: str) -> AsyncIterator[RedisProxy]:
    async with redis_proxy(redis_server) as started:
        yield started


@pytest.fixture(params=["memory", "redis"])
async def kind(request: pytest.FixtureRequest) -> Kind:
    kind: Kind = request.param
    return kind


async def started_hubs(kind: Kind, start_hubs: HubsFactory, proxy: RedisProxy) -> Hubs:
    """``a`` publishes; ``b`` subscribes, on Redis through the slow proxy."""
    if kind == "memory":
        return Hubs(*await start_hubs("memory", mercure=MERCURE))
    [a] = await start_hubs("redis", 1, mercure=MERCURE)
    [b] = await start_hubs("redis", 1, url=proxy.url, mercure=MERCURE)  # same prefix
    proxy.slow_subscriptions(SUBSCRIBE_DELAY_SECONDS)  # after b's start-up subscriptions
    return Hubs(a, b)


TOPIC = f"{BOOKS}/ordering"


# An exact selector attaches its topic's routing name, a template the shared feed.
@pytest.mark.parametrize(
    ("selector", "attached"),
    [(TOPIC, route_channel(TOPIC)), (f"{BOOKS}/{{id}}", FEED_CHANNEL)],
    ids=["exact", "template"],
)
async def test_an_update_published_once_the_headers_arrive_reaches_the_subscriber(
    kind: Kind, start_hubs: HubsFactory, proxy: RedisProxy, redis: Redis, prefix: str, selector: str, attached: str
) -> None:
    hubs = await started_hubs(kind, start_hubs, proxy)
    topic = TOPIC
    async with hubs.subscribe([("topic", selector)]) as (stream, _):
        await hubs.publish([topic], "right after the headers")
        if kind == "redis":  # the marker below must not be lost as well
            feed = Keyspace(prefix).topic(attached)

            async def subscribed() -> bool:
                return dict(await redis.pubsub_numsub(feed)).get(feed.encode(), 0) > 0

            await eventually(subscribed, TIMEOUT)
        await hubs.publish([topic], "marker")
        first = await stream.next(TIMEOUT)
        assert first.data == "right after the headers", "the headers went out before the subscription was live"
        assert (await stream.next(TIMEOUT)).data == "marker"
