"""Following the cluster's topology: re-read the slot map, move misplaced subscriptions to
their new masters, and recover what they missed.

The repair task runs every ``TOPOLOGY_SECONDS``, and at once when woken (``wake``): on a
``sunsubscribe`` Redis pushed for a channel we did not leave (the slot moved), a lost
subscriber connection (a failover), or a failed publish (MOVED that redis-py could not
follow, or a master gone). Invariants:

1. A round re-reads ``CLUSTER SLOTS`` first; ``connected`` is whether some node answered.
2. Every misplaced channel (and every channel whose live parts showed a gap,
   ``Delivery.gapped``) is subscribed on its (new) master (confirmed) *before* its history
   is read after the last position delivered (``delivery.seen``; a channel with none is
   read from its oldest retained part, which the hub's streams drop by position): what
   was published before the read is in it, what came after arrives live and was held
   back (``delivery``), so nothing falls in between.
3. A round that fails keeps its channels held back and unrecovered, and the next round
   (backing off, ``backoff_delays``) takes them again: a channel is never released before
   its recovery was delivered.
4. After a recovery, a channel's counter that the (new) master holds below the last seq
   this instance delivered in the same epoch (its old master died before replicating
   them) is raised to that seq, so the lost seqs are not handed out again: instances and
   streams that saw them would drop the new messages as repeats. Publishes between the
   failover and the raise can still reuse one: Redis's asynchronous replication window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import NoReturn

from redis.asyncio import RedisCluster
from redis.exceptions import RedisError

from sse_hub.broker.redis.recovery import backoff_delays
from sse_hub.broker.redis.tasks import raise_if_cancelled
from sse_hub.broker.redis.topology import Topology
from sse_hub.broker.sharded.delivery import Delivery
from sse_hub.broker.sharded.history import read_after
from sse_hub.broker.sharded.keys import ShardKeys
from sse_hub.broker.sharded.subscriptions import Subscriptions
from sse_hub.errors import BrokerUnavailable
from sse_hub.messages.positions import NOWHERE, Position

logger = logging.getLogger(__name__)

TOPOLOGY_SECONDS = 10.0
# At most this many parts per channel are recovered after a topology change.
MAX_RECOVERED = 10_000

# Raise a channel's counter to a seq seen, in the same epoch only (invariant 4).
RAISE_SCRIPT = """#!lua
local epoch, seq = unpack(redis.call('HMGET', KEYS[1], 'e', 's'))
if epoch == ARGV[2] and tonumber(seq or '0') < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 's', ARGV[1])
  return 1
end
return 0
"""


class Repair:
    def __init__(
        self,
        cluster: RedisCluster,
        keys: ShardKeys,
        topology: Topology,
        subscriptions: Subscriptions,
        delivery: Delivery,
    ) -> None:
        self._cluster = cluster
        self._keys = keys
        self._topology = topology
        self._subscriptions = subscriptions
        self._delivery = delivery
        self._raise = cluster.register_script(RAISE_SCRIPT)
        self._wake = asyncio.Event()
        self._unrecovered: set[str] = set()
        #: Whether some cluster node answered the last slot map read.
        self.connected = False
        #: Rounds that moved or recovered channels.
        self.rounds = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> NoReturn:
        delays: Iterator[float] | None = None
        wait = TOPOLOGY_SECONDS
        while True:
            raise_if_cancelled()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._wake.clear()
            try:
                repaired = await self.round()
            except Exception:  # task boundary: repairs must go on
                logger.exception("redis cluster: repair failed")
                repaired = False
            if repaired:
                delays, wait = None, TOPOLOGY_SECONDS
            else:
                delays = delays or backoff_delays()
                wait = next(delays)

    async def round(self) -> bool:
        """One round (module docstring); True when nothing is left to do."""
        try:
            await self._topology.refresh()
        except (RedisError, OSError) as exc:
            if self.connected:
                logger.warning("redis cluster: no node answers (%s); publishing is unavailable", exc)
            self.connected = False
            return False
        self.connected = True
        subscriptions, delivery = self._subscriptions, self._delivery
        misplaced = subscriptions.misplaced()
        wanted = subscriptions.wanted
        gapped, delivery.gapped = delivery.gapped, set()
        channels = self._unrecovered | gapped | {c for sc in misplaced if (c := wanted.get(sc)) is not None}
        if not channels and not misplaced:
            await subscriptions.close_idle()
            return True
        delivery.recovering.update(channels)
        try:
            await subscriptions.position(misplaced)
            names = subscriptions.names
            after = {channel: delivery.seen.get(channel, NOWHERE) for channel in channels if channel in names}
            page = await read_after(self._cluster, self._keys, after, MAX_RECOVERED)
        except (BrokerUnavailable, RedisError, OSError) as exc:
            logger.debug("redis cluster: resubscribing failed: %s", exc)
            self._unrecovered |= channels
            delivery.recovery_failed()
            return False
        if not page.complete:
            logger.warning("redis cluster: more than %d messages were missed; not all recovered", MAX_RECOVERED)
        self._unrecovered -= channels
        delivery.recovered(channels, page.messages)
        await self._raise_counters(page.current)
        self.rounds += 1
        await subscriptions.close_idle()
        logger.info("redis cluster: resubscribed channels=%d recovered_messages=%d", len(channels), len(page.messages))
        return True

    async def _raise_counters(self, current: Mapping[str, Position]) -> None:
        """Invariant 4. A failure is logged, not retried: the next publish still works."""
        for channel, (seq, epoch) in current.items():
            seen = self._delivery.seen.get(channel)
            if seen is None or seen[1] != epoch or seen[0] <= seq:
                continue
            try:
                await self._raise(keys=[self._keys.meta(channel)], args=[seen[0], epoch])
            except (RedisError, OSError) as exc:
                logger.warning("redis cluster: could not raise the counter of %s past %d: %s", channel, seen[0], exc)
                continue
            logger.warning(
                "redis cluster: %s had lost seqs %d-%d; its counter is raised past them", channel, seq + 1, seen[0]
            )
