"""Which shard channels this instance receives, and on which master's connection.

Routing by interest, as the standalone ``listener``: a channel is subscribed while a
stream holds it (``attach``/``detach``, counted) and ``linger_seconds`` after the last one
left; the global channel ``*`` and this instance's inbox always (pinned).

Invariants:

1. At most one ``Link`` (subscriber connection) per master; each shard channel is
   subscribed on the link of the master that owned its slot when it was placed (``where``).
2. ``attach`` returns only once every channel it names is confirmed on its master
   (``BrokerUnavailable`` otherwise). Counts are taken before the first await.
3. A channel whose link was lost or whose slot moved away is ``lost`` until the broker's
   repair positions it again (``position``) and recovers it from history; ``misplaced`` names
   every wanted channel not on its current owner's link (lost ones included).
4. Bounded: ``wanted`` holds the pinned channels, those of open streams and those
   lingering; ``sweep`` unsubscribes every channel lingering past ``linger_seconds``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Collection, Mapping

from redis.crc import key_slot

from sse_hub.broker.redis.errors import unavailable
from sse_hub.broker.redis.interest import Interest
from sse_hub.broker.redis.script_connection import COMMAND_TIMEOUT_SECONDS
from sse_hub.broker.redis.topology import Node, Topology
from sse_hub.broker.sharded.keys import ShardKeys
from sse_hub.broker.sharded.link import Link
from sse_hub.errors import BrokerUnavailable
from sse_hub.messages.message import GLOBAL_CHANNEL

logger = logging.getLogger(__name__)

LINGER_SECONDS = 30.0


class Subscriptions:
    def __init__(
        self,
        keys: ShardKeys,
        topology: Topology,
        connection_kwargs: Mapping[str, object],
        instance_id: str,
        receive: Callable[[bytes], None],
        changed: Callable[[], None],
        linger_seconds: float,
    ) -> None:
        """``changed()``: a channel was lost (the broker repairs)."""
        self._keys = keys
        self._topology = topology
        self._kwargs = connection_kwargs
        self._receive = receive
        self._changed = changed
        self.linger_seconds = linger_seconds
        self.pinned = (keys.shard_channel(GLOBAL_CHANNEL), keys.inbox(instance_id))
        #: Shard channels to receive -> the channel they carry (None: the inbox).
        self.wanted: dict[str, str | None] = {self.pinned[0]: GLOBAL_CHANNEL, self.pinned[1]: None}
        #: The channels received (``*`` included): the values of ``wanted`` but the inbox.
        self.names: set[str] = {GLOBAL_CHANNEL}
        self.where: dict[str, Node] = {}
        self.lost: set[str] = set()
        self.links: dict[Node, Link] = {}
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._interest = Interest()
        self._link_locks: dict[Node, asyncio.Lock] = {}  # one opening per node at a time
        #: Set whenever nothing is lost (attach of a lost channel waits for it).
        self.settled = asyncio.Event()
        self.settled.set()

    # -- interest ---------------------------------------------------------------------

    async def attach(self, channels: Collection[str]) -> None:
        joining: list[str] = []
        repairing = False
        for channel in channels:
            self._interest.hold(channel)
            shard_channel = self._keys.shard_channel(channel)
            if shard_channel not in self.wanted:
                self.wanted[shard_channel] = channel
                self.names.add(channel)
                joining.append(shard_channel)
            elif shard_channel in self.lost:
                repairing = True  # the broker's repair positions and recovers it
            elif shard_channel in self._pending:
                joining.append(shard_channel)
        if joining:
            await self.position(joining)
        if repairing:
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
                    await self.settled.wait()
            except TimeoutError as exc:
                raise BrokerUnavailable("Redis Cluster is moving the channel's slot") from exc

    def detach(self, channels: Collection[str]) -> None:
        self._interest.release(channels, asyncio.get_running_loop().time())

    def attached(self, channel: str) -> int:
        return self._interest.holders(channel)

    async def sweep(self, now: float) -> list[str]:
        """Unsubscribe every channel lingering since before ``now - linger_seconds``;
        returns them."""
        leaving = self._interest.expired(now - self.linger_seconds)
        by_link: dict[Node, list[str]] = {}
        for channel in leaving:
            shard_channel = self._keys.shard_channel(channel)
            if shard_channel in self.pinned:
                continue
            self.wanted.pop(shard_channel, None)
            self.names.discard(channel)
            self.lost.discard(shard_channel)
            node = self.where.pop(shard_channel, None)
            if node is not None and node in self.links:
                by_link.setdefault(node, []).append(shard_channel)
        if not self.lost:
            self.settled.set()
        for node, shard_channels in by_link.items():
            await self.links[node].unsubscribe(shard_channels)
        return leaving

    # -- placement --------------------------------------------------------------------

    def misplaced(self) -> list[str]:
        owner, where = self._topology.owner, self.where
        return [sc for sc in self.wanted if sc in self.lost or where.get(sc) != owner(key_slot(sc.encode()))]

    async def position(self, shard_channels: Collection[str]) -> None:
        """Subscribe each (wanted) shard channel on its slot's master, leaving the link it
        was on; returns once all are confirmed. Raises ``BrokerUnavailable``."""
        by_node: dict[Node, list[str]] = {}
        waits: list[asyncio.Future[None]] = []
        for shard_channel in shard_channels:
            if shard_channel not in self.wanted:
                continue
            owner = self._topology.owner(key_slot(shard_channel.encode()))
            if owner is None:
                raise BrokerUnavailable("no Redis Cluster master serves the channel's slot")
            current = self.where.get(shard_channel)
            pending = self._pending.get(shard_channel)
            if current == owner and shard_channel not in self.lost:
                if pending is not None:
                    waits.append(pending)
                continue
            if current is not None and current != owner and current in self.links:
                await self.links[current].unsubscribe([shard_channel])
            by_node.setdefault(owner, []).append(shard_channel)
        with unavailable("Redis Cluster did not confirm the subscription", cause=True):
            for node, joining in by_node.items():
                link = await self._link(node)
                for shard_channel in joining:
                    self.where[shard_channel] = node
                futures = await link.subscribe(joining)
                for shard_channel, future in zip(joining, futures, strict=True):
                    self._pending[shard_channel] = future
                    future.add_done_callback(functools.partial(self._settle, shard_channel))
                waits += futures
            async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
                await asyncio.gather(*map(asyncio.shield, waits))

    def _settle(self, shard_channel: str, future: asyncio.Future[None]) -> None:
        if self._pending.get(shard_channel) is future:
            del self._pending[shard_channel]
        if not future.cancelled() and future.exception() is None:
            self.lost.discard(shard_channel)
            if not self.lost:
                self.settled.set()

    async def _link(self, node: Node) -> Link:
        async with self._link_locks.setdefault(node, asyncio.Lock()):
            link = self.links.get(node)
            if link is None or link.closed:
                link = Link(node, self._kwargs, self._receive, self._moved, self._lost)
                await link.open()
                self.links[node] = link
            return link

    async def close_idle(self) -> None:
        """Close the links of nodes that are not masters any more and hold nothing."""
        masters = self._topology.masters
        for node, link in list(self.links.items()):
            if node not in masters and not link.channels:
                del self.links[node]
                await link.close()

    async def close(self) -> None:
        links, self.links = list(self.links.values()), {}
        for link in links:
            await link.close()

    # -- what the links report -------------------------------------------------------

    def _moved(self, link: Link, shard_channel: str) -> None:
        if self.where.get(shard_channel) == link.node and shard_channel in self.wanted:
            logger.warning("redis cluster: %s:%d unsubscribed a channel (its slot moved)", *link.node)
            self._lose([shard_channel])

    def _lost(self, link: Link) -> None:
        if self.links.get(link.node) is link:
            del self.links[link.node]
        self._lose([sc for sc, node in self.where.items() if node == link.node])

    def _lose(self, shard_channels: list[str]) -> None:
        for shard_channel in shard_channels:
            self.where.pop(shard_channel, None)
            if shard_channel in self.wanted:
                self.lost.add(shard_channel)
        if self.lost:
            self.settled.clear()
        self._changed()
