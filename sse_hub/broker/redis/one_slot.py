"""Redis Cluster broker (``broker.backend: redis-cluster``): the Redis broker on one slot.

Every key and pub/sub channel is named under the hash tag ``{prefix}``
(``Keyspace.for_cluster``), so they all live in one slot of one shard, and the broker is
the standalone Redis broker with these differences:

- delivery uses shard channels (``SPUBLISH`` inside the publish script, ``SSUBSCRIBE``),
  which the cluster keeps inside the owning shard instead of copying to every node;
- before it connects and after every lost connection, ``_locate`` asks the cluster
  (``CLUSTER SLOTS``, from ``broker.redis_url`` or any node seen since) which master
  owns the slot, and points the connection pool there;
- a slot moved away (``CLUSTER SETSLOT``, resharding) pushes ``sunsubscribe`` of the
  pinned channels: the listener treats it as a lost connection (``listener`` invariant 6),
  so the broker locates the new owner, resubscribes and recovers what it missed from
  history, as after any reconnect. A failover drops the connection: the same path;
- a watch task asks the cluster for the slot's owner every ``TOPOLOGY_SECONDS``, and at
  once after a publish failed: when the owner changed while our subscription stayed up,
  it drops the subscriber connection to take that path. A safety net (as Centrifugo's
  periodic ``CLUSTER SLOTS``): on Redis 7.0.15 a slot move, a killed master and a manual
  ``CLUSTER FAILOVER`` all ended the subscription by themselves in the tests.

Why one slot, and not a slot per channel: a Lua script may touch one slot only, and our
ids are one cluster-wide integer sequence that the publish script increments, stores and
publishes atomically; the hub, the stream handler and the subscribers compare ids as
integers across channels (``Last-Event-ID``, replay pages, per-stream floors). So every
guarantee of the standalone broker holds unchanged, and the load of one deployment stays
on one master; see docs/scaling.md, "Redis Cluster", for the trade-off.

Invariants:

1. Exactly one subscriber connection per instance, to the master that owns the slot
   (zero to the others); commands go to that master only.
2. Ids, history, tickets, the directory and presence behave as in the standalone broker
   (the same modules and scripts; only names and pub/sub commands differ).
3. A command sent while the slot is moving fails with MOVED/ASK/TRYAGAIN (nothing
   applied: a script is refused before it runs) and is answered 503, like an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import NoReturn

from redis.asyncio.connection import ConnectionPool
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from sse_hub.broker.redis import RedisBroker
from sse_hub.broker.redis.directory import Describe
from sse_hub.broker.redis.keyspace import Keyspace
from sse_hub.broker.redis.listener import LINGER_SECONDS
from sse_hub.broker.redis.topology import Node, cluster_slots, parse_slots
from sse_hub.config.settings import Settings
from sse_hub.errors import BrokerUnavailable
from sse_hub.messages.contract import Deliver, Lost, nothing_lost
from sse_hub.messages.message import Draft, Message

__all__ = ["RedisClusterBroker", "slot_owner"]

logger = logging.getLogger(__name__)

# How often the watch task compares the slot's owner with the one we use.
TOPOLOGY_SECONDS = 10.0


class RedisClusterBroker(RedisBroker):
    """See the module docstring. ``owner``: the master this instance talks to."""

    def __init__(
        self,
        settings: Settings,
        instance_id: str,
        *,
        describe: Describe | None = None,
        linger_seconds: float = LINGER_SECONDS,
    ) -> None:
        keyspace = Keyspace.for_cluster(settings.broker.prefix)
        super().__init__(settings, instance_id, describe=describe, linger_seconds=linger_seconds, keyspace=keyspace)
        self.slot = key_slot(keyspace.seq.encode())
        kwargs = self._redis.connection_pool.connection_kwargs
        self._entry: Node = (str(kwargs.get("host", "localhost")), int(kwargs.get("port", 6379)))
        self._known: list[Node] = []
        self.owner: Node | None = None
        self._recheck = asyncio.Event()

    async def start(self, deliver: Deliver, lost: Lost = nothing_lost) -> None:
        await super().start(deliver, lost)
        self._tasks.append(asyncio.create_task(self._watch(), name="sse-hub-redis-cluster-topology"))

    async def publish(self, drafts: Sequence[Draft]) -> list[Message]:
        try:
            return await super().publish(drafts)
        except BrokerUnavailable:
            self._recheck.set()  # MOVED, or the master is gone: is the slot elsewhere now?
            raise

    async def _locate(self) -> None:
        """Point the pool at the slot's master (see ``_find_owner``)."""
        owner = await self._find_owner()
        if owner != self.owner:
            await _retarget(self._redis.connection_pool, owner)
            logger.info("redis cluster: slot %d is served by %s:%d", self.slot, *owner)
            self.owner = owner

    async def _find_owner(self) -> Node:
        """The slot's master, from the first node that answers (the configured one, then
        every node seen in an earlier answer)."""
        failures: list[str] = []
        for node in dict.fromkeys((self._entry, *self._known)):
            try:
                slots = await self._cluster_slots(node)
            except (RedisError, OSError, TimeoutError) as exc:
                failures.append(f"{node[0]}:{node[1]}: {exc or type(exc).__name__}")
                continue
            owner, nodes = slot_owner(slots, self.slot, node[0])
            self._known = nodes
            if owner is not None:
                return owner
            failures.append(f"{node[0]}:{node[1]}: slot {self.slot} has no master")
        raise RedisConnectionError("no Redis Cluster node told the slot's owner: " + "; ".join(failures))

    async def _watch(self) -> NoReturn:
        """Drop the subscriber connection when the slot's owner is not the one we use: the
        listener task then reconnects to the new one and recovers (module docstring)."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TOPOLOGY_SECONDS):
                    await self._recheck.wait()
            self._recheck.clear()
            if not self.connected:
                continue  # reconnecting: that path locates the owner itself
            try:
                owner = await self._find_owner()
            except (RedisError, OSError, TimeoutError) as exc:
                logger.debug("redis cluster: topology check failed: %s", exc)
                continue
            if owner != self.owner and self.connected:
                logger.warning("redis cluster: slot %d moved to %s:%d; reconnecting", self.slot, *owner)
                await self.listener.close()

    async def _cluster_slots(self, node: Node) -> list[object]:
        pool = self._redis.connection_pool
        return await cluster_slots(
            pool.connection_class(**{**pool.connection_kwargs, "host": node[0], "port": node[1]})
        )


def slot_owner(slots: list[object], slot: int, asked_host: str) -> tuple[Node | None, list[Node]]:
    """From a raw ``CLUSTER SLOTS`` reply: the master serving ``slot`` (None if none), and
    every node named (masters and replicas). An empty host means the node that answered."""
    ranges, nodes = parse_slots(slots, asked_host)
    owner = next((master for start, end, master in ranges if start <= slot <= end), None)
    return owner, nodes


async def _retarget(pool: ConnectionPool, node: Node) -> None:
    """Send the pool's future connections to ``node``: close every connection (a command
    in flight fails, and is answered 503) and change where each reconnects. redis-py has
    no public way to move a pool, so this touches its connection lists."""
    pool.connection_kwargs.update(host=node[0], port=node[1])
    await pool.disconnect()
    for connection in (*pool._available_connections, *pool._in_use_connections):
        connection.host, connection.port = node  # type: ignore[attr-defined]  # TCP connections have them
