"""Fan-out: which of this instance's subscribers a message is for, and handing it to them.

Invariants (the hub's 2 and 7, ``core/hub.py``):

1. ``dispatch`` is synchronous and never awaits; it encodes each message once
   (``Message.chunk``) and hands the same bytes to every subscriber, and a final message's
   ``end`` events once per message (``core/ending.py``). A stream its publisher excluded
   gets the ends without the message.
2. A Mercure update goes only to the subscribers the Mercure index picks, and a plain
   message never reaches a Mercure subscriber (global broadcasts skip them).
3. ``observe`` is called once per dispatched message that carries its publish time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from sse_hub.core.ending import end_chunks
from sse_hub.core.mercure_index import NoMercure
from sse_hub.core.registry import Registry
from sse_hub.core.subscriber import Subscriber
from sse_hub.messages.message import GLOBAL_CHANNEL, Message

if TYPE_CHECKING:  # loaded only with Mercure on (``core/mercure_index.py``)
    from sse_hub.mercure.fanout import MercureIndex


class Fanout:
    """``observe``: called with the seconds from a message's publish to its fan-out."""

    def __init__(
        self,
        registry: Registry,
        mercure: MercureIndex[Subscriber] | NoMercure,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self._registry = registry
        self._mercure = mercure
        self.observe = observe

    def dispatch(self, message: Message) -> None:
        """Hand one message to every subscriber it is for (invariant 1)."""
        if message.kick:
            target = self._registry.get(message.client_id or "")
            if target is not None:
                target.close("kicked")
            return
        observe = self.observe
        if observe is not None and message.published_at:
            observe(time.time() - message.published_at)
        targets = self.targets(message)
        if not targets:
            return
        chunk = message.chunk
        frame_bytes = message.frame_bytes
        message_id = message.id
        exclude = message.exclude_client_id
        if message.final:
            ends = end_chunks(message.channels)
            for subscriber in targets:
                excluded = subscriber.client_id == exclude
                subscriber.offer(message_id, b"" if excluded else chunk, frame_bytes, ends)
        elif exclude is None:
            for subscriber in targets:
                subscriber.offer(message_id, chunk, frame_bytes)
        else:
            for subscriber in targets:
                if subscriber.client_id != exclude:
                    subscriber.offer(message_id, chunk, frame_bytes)

    def targets(self, message: Message) -> Collection[Subscriber]:
        """The local subscribers a message is for (before ``exclude_client_id``)."""
        mercure = message.mercure
        if mercure is not None:  # the Mercure index picks (invariant 2)
            return self._mercure.targets(mercure.topics, mercure.private)
        registry = self._registry
        if message.client_id is not None:
            subscriber = registry.get(message.client_id)
            return (subscriber,) if subscriber is not None else ()
        channels = message.channels
        if channels == (GLOBAL_CHANNEL,):
            if self._mercure:  # Mercure streams speak Mercure only
                return [subscriber for subscriber in registry.all() if subscriber not in self._mercure]
            return registry.all()
        if len(channels) == 1:
            return registry.on_channel(channels[0])
        union: set[Subscriber] = set()
        for channel in channels:
            union.update(registry.on_channel(channel))
        return union
