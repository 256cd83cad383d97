"""Publish groups pipelined on the publisher's own connection, on a real redis-server
(``broker/redis/publisher.py`` invariants 5 and 7, ``script_connection.py``): a group goes
out while the one before it waits for its answer, answers come back in order, and a lost
connection fails every group in flight on it, none sent again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from sse_hub.broker.redis import RedisBroker
from sse_hub.broker.redis.script_connection import ScriptConnection
from sse_hub.errors import BrokerUnavailable
from tests.support.brokers import draft
from tests.support.plugin import BrokerFactory
from tests.support.waiting import wait_until

# CLIENT PAUSE WRITE holds every script call (the publish script writes) while reads and
# CLIENT commands go on: publishes stay in flight as long as the test needs.
PAUSE_MS = 10_000


@pytest.fixture
async def broker(start_broker: BrokerFactory) -> RedisBroker:
    """Instance ``a``: its publisher connection is named ``sse-hub:a/publisher``."""
    started, _ = await start_broker("redis", "a")
    return started


def connection_of(broker: RedisBroker) -> ScriptConnection:
    connection = broker.publisher.script
    assert isinstance(connection, ScriptConnection)
    return connection


async def publisher_client(redis: Redis) -> dict[str, Any]:
    """The CLIENT LIST entry of the publisher's connection."""
    [entry] = [c for c in await redis.client_list() if c["name"] == "sse-hub:a/publisher"]
    return entry


async def publish_one_at_a_time(broker: RedisBroker, count: int) -> list[asyncio.Future[Any]]:
    """``count`` publishes, each made once the one before it was written to Redis."""
    connection = connection_of(broker)
    publishes: list[asyncio.Future[Any]] = []
    for n in range(count):
        publishes.append(asyncio.ensure_future(broker.publish([draft("a", data=f"m{n}")])))
        await wait_until(lambda: len(connection._written) == len(publishes), 5)
    return publishes


async def test_a_group_goes_out_while_the_one_before_it_waits_for_its_answer(broker: RedisBroker, redis: Redis) -> None:
    [before] = await broker.publish([draft("a")])
    await redis.client_pause(PAUSE_MS, all=False)
    try:
        publishes = await publish_one_at_a_time(broker, 2)
        assert connection_of(broker).most_in_flight == 2
        assert not any(publish.done() for publish in publishes)
    finally:
        await redis.client_unpause()
    async with asyncio.timeout(5):
        results = [await publish for publish in publishes]
    assert [messages[0].id for messages in results] == [before.id + 1, before.id + 2], "answered in order"
    assert [messages[0].data for messages in results] == ["m0", "m1"]


async def test_a_lost_connection_fails_every_group_in_flight_and_sends_none_again(
    broker: RedisBroker, redis: Redis, prefix: str
) -> None:
    [before] = await broker.publish([draft("a")])
    await redis.client_pause(PAUSE_MS, all=False)
    try:
        publishes = await publish_one_at_a_time(broker, 3)
        await redis.client_kill_filter(_id=(await publisher_client(redis))["id"])
        async with asyncio.timeout(5):
            results = await asyncio.gather(*publishes, return_exceptions=True)
    finally:
        await redis.client_unpause()
    assert all(isinstance(result, BrokerUnavailable) for result in results), results
    [after] = await broker.publish([draft("a", data="after")])
    assert after.id > before.id
    assert await redis.xlen(f"{prefix}:history:a") == 2, "the lost groups were not sent again"


async def test_a_caller_that_leaves_while_its_group_is_in_flight_leaves_the_answers_in_step(
    broker: RedisBroker, redis: Redis
) -> None:
    """The reply of a group whose caller left is still read off the connection, so the
    next group gets its own answer, not the one before it."""
    await broker.publish([draft("a")])
    await redis.client_pause(PAUSE_MS, all=False)
    try:
        left, stays = await publish_one_at_a_time(broker, 2)
        left.cancel()
    finally:
        await redis.client_unpause()
    async with asyncio.timeout(5):
        [message] = await stays
    assert message.data == "m1"
    [after] = await broker.publish([draft("a", data="after")])
    assert after.id == message.id + 1
