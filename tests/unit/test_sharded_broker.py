"""The sharded Redis Cluster broker (``sse_hub.broker.sharded``) without Redis: partitions and
their tags, the slot of every key and shard channel of a script call, drafts split and
planned in rounds, live parts held behind a channel's recovery (two brokers on a real
cluster: tests/redis_cluster/test_sharded_broker.py)."""

from __future__ import annotations

import random

import pytest
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from sse_hub.broker.sharded.delivery import Delivery
from sse_hub.broker.sharded.keys import ShardKeys
from sse_hub.broker.sharded.partition_tags import TAGS
from sse_hub.broker.sharded.partitions import PARTITIONS, partition, partition_slot
from sse_hub.broker.sharded.publish import plan_rounds, script_call, split
from sse_hub.messages.message import Message, message_from_payload
from tests.support.brokers import draft


def test_each_partition_tag_hashes_to_its_partitions_slot() -> None:
    assert len(TAGS) == PARTITIONS == 1024
    assert [key_slot(tag.encode()) for tag in TAGS] == [partition_slot(p) for p in range(PARTITIONS)]
    assert all(len(tag) <= 4 and "{" not in tag and "}" not in tag for tag in TAGS)


def test_a_channel_partition_follows_the_redis_hash_tag_rule() -> None:
    for name in ["news", "{room}.chat", "a{}b", "x{y", "*"]:
        assert partition(name) == key_slot(name.encode()) % PARTITIONS
    assert partition("{room7}.chat") == partition("{room7}.typing") == partition("room7")


def create_ranges(masters: int) -> list[range]:
    """The slot ranges ``redis-cli --cluster create`` gives ``masters`` equal masters
    (clusterManagerCommandCreate, redis-cli.c)."""
    per_node = REDIS_CLUSTER_HASH_SLOTS / masters
    ranges, first, cursor = [], 0, 0.0
    for index in range(masters):
        last = round(cursor + per_node - 1)
        if last > REDIS_CLUSTER_HASH_SLOTS or index == masters - 1:
            last = REDIS_CLUSTER_HASH_SLOTS - 1
        ranges.append(range(first, max(last, first) + 1))
        first, cursor = max(last, first) + 1, cursor + per_node
    return ranges


@pytest.mark.parametrize("masters", range(3, 17))
def test_the_partitions_spread_evenly_over_equal_masters(masters: int) -> None:
    counts = [sum(1 for p in range(PARTITIONS) if partition_slot(p) in slots) for slots in create_ranges(masters)]
    assert sum(counts) == PARTITIONS
    assert max(counts) - min(counts) <= 1, counts


def test_every_script_call_has_its_keys_and_shard_channels_in_one_slot() -> None:
    keys = ShardKeys("sse-hub")
    rng = random.Random(16)
    names = [f"ch{n}" for n in range(200)] + ["*", "{t}.a", "{t}.b", "user:42@eu"]
    drafts = [draft(*rng.sample(names, rng.randint(1, 8))) for _ in range(100)]
    calls = 0
    for round_parts in plan_rounds(drafts):
        for number, parts in round_parts.items():
            entries = [(part, drafts[part.index], ()) for part in parts]
            script_keys, args = script_call(keys, entries, 10, 60, 30)
            shard_channels = [keys.shard_channel(c) for part in parts for c in part.channels]
            assert all(channel in args for channel in shard_channels)
            slots = {key_slot(name.encode()) for name in [*script_keys, *shard_channels]}
            assert slots == {partition_slot(number)}
            calls += 1
    assert calls > 100
    assert key_slot(keys.inbox("instance-1").encode()) == partition_slot(partition("instance-1"))
    directory = keys.directory()
    assert {key_slot(name.encode()) for name in [directory.instances, directory.tickets]} == {key_slot(b"sse-hub")}


