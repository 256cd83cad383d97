"""Mercure updates between Redis instances: which pub/sub channels an update goes to, and
listening on the shared feed beside instances of wire version 1.

An update is stored once, in the history of the feed (``P:history:~mercure``), and
published to the feed's pub/sub channel and to the routing name of each of its topics
(``messages.mercure.route_channel``). A stream attaches the routing names of its exact
topics, or the feed when it has a pattern (``mercure.fanout.interest``), so an instance
hears only what its streams may match.

Invariants:

1. Every update goes to the feed: streams with patterns, and instances of wire version 1,
   listen only there (``keyspace``, "Wire version").
2. While an instance of wire version 1 is live (``Directory.older_peers``), this instance
   holds the feed, and a stream attaching routing names returns only once the feed is
   subscribed too: that instance publishes to the feed only. Streams that held routing
   names when it appeared are ended (they resume from history, without gap), since its
   first updates (within one presence period) may have reached only the feed.
3. Plain channels pay one attribute test per publish and per own message back; the memory
   broker none of this.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable

from sse_hub.broker.redis.keyspace import Keyspace
from sse_hub.broker.redis.listener import Listener
from sse_hub.messages.mercure import FEED_CHANNEL, ROUTE_PREFIX, route_channel
from sse_hub.messages.message import Message

logger = logging.getLogger(__name__)


class MercureRouting:
    """``lost()``: end every stream, so that each resumes from history (invariant 2)."""

    def __init__(self, listener: Listener, keyspace: Keyspace, lost: Callable[[], None]) -> None:
        self._listener = listener
        self._keys = keyspace
        self._lost = lost
        self.older_peers = False

    def topics(self, topics: Iterable[str]) -> list[str]:
        """An update's pub/sub channels: the feed's, then each topic's routing name, once."""
        names = dict.fromkeys((FEED_CHANNEL, *map(route_channel, topics)))
        return [self._keys.topic(name) for name in names]

    def comes_back(self, message: Message) -> bool:
        """Whether ``message``, published now, would reach this instance's listener."""
        if message.client_id is not None:
            return False
        meta = message.mercure
        if meta is None:
            return self._listener.receives(message.channels)
        return self._listener.receives((FEED_CHANNEL, *map(route_channel, meta.topics)))

    async def attach(self, channels: Collection[str]) -> None:
        """``Listener.attach``, and the feed's subscription too where invariant 2 wants it
        (the extra hold is given back: the one kept by ``older_peers_changed`` stays)."""
        if not (self.older_peers and any(channel.startswith(ROUTE_PREFIX) for channel in channels)):
            await self._listener.attach(channels)
            return
        try:
            await self._listener.attach([*channels, FEED_CHANNEL])
        finally:
            self._listener.detach([FEED_CHANNEL])

    def older_peers_changed(self, present: bool) -> None:
        """Invariant 2: hold the feed while an instance of wire version 1 is live."""
        self.older_peers = present
        if not present:
            self._listener.detach([FEED_CHANNEL])
            return
        self._listener.hold([FEED_CHANNEL])
        if any(channel.startswith(ROUTE_PREFIX) for channel in self._listener.subscribed):
            logger.warning("redis: an instance of wire version 1 is live; ending the streams so that they resume")
            self._lost()
