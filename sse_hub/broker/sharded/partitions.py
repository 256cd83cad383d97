"""Channels to partitions, and partitions to Redis Cluster hash slots.

A channel belongs to one of ``PARTITIONS`` (1024, fixed forever: changing it would move
every channel's keys) partitions: ``crc16(tag) % 1024``, where ``tag`` is the part of the
name between the first ``{`` and the next ``}`` when that part is not empty (the Redis
hash-tag rule, https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/),
else the whole name. So ``{room1}.chat`` and ``{room1}.typing`` share a partition.

Partition ``p``'s keys carry the hash tag ``TAGS[p]`` (``partition_tags``, computed at import),
whose slot is ``p * 16384 // 1024``. Invariants:

1. Partitions follow the slot ranges in order, 16 slots apart, so a cluster whose masters
   own contiguous, equal slot ranges (what ``redis-cli --cluster create`` and
   ``rebalance`` hand out) owns equal shares of partitions (within one), avoiding the
   skew naive tags ``{0}..{N-1}`` have (centrifugal/centrifuge#554).
2. Every key and shard channel of one partition is in one slot: one script call, one
   ``SSUBSCRIBE`` connection.
"""

from __future__ import annotations

from binascii import crc_hqx

from redis.crc import REDIS_CLUSTER_HASH_SLOTS

from sse_hub.broker.sharded.partition_tags import TAGS

PARTITIONS = 1024
SLOTS_PER_PARTITION = REDIS_CLUSTER_HASH_SLOTS // PARTITIONS


def hash_tag(name: str) -> str:
    """The part of ``name`` Redis hashes: the first non-empty ``{...}``, else all of it."""
    start = name.find("{")
    if start >= 0:
        end = name.find("}", start + 1)
        if end > start + 1:
            return name[start + 1 : end]
    return name


def partition(channel: str) -> int:
    # crc_hqx is the CRC16 (XMODEM) Redis Cluster uses, as in redis.crc.key_slot.
    return crc_hqx(hash_tag(channel).encode(), 0) % PARTITIONS


def partition_slot(index: int) -> int:
    """The hash slot of partition ``index``'s keys."""
    return index * SLOTS_PER_PARTITION


def tag_of(channel: str) -> str:
    return TAGS[partition(channel)]