def test_a_draft_splits_by_partition_in_channel_order_and_a_tag_keeps_it_whole() -> None:
    assert [part.channels for part in split(0, draft("{r}.a", "{r}.b", "{r}.c"))] == [("{r}.a", "{r}.b", "{r}.c")]
    a, b = "news", next(f"c{n}" for n in range(100) if partition(f"c{n}") != partition("news"))
    parts = split(0, draft(a, b, a + "x"))
    assert [part.channels[0] for part in parts][:2] == [a, b]
    assert sorted(c for part in parts for c in part.channels) == sorted([a, b, a + "x"])


def test_rounds_keep_batch_order_within_a_partition() -> None:
    a, b = "news", next(f"c{n}" for n in range(100) if partition(f"c{n}") != partition("news"))
    rounds = plan_rounds([draft(b, a), draft(a)])
    # The first draft's part on ``a`` goes in round 1, so the second draft's must not go earlier.
    where = {(part.index, part.channels): n for n, parts in enumerate(rounds) for ps in parts.values() for part in ps}
    assert where[(0, (b,))] == 0 and where[(0, (a,))] == 1 and where[(1, (a,))] >= 1


def part_payload(channel: str, seq: int, epoch: str = "abcd") -> bytes:
    return b'{"id":%d,"pos":[["%s",%d,"%s"]],"event":"message","data":"x","channels":["%s"]}' % (
        seq,
        channel.encode(),
        seq,
        epoch.encode(),
        channel.encode(),
    )


def test_live_parts_wait_for_the_recovery_of_their_channel() -> None:
    delivered: list[Message] = []
    delivery = Delivery(lambda: {"news", "sport"}, lambda: None, lambda: None)
    delivery.deliver = delivered.append
    delivery.receive(part_payload("news", 7))
    delivery.recovering.add("news")
    delivery.receive(part_payload("news", 10))  # live, while 8 and 9 are being recovered
    delivery.receive(part_payload("sport", 1))  # another channel is not held back
    delivery.receive(part_payload("news", 9))  # also in the recovery: delivered once
    recovered = [message_from_payload(part_payload("news", seq)) for seq in (8, 9)]
    delivery.recovered(["news"], recovered)
    delivery.receive(part_payload("news", 10))  # a repeat
    assert [(m.pos[0][0], m.pos[0][1]) for m in delivered] == [
        ("news", 7),
        ("sport", 1),
        ("news", 8),
        ("news", 9),
        ("news", 10),
    ]
    assert delivery.messages_received == 5 and not delivery.held


def test_a_gap_on_the_live_path_is_filled_from_history_before_the_part_after_it() -> None:
    """A subscription that missed parts (around a failover) shows a seq jump: the part is
    held, the repair is woken for the channel, and what it reads goes out first."""
    delivered: list[Message] = []
    woken: list[bool] = []
    lost: list[bool] = []
    delivery = Delivery(lambda: {"news"}, lambda: lost.append(True), lambda: woken.append(True))
    delivery.deliver = delivered.append
    delivery.receive(part_payload("news", 48))
    delivery.receive(part_payload("news", 51))  # 49 and 50 never came on the subscription
    assert [m.pos[0][1] for m in delivered] == [48] and woken == [True] and delivery.gapped == {"news"}
    delivery.receive(part_payload("news", 52))  # held behind the gap
    recovered = [message_from_payload(part_payload("news", seq)) for seq in (49, 50, 51)]
    delivery.recovered(["news"], recovered)
    assert [m.pos[0][1] for m in delivered] == [48, 49, 50, 51, 52] and not lost


def test_a_gap_that_history_cannot_fill_ends_the_streams() -> None:
    delivered: list[Message] = []
    lost: list[bool] = []
    delivery = Delivery(lambda: {"news"}, lambda: lost.append(True), lambda: None)
    delivery.deliver = delivered.append
    delivery.receive(part_payload("news", 48))
    delivery.receive(part_payload("news", 51))
    delivery.recovered(["news"], [])  # 49 and 50 are gone from history too
    assert [m.pos[0][1] for m in delivered] == [48, 51] and lost == [True]
