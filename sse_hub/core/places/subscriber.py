"""A subscriber whose place is one position per channel (the sharded broker's streams).

``Subscriber`` keeps one integer floor; with ``broker.backend: redis-cluster`` (sharded)
there is no cluster-wide id, so this subscriber keeps ``places`` (``sse_hub/core/places/event_ids.py``)
instead, and encodes each message with the stream's own id (several channels' positions).
Everything else (states, windows, limits, the one writer) is ``Subscriber``'s.

Invariants, on top of ``Subscriber``'s:

1. ``places`` decides every message, held, replayed or live (``Places.take``), so a part
   received twice, or once live and once replayed, is sent once.
2. Streams with the same id for a message share its encoding (``offer_part``'s
   ``encoded``: one dict per dispatched message).
3. A message without positions (direct, a kick's neighbour) is sent as is, with the
   stream's current id.
"""

from __future__ import annotations

from collections.abc import Callable

from sse_hub.core.flusher import Flusher
from sse_hub.core.places.event_ids import Places
from sse_hub.core.subscriber import CloseReason, Subscriber
from sse_hub.messages import sse
from sse_hub.messages.message import Message

Encoded = dict[str, tuple[bytes, int]]


def encode(message: Message, event_id: str) -> tuple[bytes, int]:
    """The HTTP chunk of ``message`` with ``event_id``, and its SSE frame's length."""
    frame = sse.encode_event(message.data, message.event, event_id, message.retry_ms)
    return sse.chunk(frame), len(frame)


class ShardedSubscriber(Subscriber):
    __slots__ = ("_held_parts", "places")

    def __init__(
        self,
        client_id: str,
        channels: tuple[str, ...],
        ip: str,
        user_agent: str,
        flusher: Flusher,
        max_buffer_bytes: int,
        on_close: Callable[[Subscriber, CloseReason], None],
    ) -> None:
        super().__init__(client_id, channels, ip, user_agent, flusher, max_buffer_bytes, on_close)
        #: Nowhere until ``start_at``: ``places.replay`` reads where the channels are.
        self.places = Places(channels, {})
        self._held_parts: list[Message] = []

    def start_at(self, places: Places) -> None:
        """Where the stream starts (read after its channels were attached). Parts held
        meanwhile stay held: ``places`` decides them when the stream goes live."""
        self.places = places

    def offer_part(self, message: Message, encoded: Encoded) -> None:
        """Queue one received part, encoded with this stream's id (shared through
        ``encoded`` with the other streams that show the same id)."""
        if self.close_reason is not None:
            return
        if self._held is not None:
            self._held_parts.append(message)
            self._held_bytes += len(message.data)
            if self._held_bytes > self._max_buffer_bytes:
                self.close("slow", abort=True)
            return
        places = self.places
        if message.pos and not places.take(message):
            return
        event_id = places.event_id
        pair = encoded.get(event_id)
        if pair is None:
            pair = encoded[event_id] = encode(message, event_id)
        self._queue(*pair)

    def _take_replayed(self, message: Message) -> tuple[bytes, int] | None:
        if message.pos and not self.places.take(message):
            return None
        return encode(message, self.places.event_id)

    def _release_held(self) -> None:
        parts, self._held_parts = self._held_parts, []
        self._held = None
        self._held_bytes = 0
        for message in parts:
            self.offer_part(message, {})
