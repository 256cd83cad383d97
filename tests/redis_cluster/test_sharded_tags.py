"""Order across channels on the sharded Redis Cluster broker (issue 29): channels that share
a ``{tag}`` share one partition (``sse_hub/broker/sharded/partitions.py``), so their
publishes are numbered, stored and ``SPUBLISH``ed by one master, one script call at a time.
A stream on them gets their messages in that order, live (one shard connection) and
replayed (``history.read_after`` merges by the partition's order, ``o``). Channels in
different partitions keep only per-channel order, which the last test shows. Two
``ShardedClusterBroker``s on the session's real 3-master cluster, as in
test_sharded_final.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sse_hub.broker.sharded import ShardedClusterBroker
from sse_hub.broker.sharded.partitions import partition
from sse_hub.messages.message import Message
from sse_hub.messages.positions import NOWHERE
from tests.support.brokers import draft
from tests.support.plugin import BrokerFactory
from tests.support.redis_cluster import Cluster
from tests.support.sharded import master_of, seqs
from tests.support.waiting import wait_until

PUBLISHERS = 4
EACH = 30


async def publish_in_turn(
    broker: ShardedClusterBroker, name: str, channels: Sequence[str], count: int, receipts: list[Message]
) -> None:
    """``count`` publishes, each after the receipt of the one before, taking ``channels`` in
    turn: the publisher's order is known (``name-k``) whatever the others do."""
    for k in range(count):
        [receipt] = await broker.publish([draft(channels[k % len(channels)], data=f"{name}-{k}")])
        receipts.append(receipt)


async def publish_concurrently(brokers: Sequence[ShardedClusterBroker], channels: Sequence[str]) -> list[Message]:
    receipts: list[Message] = []
    async with asyncio.timeout(30):
        await asyncio.gather(
            *(
                publish_in_turn(brokers[n % 2], f"p{n}", [*channels[n % 2 :], *channels[: n % 2]], EACH, receipts)
                for n in range(PUBLISHERS)
            )
        )
    return receipts


def by_publisher(messages: Sequence[Message]) -> dict[str, list[int]]:
    """Per publisher, the k of its messages in the order ``messages`` holds them."""
    seen: dict[str, list[int]] = {}
    for message in messages:
        name, _, k = message.data.partition("-")
        seen.setdefault(name, []).append(int(k))
    return seen


def datas(messages: Sequence[Message]) -> list[str]:
    return [message.data for message in messages]


async def test_a_stream_on_channels_of_one_tag_gets_concurrent_publishes_in_the_partitions_order_live_and_replayed(
    start_broker: BrokerFactory,
) -> None:
    channels = ["{room-7}.typing", "{room-7}.chat"]
    assert partition(channels[0]) == partition(channels[1]) == partition("room-7")
    async with start_broker.group(2, "sharded") as [(a, got), (b, _)]:
        await a.attach(channels)
        await publish_concurrently([a, b], channels)
        [both] = await b.publish([draft(*channels, data="both")])
        await wait_until(lambda: len(got) == PUBLISHERS * EACH + 1)
        live, last = got[:-1], got[-1]
        assert last.data == "both" and last.channels == both.channels, "one part: one script call"
        assert by_publisher(live) == {f"p{n}": list(range(EACH)) for n in range(PUBLISHERS)}
        for channel in channels:
            assert seqs(got, channel) == list(range(1, PUBLISHERS * EACH // 2 + 2))
        page = await b.history_after(dict.fromkeys(channels, NOWHERE), len(got) + 1)
        assert page.complete and not page.gaps
        assert datas(page.messages) == datas(got), "the replay is in the order the stream saw live"


async def test_channels_in_different_partitions_keep_each_channels_order_and_deliver_each_message_once(
    start_broker: BrokerFactory, redis_cluster: Cluster, prefix: str
) -> None:
    channels = ["room-7.typing", "room-7.chat"]
    assert master_of(redis_cluster, prefix, channels[0]) != master_of(redis_cluster, prefix, channels[1])
    async with start_broker.group(2, "sharded") as [(a, got), (b, _)]:
        await a.attach(channels)
        receipts = await publish_concurrently([a, b], channels)
        [both] = await b.publish([draft(*channels, data="both")])
        assert [channel for channel, _, _ in both.pos] == channels, "one message, two parts"
        await wait_until(lambda: len(got) == len(receipts) + 2)
        # What the docs promise: per channel, publish order, each part once; across channels
        # the parts come on two masters' connections, in no promised order.
        for channel in channels:
            assert seqs(got, channel) == list(range(1, len(receipts) // 2 + 2))
        page = await b.history_after(dict.fromkeys(channels, NOWHERE), len(receipts) + 2)
        assert page.complete and not page.gaps
        assert sorted(datas(page.messages)) == sorted(datas(got)), "every part once ('both' has two)"
        for channel in channels:
            assert seqs(page.messages, channel) == list(range(1, len(receipts) // 2 + 2))
