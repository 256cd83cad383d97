"""``broker/sharded/script_batches.py`` on a real 3-master cluster: the publish script calls
of one loop iteration go to each master in one write, on a connection of the broker's own,
and what the script guarantees per call stays as it was."""

from __future__ import annotations

import asyncio

import redis

from sse_hub.broker.sharded import ShardedClusterBroker
from sse_hub.messages.message import Message
from tests.support.brokers import draft
from tests.support.plugin import BrokerFactory
from tests.support.redis_cluster import Cluster
from tests.support.sharded import master_of, seqs, spread_channels
from tests.support.waiting import wait_until


async def started(start_broker: BrokerFactory) -> tuple[ShardedClusterBroker, list[Message]]:
    broker, delivered = await start_broker("sharded")
    assert isinstance(broker, ShardedClusterBroker)
    return broker, delivered


async def published_once(
    start_broker: BrokerFactory, redis_cluster: Cluster, prefix: str
) -> tuple[ShardedClusterBroker, str, redis.Redis]:
    """A started broker that published once to a channel, and that channel's master."""
    [channel] = spread_channels(redis_cluster, prefix, 1)
    broker, _ = await started(start_broker)
    await broker.publish([draft(channel)])
    return broker, channel, redis_cluster.node(master_of(redis_cluster, prefix, channel)).client()


async def test_concurrent_publishes_share_one_write_per_master_and_keep_each_channels_order(
    start_broker: BrokerFactory, redis_cluster: Cluster, prefix: str
) -> None:
    channels = spread_channels(redis_cluster, prefix, 6)  # two on each master
    broker, delivered = await started(start_broker)
    await broker.attach(channels)
    for channel in channels:  # each master has the script and the broker a connection to it
        await broker.publish([draft(channel, data="first")])
    plan = [channels[n % len(channels)] for n in range(60)]
    writes = broker.batches.writes
    async with asyncio.timeout(10):
        answered = await asyncio.gather(
            *(broker.publish([draft(channel, data=str(n))]) for n, channel in enumerate(plan))
        )
    assert broker.batches.writes - writes == 3, "one write per master: the 60 calls were made in one loop iteration"
    for channel in channels:
        numbered = [message.pos[0][1] for [message] in answered if message.channels == (channel,)]
        assert numbered == list(range(2, plan.count(channel) + 2)), "numbered in call order"
    await wait_until(lambda: len(delivered) == len(channels) + len(plan), 10)
    for channel in channels:
        assert seqs(delivered, channel) == list(range(1, plan.count(channel) + 2))


async def test_a_connection_the_master_closed_while_idle_is_replaced_before_the_next_batch(
    start_broker: BrokerFactory, redis_cluster: Cluster, prefix: str
) -> None:
    broker, channel, master = await published_once(start_broker, redis_cluster, prefix)
    name = f"sse-hub:{broker.instance_id}/publisher"
    [killed] = [client for client in master.client_list() if client["name"] == name]
    master.client_kill_filter(_id=killed["id"])
    [connection] = [m.connection for m in broker.batches._masters.values() if m.connection is not None]
    # The close reached this process (state, not time): the reader saw the end of the stream.
    await wait_until(lambda: connection._reader is None or connection._reader.at_eof(), 5)  # type: ignore[attr-defined]
    [message] = await broker.publish([draft(channel, data="after the kill")])
    assert message.pos[0][1] == 2
    assert [client["id"] for client in master.client_list() if client["name"] == name] != [killed["id"]]


async def test_a_flushed_script_cache_is_loaded_again_and_the_call_stored_once(
    start_broker: BrokerFactory, redis_cluster: Cluster, prefix: str
) -> None:
    broker, channel, master = await published_once(start_broker, redis_cluster, prefix)
    master.script_flush()
    [message] = await broker.publish([draft(channel, data="after the flush")])
    assert message.pos[0][1] == 2
    assert master.xlen(broker.keys.stream(channel)) == 2, "stored once"
