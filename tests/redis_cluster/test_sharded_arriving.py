"""``ShardedClusterBroker.arriving`` (broker invariant 7, ``broker/sharded/arrivals.py``) on a
real 3-master cluster: the flush's hold waits for this instance's own parts to come back
on the shard channel links, not for the publish's answer. The single-Redis counterpart is
in tests/redis/test_redis_bounds.py."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from sse_hub.broker.sharded import ShardedClusterBroker
from sse_hub.errors import BrokerUnavailable
from tests.support.brokers import draft
from tests.support.plugin import BrokerFactory
from tests.support.redis_cluster import Cluster
from tests.support.sharded import spread_channels
from tests.support.waiting import wait_until


def hold_receipts(broker: ShardedClusterBroker) -> list[bytes]:
    """Keep what every link reads in a list instead of delivering it; hand it to
    ``broker.delivery.receive`` to deliver."""
    held: list[bytes] = []
    for link in broker.subscriptions.links.values():
        link._receive = held.append
    return held


async def test_arriving_waits_for_the_delivery_of_every_own_part_not_for_the_answers(
    start_broker: BrokerFactory, redis_cluster: Cluster, prefix: str
) -> None:
    channels = spread_channels(redis_cluster, prefix, 3)  # one on each master
    broker, delivered = await start_broker("sharded")
    assert isinstance(broker, ShardedClusterBroker)
    await broker.attach(channels)
    assert broker.arriving() is None, "nothing was published"
    payloads = hold_receipts(broker)
    publishes = [asyncio.ensure_future(broker.publish([draft(channel)])) for channel in channels]
    publishes.append(asyncio.ensure_future(broker.publish([draft("not-received")])))
    await asyncio.sleep(0)  # every publish is on its way
    arrival = broker.arriving()
    assert arrival is not None and not arrival.done()
    async with asyncio.timeout(5):
        answered = [message for publish in publishes for message in await publish]
    await wait_until(lambda: len(payloads) == 3, 5)  # "not-received" never comes back here
    assert not arrival.done(), "answered is not delivered"
    for payload in payloads[:-1]:
        broker.delivery.receive(payload)
        assert not arrival.done(), "a part of another publish is still on its way"
    broker.delivery.receive(payloads[-1])
    async with asyncio.timeout(5):
        await arrival
    assert sorted(message.pos for message in delivered) == sorted(message.pos for message in answered[:3])
    assert broker.arriving() is None, "every publish was answered"


async def test_arriving_resolves_at_the_answer_when_nothing_comes_back(start_broker: BrokerFactory) -> None:
    """A publish to channels received elsewhere, or one that failed, has nothing on its
    way back: waiting for it would only hold the flush until its timer."""
    broker, delivered = await start_broker("sharded")
    assert isinstance(broker, ShardedClusterBroker)
    publish = asyncio.ensure_future(broker.publish([draft("not-received")]))
    await asyncio.sleep(0)
    arrival = broker.arriving()
    assert arrival is not None and not arrival.done()
    async with asyncio.timeout(5):
        await publish
        await arrival

    async def broken(**_: object) -> object:
        raise RedisConnectionError("the master went away")

    await broker.attach(["a"])
    broker.publisher._script = broken
    failed = asyncio.ensure_future(broker.publish([draft("a")]))
    await asyncio.sleep(0)
    arrival = broker.arriving()
    assert arrival is not None and not arrival.done()
    async with asyncio.timeout(5):
        with pytest.raises(BrokerUnavailable):
            await failed
        await arrival
    assert delivered == []
