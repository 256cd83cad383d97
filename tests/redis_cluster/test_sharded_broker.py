"""The sharded Redis Cluster broker (``sse_hub.broker.sharded``), at the broker level: two
``ShardedClusterBroker``s on a real 3-master cluster (``tests.support.redis_cluster``), each with a
``deliver`` that appends to a list. Channel names pick partitions (hence slots) whatever the
prefix, so tests that move slots or kill nodes run on a cluster of their own. Partitions,
keys and scripts without Redis: tests/unit/test_sharded_broker.py."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from sse_hub.broker.sharded import READS_IN_FLIGHT, ShardedClusterBroker
from sse_hub.broker.sharded.keys import ShardKeys
from sse_hub.broker.sharded.partitions import partition, partition_slot
from sse_hub.errors import BrokerUnavailable, UnknownClient
from sse_hub.messages.message import Draft, Message
from sse_hub.messages.positions import NOWHERE
from tests.support.brokers import draft
from tests.support.plugin import BrokerFactory
from tests.support.processes import free_port
from tests.support.redis_cluster import Cluster, ClusterNode, running_cluster
from tests.support.sharded import seqs
from tests.support.waiting import eventually, wait_until

# -- two brokers on the shared cluster ----------------------------------------------------


def spread_channels(cluster: Cluster, count: int) -> list[str]:
    """``count`` channels, as many on each master as on the others (within one)."""
    masters = [node.port for node in cluster.masters()]
    picked: dict[int, list[str]] = {port: [] for port in masters}
    for n in range(10_000):
        name = f"room.{n}"
        port = cluster.owner_of(partition_slot(partition(name))).port
        if len(picked[port]) < -(-count // len(masters)):
            picked[port].append(name)
        if sum(map(len, picked.values())) == count:
            break
    return [name for names in picked.values() for name in names]


async def test_interleaved_publishes_from_two_brokers_arrive_in_order_once_on_every_channel(
    start_broker: BrokerFactory,
    redis_cluster: Cluster,
) -> None:
    channels = spread_channels(redis_cluster, 30)
    rng = random.Random(7)
    async with start_broker.group(2, "sharded") as [(a, got_a), (b, got_b)]:
        await asyncio.gather(a.attach(channels), b.attach(channels))
        plan = [(rng.choice((a, b)), rng.sample(channels, rng.choice((1, 1, 2, 3)))) for _ in range(300)]
        await asyncio.gather(*(broker.publish([draft(*names)]) for broker, names in plan))
        counts = {channel: sum(channel in names for _, names in plan) for channel in channels}
        for got in (got_a, got_b):
            await wait_until(lambda got=got: all(len(seqs(got, c)) >= counts[c] for c in channels), timeout=20)
            for channel in channels:
                assert seqs(got, channel) == list(range(1, counts[channel] + 1)), channel
        positions = await b.positions(channels)
        assert {channel: seq for channel, (seq, _) in positions.items()} == counts
        page = await a.history_after(dict.fromkeys(channels, NOWHERE), 10_000)
        assert page.complete and not page.gaps and page.current == positions
        for channel in channels:
            assert seqs(page.messages, channel) == list(range(1, counts[channel] + 1))
        parts_published = len({m.pos for m in page.messages})
        assert parts_published == len(page.messages), "each part once"


async def test_the_payload_round_trips_every_field(start_broker: BrokerFactory) -> None:
    sent = Draft(
        event="tick", data='{"p": 1}\nline', channels=("news",), retry_ms=5000, exclude_client_id="c", published_at=1.5
    )
    async with start_broker.group(2, "sharded") as [(a, _), (b, got_b)]:
        await b.attach(["news"])
        [receipt] = await a.publish([sent])
        await wait_until(lambda: len(got_b) == 1)
    [message] = got_b
    for name in ("event", "data", "channels", "retry_ms", "exclude_client_id", "published_at", "kick", "client_id"):
        assert getattr(message, name) == getattr(sent, name), name
    assert message.pos == receipt.pos and message.id == receipt.id == 1 and message.prior == ()


def other_partitions(count: int) -> list[str]:
    names: dict[int, str] = {}
    for n in range(1000):
        names.setdefault(partition(f"multi.{n}"), f"multi.{n}")
        if len(names) == count:
            return list(names.values())
    raise AssertionError("not enough partitions")


async def test_a_multi_partition_message_goes_out_in_rounds_with_prior_positions(start_broker: BrokerFactory) -> None:
    one, two, three = other_partitions(3)
    async with start_broker.group(2, "sharded") as [(a, _), (b, got_b)]:
        await b.attach([one, two, three])
        await a.publish([draft(two)])
        [receipt] = await a.publish([draft(one, two, three)])
        assert receipt.channels == (one, two, three) and receipt.prior == ()
        assert [(c, s) for c, s, _ in receipt.pos] == [(one, 1), (two, 2), (three, 1)]
        await wait_until(lambda: len(got_b) == 4)
        parts = got_b[1:]
        assert [part.channels for part in parts] == [(one,), (two,), (three,)]
        assert [part.prior for part in parts] == [(), receipt.pos[:1], receipt.pos[:2]]
        page = await b.history_after({one: NOWHERE, two: (1, receipt.pos[1][2]), three: NOWHERE}, 10)
        assert [part.pos for part in page.messages] == [part.pos for part in parts]


async def test_history_pages_by_limit_and_reports_each_part_once(start_broker: BrokerFactory) -> None:
    async with start_broker.group(2, "sharded") as [(a, _), _second]:
        await a.publish([draft("news", "sport") if n % 3 == 0 else draft(("news", "sport")[n % 2]) for n in range(30)])
        after = {"news": NOWHERE, "sport": NOWHERE}
        pages = []
        for _ in range(10):
            page = await a.history_after(after, 7)
            pages.append(page)
            for message in page.messages:
                after.update({c: (s, e) for c, s, e in message.pos if c in after})
            if page.complete:
                break
        assert [page.complete for page in pages] == [False] * (len(pages) - 1) + [True]
        assert all(len(page.messages) == 7 for page in pages[:-1])
        read = [message for page in pages for message in page.messages]
        positions = await a.positions(["news", "sport"])
        assert seqs(read, "news") == list(range(1, positions["news"][0] + 1))
        assert seqs(read, "sport") == list(range(1, positions["sport"][0] + 1))


async def test_a_burst_of_reads_waits_for_connections_instead_of_failing(start_broker: BrokerFactory) -> None:
    """Streams resuming all at once: redis-py's cluster client refuses a command past its
    connections per node (MaxConnectionsError) instead of waiting for one."""
    async with start_broker.group(2, "sharded") as [(a, _), _second]:
        [message] = await a.publish([draft("news")])
        reads = 3 * READS_IN_FLIGHT + 300  # past redis-py's 100 per node, too
        async with asyncio.timeout(30):
            pages = await asyncio.gather(*(a.history_after({"news": NOWHERE}, 10) for _ in range(reads)))
            positions = await asyncio.gather(*(a.positions(["news"]) for _ in range(reads)))
        assert all(seqs(page.messages, "news") == [message.pos[0][1]] for page in pages)
        assert all(position["news"][0] == message.pos[0][1] for position in positions)


async def test_a_trimmed_history_reports_the_gap(start_broker: BrokerFactory) -> None:
    async with start_broker.group(2, "sharded", history={"size": 5}) as [(a, _), _second]:
        [first, *_] = await a.publish([draft("news") for _ in range(300)])
        epoch = first.pos[0][2]
        page = await a.history_after({"news": (1, epoch)}, 1000)
        retained = seqs(page.messages, "news")
        assert 5 <= len(retained) < 299 and retained[-1] == 300
        assert page.gaps == {"news": retained[0] - 1} and page.current == {"news": (300, epoch)}
        assert not (await a.history_after({"news": (retained[0] - 1, epoch)}, 1000)).gaps


async def test_without_history_everything_past_the_position_is_a_gap(start_broker: BrokerFactory) -> None:
    async with start_broker.group(2, "sharded", history={"size": 0}) as [(a, _), _second]:
        [first, *_] = await a.publish([draft("news") for _ in range(3)])
        page = await a.history_after({"news": (1, first.pos[0][2])}, 10)
        assert page.messages == [] and page.gaps == {"news": 3}
        assert (await a.history_after({"news": (3, first.pos[0][2])}, 10)).gaps == {}


async def test_lost_keys_start_a_new_epoch_and_the_old_position_is_a_gap(
    start_broker: BrokerFactory,
    redis_cluster: Cluster,
) -> None:
    async with start_broker.group(2, "sharded") as [(a, _), _second]:
        [old, *_] = await a.publish([draft("news") for _ in range(4)])
        owner = redis_cluster.owner_of(partition_slot(partition("news"))).client()
        owner.delete(a.keys.meta("news"), a.keys.stream("news"))
        [new, *_] = await a.publish([draft("news") for _ in range(2)])
        assert new.pos[0][1] == 1 and new.pos[0][2] != old.pos[0][2]
        page = await a.history_after({"news": (4, old.pos[0][2])}, 10)
        assert page.gaps == {"news": 0} and seqs(page.messages, "news") == [1, 2]
        assert page.current == {"news": (2, new.pos[0][2])}
        # A counter that starts again drops the stream of the old one: no collision.
        owner.delete(a.keys.meta("news"))
        [again] = await a.publish([draft("news")])
        assert seqs((await a.history_after({"news": NOWHERE}, 10)).messages, "news") == [1]
        assert again.pos[0][1] == 1


async def test_global_direct_messages_and_kicks_cross_brokers(start_broker: BrokerFactory) -> None:
    async with start_broker.group(2, "sharded") as [(a, got_a), (b, got_b)]:
        a.directory.client_connected("alice")
        await wait_until(lambda: not a.directory.changes and not a.directory.stale)

        async def b_knows_alice() -> bool:
            return await b.directory.client_exists("alice")

        await eventually(b_knows_alice, timeout=10)
        [direct, kick] = await b.publish(
            [
                Draft(event="message", data="hi", channels=(), client_id="alice"),
                Draft(event="message", data="", channels=(), client_id="alice", kick=True),
            ]
        )
        assert direct.id == kick.id == 0 and direct.pos == ()
        [glob] = await b.publish([draft("*")])
        await wait_until(lambda: len(got_a) == 3 and len(got_b) == 1)
        assert [(m.client_id, m.kick, m.id) for m in got_a[:2]] == [("alice", False, 0), ("alice", True, 0)]
        assert got_a[2].pos == got_b[0].pos == glob.pos
        with pytest.raises(UnknownClient):
            await a.publish([draft("news"), Draft(event="message", data="x", channels=(), client_id="nobody")])
        assert (await a.positions(["news"]))["news"] == NOWHERE, "nothing of the batch was sent"
        assert not await b.directory.client_exists("nobody")


async def test_each_broker_keeps_one_subscriber_connection_per_master(
    start_broker: BrokerFactory,
    redis_cluster: Cluster,
) -> None:
    channels = spread_channels(redis_cluster, 12)
    async with start_broker.group(2, "sharded") as [(a, _), (b, _)]:
        await asyncio.gather(a.attach(channels), b.attach(channels[:6]), b.attach(channels[6:]))
        for master in redis_cluster.masters():
            clients = master.client().client_list()
            for broker in (a, b):
                named = [c for c in clients if c["name"] == f"sse-hub-sub:{broker.instance_id}"]
                assert len(named) == 1, (master.port, broker.instance_id)
        assert len(a.subscriptions.links) == len(b.subscriptions.links) == 3


def shard_subscribers(client: redis.Redis, shard_channel: str) -> int:
    [(_, count)] = client.execute_command("PUBSUB SHARDNUMSUB", shard_channel)  # redis-py: [(name, count)]
    return int(count)


async def test_a_detached_channel_is_unsubscribed_after_the_linger(
    start_broker: BrokerFactory,
    redis_cluster: Cluster,
) -> None:
    async with start_broker.group(2, "sharded", linger_seconds=0.2) as [(a, got_a), (b, got_b)]:
        await asyncio.gather(a.attach(["news"]), b.attach(["news"]))
        owner = redis_cluster.owner_of(partition_slot(partition("news"))).client()
        shard_channel = a.keys.shard_channel("news")
        assert shard_subscribers(owner, shard_channel) == 2
        a.detach(["news"])
        await wait_until(lambda: shard_subscribers(owner, shard_channel) == 1, timeout=5)
        received = a.messages_received
        await b.publish([draft("news")])
        await wait_until(lambda: len(got_b) == 1)
        assert a.messages_received == received and got_a == []


# -- topology changes: a cluster of the test's own ---------------------------------------------


async def publish_retrying(broker: ShardedClusterBroker, channel: str, attempts: int = 1000) -> Message:
    for _ in range(attempts):
        try:
            [message] = await broker.publish([draft(channel)])
            return message
        except BrokerUnavailable:
            await asyncio.sleep(0.02)
    raise AssertionError("the broker never took the message again")


async def last_seq(broker: ShardedClusterBroker, channel: str, attempts: int = 500) -> int:
    """The channel's seq, asked until the broker's cluster client follows the topology."""
    for _ in range(attempts):
        try:
            return (await broker.positions([channel]))[channel][0]
        except BrokerUnavailable:
            await asyncio.sleep(0.02)
    raise AssertionError("the broker never read the position again")


async def test_a_slot_moved_while_publishing_is_resubscribed_with_no_gap(
    start_broker: BrokerFactory,
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path) as cluster:
        async with start_broker.group(2, "sharded", url=cluster.url) as [(a, got_a), (b, got_b)]:
            await asyncio.gather(a.attach(["news"]), b.attach(["news"]))
            slot = partition_slot(partition("news"))
            source = cluster.owner_of(slot)
            target = next(node for node in cluster.masters() if node.port != source.port)
            for _ in range(20):
                await publish_retrying(b, "news")
            mover = asyncio.create_task(asyncio.to_thread(cluster.move_slot, slot, target))
            while not mover.done():
                await publish_retrying(b, "news")
            await mover
            for _ in range(20):
                await publish_retrying(b, "news")
            assert cluster.owner_of(slot).port == target.port
            last = await last_seq(a, "news")
            for got in (got_a, got_b):
                await wait_until(lambda got=got: len(seqs(got, "news")) >= last, timeout=20)
                assert seqs(got, "news") == list(range(1, last + 1))
            assert a.reconnects >= 1 and b.reconnects >= 1
            assert {link.node[1] for link in a.subscriptions.links.values() if link.channels} >= {target.port}


def replicate_now(master: ClusterNode) -> None:
    client = master.client()
    client.set("{fence}", "1")
    assert client.execute_command("WAIT", 1, 5000) == 1


async def test_a_master_killed_and_replaced_by_its_replica_loses_nothing_replicated(
    start_broker: BrokerFactory,
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path, masters=3, replicas=1) as cluster:
        async with start_broker.group(2, "sharded", url=cluster.url) as [(a, got_a), (b, got_b)]:
            await asyncio.gather(a.attach(["news"]), b.attach(["news"]))
            old = cluster.owner_of(partition_slot(partition("news")))
            for _ in range(10):
                await publish_retrying(b, "news")
            await asyncio.to_thread(replicate_now, old)
            old.kill()
            for _ in range(10):
                await publish_retrying(b, "news")
            last = await last_seq(a, "news")
            assert last >= 20
            for got in (got_a, got_b):
                await wait_until(lambda got=got: len(seqs(got, "news")) >= last, timeout=30)
                assert seqs(got, "news") == list(range(1, last + 1))
            assert a.connected and b.connected


def same_partition() -> tuple[str, str]:
    """Two channel names (no braces: the channel pattern has none) in one partition."""
    first: dict[int, str] = {}
    for n in range(10_000):
        name = f"pair.{n}"
        other = first.setdefault(partition(name), name)
        if other != name:
            return other, name
    raise AssertionError("no two names share a partition")


async def test_a_part_on_two_received_channels_is_delivered_once(start_broker: BrokerFactory) -> None:
    one, two = same_partition()
    async with start_broker.group(2, "sharded") as [(a, _), (b, got_b)]:
        await b.attach([one, two])
        [receipt] = await a.publish([draft(one, two)])
        [later] = await a.publish([draft(one)])
        await wait_until(lambda: any(message.pos == later.pos for message in got_b))
        assert [message.pos for message in got_b] == [receipt.pos, later.pos]
        assert got_b[0].channels == (one, two) and got_b[0].prior == ()
        assert b.messages_received == 3, "the part arrived on both shard channels"


async def test_a_malformed_payload_is_counted_skipped_and_the_reader_goes_on(
    start_broker: BrokerFactory,
    redis_cluster: Cluster,
) -> None:
    async with start_broker.group(2, "sharded") as [(a, got_a), (b, _)]:
        links = dict(a.subscriptions.links)
        owner = redis_cluster.owner_of(partition_slot(partition("*"))).client()
        owner.execute_command("SPUBLISH", a.keys.shard_channel("*"), b'{"id":"nope"}')
        [glob] = await b.publish([draft("*")])
        await wait_until(lambda: len(got_a) == 1)
        assert got_a[0].pos == glob.pos and a.messages_received == 2
        assert a.reconnects == 0 and a.subscriptions.links == links, "the same links read on"


async def test_the_broker_is_not_connected_while_no_node_answers(start_broker: BrokerFactory) -> None:
    async with start_broker.group(2, "sharded") as [(a, _), _second]:
        entry, known = a.topology.entry, a.topology.known
        a.topology.entry, a.topology.known = ("127.0.0.1", free_port()), []
        a._wake_repair()  # what a failed publish does; else the next periodic check
        await wait_until(lambda: not a.connected, timeout=10)
        with pytest.raises(BrokerUnavailable):
            await a.publish([draft("news")])
        a.topology.entry, a.topology.known = entry, known
        await wait_until(lambda: a.connected, timeout=15)
        await a.publish([draft("news")])


async def test_a_tagged_message_is_one_part_on_one_slot(start_broker: BrokerFactory) -> None:
    channels = ("{room7}.chat", "{room7}.typing", "{room7}")
    async with start_broker.group(2, "sharded") as [(a, _), (b, got_b)]:
        await b.attach(channels)
        [receipt] = await a.publish([draft(*channels)])
        await wait_until(lambda: len(got_b) == 1)
        assert got_b[0].pos == receipt.pos and got_b[0].channels == channels and got_b[0].prior == ()
        assert [(c, s) for c, s, _ in receipt.pos] == [(c, 1) for c in channels]
        assert len({key_slot(a.keys.shard_channel(c).encode()) for c in channels}) == 1
        page = await b.history_after(dict.fromkeys(channels, NOWHERE), 10)
        assert [message.pos for message in page.messages] == [receipt.pos]
        assert b.messages_received == 3, "one payload per subscribed shard channel, delivered once"


async def test_tickets_and_the_cluster_summary_are_shared_by_the_brokers(start_broker: BrokerFactory) -> None:
    async with start_broker.group(2, "sharded") as [(a, _), (b, _)]:
        await a.tickets.issue("t-1", ("news", "room.*"), 60)
        assert await b.tickets.redeem("t-1") == ("news", "room.*")
        assert await a.tickets.redeem("t-1") is None, "a ticket works once"
        summaries = await b.directory.cluster_summaries()
        assert summaries is not None
        assert [summary["instance"] for summary in summaries] == sorted([a.instance_id, b.instance_id])


async def test_a_counter_behind_a_seq_already_delivered_is_raised_past_it(
    start_broker: BrokerFactory,
    redis_cluster: Cluster,
    prefix: str,
) -> None:
    """Repair invariant 4: a master that lost unreplicated seqs (simulated: the counter and
    the stream cut back to seq 3, as a replica that had not received 4 and 5) must not
    hand them out again after the repair."""
    async with start_broker.group(2, "sharded") as [(a, got_a), (b, _)]:
        await a.attach(["news"])
        for _ in range(5):
            await b.publish([draft("news")])
        await wait_until(lambda: seqs(got_a, "news") == [1, 2, 3, 4, 5])
        keys = ShardKeys(prefix)
        owner = redis_cluster.owner_of(key_slot(keys.meta("news").encode())).client()
        owner.hset(keys.meta("news"), "s", 3)
        owner.xdel(keys.stream("news"), "4-0", "5-0")
        owner.execute_command("XSETID", keys.stream("news"), "3-0")
        rounds = a.repair.rounds
        owner.client_kill_filter(_type="pubsub")  # the links drop, as in a failover
        await wait_until(lambda: a.repair.rounds > rounds, timeout=10)
        message = await publish_retrying(b, "news")
        assert message.pos[0][1] == 6, "seqs 4 and 5 were delivered: not handed out again"
        await wait_until(lambda: seqs(got_a, "news") == [1, 2, 3, 4, 5, 6])
