"""Every Redis key and pub/sub channel name the Redis broker uses, in one position.

With ``P`` = ``broker.prefix`` (standalone Redis >= 7.0):

- ``P:seq``: the cluster-wide id sequence (``INCR``); never expires.
- ``P:origin``: a hash, where the current sequence began (``id``: every id handed out
  since is above it), the run id of the Redis server that held it then (``run``) and
  that server's clock then (``at``, ms). When another server holds it and may have lost
  writes, the sequence starts again above the clock (``origin``).
- ``P:clock``: a stream of checkpoints, at most one per second, each holding the sequence
  as it was at that Redis time (field ``s``); trimmed to ``history.ttl_seconds`` plus a
  margin. It answers "which id was current ``ttl_seconds`` ago" for expired histories.
- ``P:history:{channel}``: one stream per channel (global messages under ``*``), entry id
  ``{message id}-0``, field ``m`` holding the payload; expires ``history.ttl_seconds``
  after its last publish. A stream created while older histories may have expired starts
  with a marker entry (field ``d``) at the highest id they can have held. The entry of a
  channel's final message also holds field ``f`` (the final mark): a stream whose newest
  entry holds it has ended, and expires ``history.finished_ttl_seconds`` after that
  message, mark and history together (``scripts``, invariant 6).
- ``P:pubid:~mercure``: a sorted set, the publisher-id index of the Mercure history: member
  a publisher's id, score the sequence of the earliest retained update that used it
  (``scripts``, invariant 7); same ttl as the history. New in wire version 2.
- ``P:ch:{channel}``: the pub/sub channel of one channel's messages (``P:ch:*``: global
  messages, which every instance always receives). Mercure updates (``messages.mercure``):
  ``P:ch:~mercure``, the shared feed, carries every update; ``P:ch:~mercure:{hash}``, a
  topic's routing name, the updates to that topic (canonical or alternate). Only
  ``P:history:~mercure`` stores them.
- ``P:inbox:{instance}``: the pub/sub channel of one instance: direct messages and kicks
  for its clients.
- ``P:ticket:{sha256 of the ticket}``: a stream ticket's channel patterns (JSON, TTL);
  ``P:tickets``: sorted set of outstanding ticket keys by expiry (Redis ms), for the cap.
- ``P:instances``: sorted set of live instance ids by expiry (Redis ms);
  ``P:instance:{id}``: that instance's summary (JSON); ``P:clients:{id}``: the client ids
  connected to it (set).
- ``P:roster:{id}``: a hash, the record of each client connected to that instance (JSON:
  ``ip``, ``channels``, ``connected_at``, ``last_activity``, ``messages_sent``,
  ``bytes_sent``); ``P:members:{id}``: a sorted set, every score 0, one member
  ``{channel}\n{client id}`` per channel of each of its clients, read by range
  (``ZRANGEBYLEX``) for one channel's clients in id order (``roster``). Both expire with
  the instance's presence. They are new beside wire version 1: a release before them
  writes neither, so its clients count in ``/stats?scope=cluster`` but not in presence.
- ``P:mercure:{id}``: a hash, each Mercure subscriber of that instance (client id ->
  JSON ``subscriber``, ``topics``, ``payload``; ``mercure_roster``), written and expiring
  with the roster, read only by the subscriptions API; a release before it writes none.
  (Not ``subscribers``: a key name holding ``SUBSCRIBE`` looks like a subscribe command
  to what watches the wire, such as the tests' proxy.)

Redis Cluster (``Keyspace.for_cluster``, issue 16): ``P`` becomes ``{P}``, a hash tag, so
every key above and every pub/sub channel hash to one slot; the channels are then shard
channels (``SPUBLISH``/``SSUBSCRIBE``, Redis >= 7.0), which a cluster keeps inside the
shard that owns the slot instead of copying them to every node.

Invariant: names are built here only; ``shard_channels`` alone picks the pub/sub commands
(SSUBSCRIBE and SPUBLISH on one cluster slot, else SUBSCRIBE and PUBLISH).

Wire version (``WIRE_VERSION``, issue 24): what instances of two releases must agree on to
share one Redis under one prefix, in a rolling upgrade. It covers

- the keys above (names, types, fields: ``seq`` a decimal integer, ``origin`` fields ``id``
  and ``run``, ``clock`` field ``s``, history entry ids ``{id}-0`` and fields ``m``/``d``/``f``,
  presence scores in Redis ms, a summary's fields ``instance``, ``started_at``,
  ``total_clients``, ``channels``), and the sharded broker's keys (``sharded.keys``);
- the message payload (``Message.to_payload``: ``{"id":N`` first, then the fields of
  ``Draft``, ``pos``, ``prior``), read back with ``extra="forbid"``: a new field is a new
  version. One exception, kept at version 1 on purpose: ``final`` (and the mark ``f``)
  appear only in final messages, which the release before it would skip as malformed and
  whose mark its publish script ignores; so final messages are published only once every
  instance runs a release that knows them (docs/upgrades.md, "Streams that end");
- the pub/sub channel names (``P:ch:{channel}``, ``P:inbox:{instance}``);
- what the scripts read and write in those keys, and the keys and arguments of the ones
  that change shared state (publish, history, origin, presence, tickets). Each release
  calls its own scripts (by their SHA), so their text may differ within one version.

Version 1 is the format of ab801b8, the first release that names one; a release that
leaves no ``wire_version`` in its summary speaks 1. Version 2 adds the Mercure routing
names and the publisher-id index (which version 1 neither writes nor needs): its
instances publish every update to the feed as version 1 did, and also to the routing
names of its topics, and listen on the feed only for streams with patterns. A version 1
instance publishes to the feed only, so version 2 works beside it by listening on the
feed too while one is live (``Directory.older_peers``, docs/upgrades.md).

Releases before ab801b8 (d70e888 and earlier: version 0) published every message on one
pub/sub channel, ``P:messages`` (``legacy_topic``): a connection subscribed there is an
instance of one of them. Each instance's summary starts with
``{"wire_version":N,"wire_compatible":[...]`` (read with ``GETRANGE`` by ``PRESENCE_SCRIPT``,
without parsing the rest; readers of the whole summary ignore unknown fields). Change the
format in a way the previous release would misread or miss, and ``WIRE_VERSION`` goes up
(versions only go up); keep in ``COMPATIBLE_WIRE_VERSIONS`` the older versions the new
release still works beside. Two versions work together when either lists the other; when
they don't, the newer one refuses to serve (``directory``): only it knows both formats, and
a newcomer (a canary, a rollout's first pod) must not take the serving release down.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: The Redis wire format's version (module docstring).
WIRE_VERSION = 2
#: The wire versions this release works beside on one Redis, its own included.
COMPATIBLE_WIRE_VERSIONS = frozenset({1, 2})


@dataclass(frozen=True, slots=True)
class Keyspace:
    prefix: str
    #: Shard channels (SPUBLISH/SSUBSCRIBE) instead of classic pub/sub.
    shard_channels: bool = False

    @classmethod
    def for_cluster(cls, prefix: str) -> Keyspace:
        """Every name under the hash tag ``{prefix}``: one slot, one shard."""
        if "{" in prefix or "}" in prefix:
            raise ValueError("broker.prefix must not contain braces in redis-cluster mode")
        return cls(f"{{{prefix}}}", shard_channels=True)

    @property
    def subscribe(self) -> str:
        return "SSUBSCRIBE" if self.shard_channels else "SUBSCRIBE"

    @property
    def unsubscribe(self) -> str:
        return "SUNSUBSCRIBE" if self.shard_channels else "UNSUBSCRIBE"

    @property
    def message_kind(self) -> bytes:
        """The first element of a pub/sub reply that carries a payload."""
        return b"smessage" if self.shard_channels else b"message"

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
    def origin(self) -> str:
        return f"{self.prefix}:origin"

    @property
    def clock(self) -> str:
        return f"{self.prefix}:clock"

    def history(self, channel: str) -> str:
        return f"{self.prefix}:history:{channel}"

    def publisher_ids(self, channel: str) -> str:
        return f"{self.prefix}:pubid:{channel}"

    def topic(self, channel: str) -> str:
        return f"{self.prefix}:ch:{channel}"

    @property
    def topic_prefix(self) -> bytes:
        return f"{self.prefix}:ch:".encode()

    @property
    def legacy_topic(self) -> str:
        """The one pub/sub channel of wire version 0 (module docstring): watched, never used."""
        return f"{self.prefix}:messages"

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
    def roster_prefix(self) -> str:
        return f"{self.prefix}:roster:"

    @property
    def members_prefix(self) -> str:
        return f"{self.prefix}:members:"

    @property
    def mercure_prefix(self) -> str:
        return f"{self.prefix}:mercure:"

    @property
    def tickets(self) -> str:
        return f"{self.prefix}:tickets"

    def ticket(self, ticket: str) -> str:
        # Hashed: the key space (SCAN, MONITOR, slowlog) never shows a usable ticket.
        return f"{self.prefix}:ticket:{hashlib.sha256(ticket.encode()).hexdigest()}"
