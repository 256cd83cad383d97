"""The Redis broker's connections, on a real redis-server: the publisher's own
(``broker/redis/script_connection.py``) recovers from a flushed script cache and a
connection the server closed, and never reads one call's answer as another's; the pool
for everything else stays bounded however many reads come at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from sse_hub.broker.redis import POOL_CONNECTIONS, RedisBroker, script_connection
from sse_hub.broker.redis.script_connection import ScriptConnection
from sse_hub.errors import BrokerUnavailable
from tests.support.brokers import draft
from tests.support.plugin import BrokerFactory
from tests.support.waiting import eventually, wait_until


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


async def test_publishes_go_on_one_connection_of_their_own(broker: RedisBroker, redis: Redis) -> None:
    await broker.publish([draft("a")])
    first = await publisher_client(redis)
    await asyncio.gather(*(broker.publish([draft("a")]) for _ in range(20)))
    assert (await publisher_client(redis))["id"] == first["id"]


async def test_a_flushed_script_cache_is_loaded_again_and_the_call_sent_once_more(
    broker: RedisBroker, redis: Redis, prefix: str
) -> None:
    [before] = await broker.publish([draft("a")])
    await redis.script_flush()
    [after] = await broker.publish([draft("a", data="after the flush")])
    assert after.id == before.id + 1
    assert await redis.xlen(f"{prefix}:history:a") == 2, "stored once"


async def test_a_connection_the_server_closed_while_idle_is_replaced_before_the_next_call(
    broker: RedisBroker, redis: Redis
) -> None:
    await broker.publish([draft("a")])
    killed = await publisher_client(redis)
    await redis.client_kill_filter(_id=killed["id"])
    connection = connection_of(broker)._connection
    assert connection is not None
    # The close reached this process (state, not time): the reader saw the end of the stream.
    await wait_until(lambda: connection._reader is None or connection._reader.at_eof(), 5)  # type: ignore[attr-defined]
    [message] = await broker.publish([draft("a", data="after the kill")])
    assert message.data == "after the kill"
    assert (await publisher_client(redis))["id"] != killed["id"]


async def test_a_call_that_timed_out_leaves_no_answer_behind_for_the_next(
    broker: RedisBroker, redis: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis answers the timed-out call later; were the connection kept, a later call could
    read that answer as its own and hand its publisher another message's id."""
    monkeypatch.setattr(script_connection, "COMMAND_TIMEOUT_SECONDS", 0.2)
    await broker.publish([draft("a")])
    timed_out = (await publisher_client(redis))["id"]
    await redis.client_pause(5000, all=False)  # WRITE: the script waits, other commands go on
    try:
        with pytest.raises(BrokerUnavailable):
            await broker.publish([draft("a", data="timed out")])

        async def closed() -> bool:
            return all(client["id"] != timed_out for client in await redis.client_list())

        await eventually(closed)
    finally:
        await redis.client_unpause()
    [message] = await broker.publish([draft("a", data="next")])
    stored = {
        int(entry_id.split(b"-")[0]): fields[b"m"] for entry_id, fields in await redis.xrange(f"{prefix}:history:a")
    }
    assert b'"data":"next"' in stored[message.id]


async def test_concurrent_reads_wait_for_a_pooled_connection_instead_of_opening_more(
    broker: RedisBroker, redis: Redis
) -> None:
    """A thousand streams resuming at once must not take a thousand Redis connections."""
    [message] = await broker.publish([draft("a")])
    pages = await asyncio.gather(*(broker.history(["a"], message.id - 1) for _ in range(10 * POOL_CONNECTIONS)))
    assert all([m.id for m in page.messages] == [message.id] for page in pages)
    pooled = [c for c in await redis.client_list() if c["name"] == "sse-hub:a" and "P" not in c["flags"]]
    assert 1 <= len(pooled) <= POOL_CONNECTIONS
