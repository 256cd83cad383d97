"""Names and topology for ``broker.backend: redis-cluster`` in one-slot mode, without Redis:
every key and shard channel of a prefix in one slot, the shard publish script, a
``CLUSTER SLOTS`` reply read, a prefix with braces refused (on a real cluster:
tests/redis_cluster/test_redis_cluster.py)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from sse_hub.broker.redis.keyspace import Keyspace
from sse_hub.broker.redis.one_slot import slot_owner
from sse_hub.broker.redis.scripts import PUBLISH_SCRIPT, SHARD_CHANNEL_PUBLISH_SCRIPT
from sse_hub.messages.message import GLOBAL_CHANNEL
from tests.support.settings import make_settings

CHANNELS = ["news", "sport", "room.a", "user:42@eu", "x" * 40]


def test_every_key_and_shard_channel_of_a_prefix_is_in_one_slot() -> None:
    keys = Keyspace.for_cluster("sse-hub")
    names = [keys.seq, keys.clock, keys.instances, keys.tickets, keys.ticket("t0k3n"), keys.inbox("i-1")]
    names += [keys.summary_prefix + "i-1", keys.clients_prefix + "i-1"]
    for channel in [*CHANNELS, GLOBAL_CHANNEL, "{braces}", "}{"]:  # braces cannot move the tag
        names += [keys.history(channel), keys.topic(channel)]
    assert {key_slot(name.encode()) for name in names} == {key_slot(b"sse-hub")}
    assert keys.subscribe == "SSUBSCRIBE" and keys.message_kind == b"smessage"


def test_the_cluster_publish_script_publishes_to_shard_channels_only() -> None:
    assert "'PUBLISH'" not in SHARD_CHANNEL_PUBLISH_SCRIPT and "'SPUBLISH'" not in PUBLISH_SCRIPT
    assert SHARD_CHANNEL_PUBLISH_SCRIPT.replace("SPUBLISH", "PUBLISH") == PUBLISH_SCRIPT


def test_prefixes_spread_over_slots() -> None:
    slots = {Keyspace.for_cluster(f"tenant-{n}").seq for n in range(16)}
    assert len({key_slot(name.encode()) for name in slots}) == 16


def test_slot_owner_reads_a_cluster_slots_reply() -> None:
    reply: list[object] = [
        [0, 5460, [b"10.0.0.1", 7000, b"id1"], [b"10.0.0.4", 7003, b"id4"]],
        [5461, 16383, [b"", 7001, b"id2"]],
    ]
    assert slot_owner(reply, 5460, "seed") == (
        ("10.0.0.1", 7000),
        [("10.0.0.1", 7000), ("10.0.0.4", 7003), ("seed", 7001)],
    )
    assert slot_owner(reply, 9000, "seed")[0] == ("seed", 7001)
    assert slot_owner([], 1, "seed") == (None, [])


def test_a_prefix_with_braces_is_refused_in_cluster_mode() -> None:
    with pytest.raises(ValueError, match="braces"):
        make_settings(broker={"backend": "redis-cluster", "prefix": "{a}"})
    make_settings(broker={"backend": "redis", "prefix": "{a}"})
