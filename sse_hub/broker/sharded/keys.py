"""Every Redis key and shard channel name of the sharded broker, in one position.

With ``P`` = ``broker.prefix`` and ``t`` = ``TAGS[partition(c)]`` (``partitions``):

- ``P:{t}:m:<c>``: channel ``c``'s meta HASH: ``s`` its last seq (``HINCRBY``), ``e`` its
  epoch (4 base36 characters, set when ``s`` starts again), ``f`` the seq of its final
  message once it has ended (the final mark, in epoch ``e``). Expires
  ``history.ttl_seconds`` + 1 day after the last publish, so a counter outlives its history;
  after a final message, ``history.finished_ttl_seconds`` after it.
- ``P:{t}:h:<c>``: its history STREAM, entry id ``<seq>-0``, fields ``m`` (the payload),
  ``t`` (Redis ms at publish) and ``o`` (the partition's order, below); trimmed to
  ``history.size`` (``MAXLEN ~``), expires ``history.ttl_seconds`` after the last publish
  (``history.finished_ttl_seconds`` after a final one: mark and history are forgotten
  together).
- ``P:{t}:c:<c>``: its shard channel (``SPUBLISH``/``SSUBSCRIBE``).
- ``P:{t}:p:<c>``: its publisher-id index, a ZSET (a Mercure update's own id -> the seq of
  the earliest retained update with it, in epoch ``e``): written by the publish script
  with the update, trimmed to ``history.size``, with the history's TTL, deleted when the
  counter starts a new epoch. Only the Mercure feed has one.
- ``P:{t}:o``: the partition's order, the last ``o`` it gave: each part stored gets
  ``max(Redis TIME in microseconds, last + 1)``, written in its history entries as ``o``.
  Strictly increasing per partition, so a replay of channels of one partition (one
  ``{tag}``) comes in the order they were published; near the clock, so parts of different
  partitions merge by time. Expires with the longest of the TTLs above after the
  partition's last publish, so it outlives every stream it ordered.
- ``P:{T[partition(i)]}:inbox:<i>``: the shard channel of instance ``i`` (direct messages,
  kicks).
- The directory, presence and tickets: ``Keyspace.for_cluster(P)``, under ``{P}`` (one
  slot, so their multi-key scripts stay legal).

The global channel ``*`` is an ordinary channel here, in its own partition.

Invariant: every name of one channel (and of one partition) hashes to the partition's slot,
so one script call touches one slot, ``SPUBLISH`` included.
"""

from __future__ import annotations

from dataclasses import dataclass

from sse_hub.broker.redis.keyspace import Keyspace
from sse_hub.broker.sharded.partition_tags import TAGS
from sse_hub.broker.sharded.partitions import partition, tag_of


@dataclass(frozen=True, slots=True)
class ShardKeys:
    prefix: str

    def __post_init__(self) -> None:
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError("broker.prefix must not contain braces in redis-cluster mode")

    def meta(self, channel: str) -> str:
        return f"{self.prefix}:{{{tag_of(channel)}}}:m:{channel}"

    def stream(self, channel: str) -> str:
        return f"{self.prefix}:{{{tag_of(channel)}}}:h:{channel}"

    def shard_channel(self, channel: str) -> str:
        return f"{self.prefix}:{{{tag_of(channel)}}}:c:{channel}"

    def publisher_ids(self, channel: str) -> str:
        return f"{self.prefix}:{{{tag_of(channel)}}}:p:{channel}"

    def order(self, channel: str) -> str:
        """The order counter of ``channel``'s partition."""
        return f"{self.prefix}:{{{tag_of(channel)}}}:o"

    def inbox(self, instance_id: str) -> str:
        return f"{self.prefix}:{{{TAGS[partition(instance_id)]}}}:inbox:{instance_id}"

    def directory(self) -> Keyspace:
        """Directory, presence and tickets: the standalone layout under ``{P}``."""
        return Keyspace.for_cluster(self.prefix)
