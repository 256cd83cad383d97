"""Every Redis key and pub/sub channel name the Redis broker uses, in one place.

With ``P`` = ``broker.prefix`` (standalone Redis >= 7.0):

- ``P:seq``: the cluster-wide id sequence (``INCR``); never expires.
- ``P:clock``: a stream of checkpoints, at most one per second, each holding the sequence
  as it was at that Redis time (field ``s``); trimmed to ``history.ttl_seconds`` plus a
  margin. It answers "which id was current ``ttl_seconds`` ago" for expired histories.
- ``P:history:{channel}``: one stream per channel (global messages under ``*``), entry id
  ``{message id}-0``, field ``m`` holding the payload; expires ``history.ttl_seconds``
  after its last publish. A stream created while older histories may have expired starts
  with a marker entry (field ``d``) at the highest id they can have held.
- ``P:ch:{channel}``: the pub/sub channel of one channel's messages (``P:ch:*``: global
  messages, which every instance always receives).
- ``P:inbox:{instance}``: the pub/sub channel of one instance: direct messages and kicks
  for its clients.
- ``P:ticket:{sha256 of the ticket}``: a stream ticket's channel patterns (JSON, TTL);
  ``P:tickets``: sorted set of outstanding ticket keys by expiry (Redis ms), for the cap.
- ``P:instances``: sorted set of live instance ids by expiry (Redis ms);
  ``P:instance:{id}``: that instance's summary (JSON); ``P:clients:{id}``: the client ids
  connected to it (set).

Redis Cluster (``Keyspace.for_cluster``, issue 16): ``P`` becomes ``{P}``, a hash tag, so
every key above and every pub/sub channel hash to one slot; the channels are then shard
channels (``SPUBLISH``/``SSUBSCRIBE``, Redis >= 7.0), which a cluster keeps inside the
shard that owns the slot instead of copying them to every node.

Invariant: names are built here only; ``sharded`` alone picks the pub/sub commands.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keyspace:
    prefix: str
    #: Shard channels (SPUBLISH/SSUBSCRIBE) instead of classic pub/sub.
    sharded: bool = False

    @classmethod
    def for_cluster(cls, prefix: str) -> Keyspace:
        """Every name under the hash tag ``{prefix}``: one slot, one shard."""
        if "{" in prefix or "}" in prefix:
            raise ValueError("broker.prefix must not contain braces in redis-cluster mode")
        return cls(f"{{{prefix}}}", sharded=True)

    @property
    def subscribe(self) -> str:
        return "SSUBSCRIBE" if self.sharded else "SUBSCRIBE"

    @property
    def unsubscribe(self) -> str:
        return "SUNSUBSCRIBE" if self.sharded else "UNSUBSCRIBE"

    @property
    def message_kind(self) -> bytes:
        """The first element of a pub/sub reply that carries a payload."""
        return b"smessage" if self.sharded else b"message"

    @property
    def subscribed_kind(self) -> bytes:
        return self.subscribe.lower().encode()

    @property
    def unsubscribed_kind(self) -> bytes:
        return self.unsubscribe.lower().encode()

    @property
    def seq(self) -> str:
        return f"{self.prefix}:seq"

    @property
    def clock(self) -> str:
        return f"{self.prefix}:clock"

    def history(self, channel: str) -> str:
        return f"{self.prefix}:history:{channel}"

    def topic(self, channel: str) -> str:
        return f"{self.prefix}:ch:{channel}"

    @property
    def topic_prefix(self) -> bytes:
        return f"{self.prefix}:ch:".encode()

    def inbox(self, instance_id: str) -> str:
        return f"{self.prefix}:inbox:{instance_id}"

    @property
    def instances(self) -> str:
        return f"{self.prefix}:instances"

    @property
    def summary_prefix(self) -> str:
        return f"{self.prefix}:instance:"

    @property
    def clients_prefix(self) -> str:
        return f"{self.prefix}:clients:"

    @property
    def tickets(self) -> str:
        return f"{self.prefix}:tickets"

    def ticket(self, ticket: str) -> str:
        # Hashed: the key space (SCAN, MONITOR, slowlog) never shows a usable ticket.
        return f"{self.prefix}:ticket:{hashlib.sha256(ticket.encode()).hexdigest()}"
