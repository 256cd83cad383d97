"""How a stream whose position is one position per channel takes messages (the sharded
broker's streams): a ``Placement`` that the ``Subscriber`` uses.

``Subscriber`` keeps one integer floor; with ``broker.cluster_mode: sharded`` there is no
cluster-wide id, so such a stream's subscriber is given ``ChannelPlacement``, which keeps
``positions`` (``sse_hub/core/positions/event_ids.py``) and encodes each message with the
stream's own id (several channels' positions). Everything else (states, windows, limits,
the one writer) is the ``Subscriber``'s, through the methods of ``streams.Holder``.

Invariants:

1. ``positions`` decides every message, held, replayed or live (``StreamPosition.take``), so a part
   received twice, or once live and once replayed, is sent once.
2. Streams with the same id for a message share its encoding (``offer``'s ``encoded``:
   one dict per dispatched message).
3. A message without positions (direct, a kick's neighbour) is sent as is, with the
   stream's current id. A Mercure update (on a Mercure stream, whose one channel is the
   feed) moves the positions like any part but keeps its own id on the wire, the
   publisher's or ``#<seq>.<epoch>`` (``Message.chunk``, encoded once for every stream).
4. What is held before the stream is live counts against its buffer
   (``Subscriber.hold``), as for one sequence.
5. A final part is followed by the ``end`` of the stream's channels it names, also when
   the stream skips it (a later part of a message it took from an earlier part, or a
   message that excludes the stream's client), and nothing follows once every channel of
   the stream ended (``core/ending.py``).
"""

from __future__ import annotations

from sse_hub.core.positions.event_ids import StreamPosition
from sse_hub.core.streams import Holder
from sse_hub.messages import sse
from sse_hub.messages.message import Message

Encoded = dict[str, tuple[bytes, int]]


def encode(message: Message, event_id: str) -> tuple[bytes, int]:
    """The HTTP chunk of ``message`` with ``event_id``, and its SSE frame's length."""
    frame = sse.encode_event(message.data, message.event, event_id, message.retry_ms)
    return sse.chunk(frame), len(frame)


class ChannelPlacement:
    __slots__ = ("_finished", "_held", "positions")

    def __init__(self, channels: tuple[str, ...]) -> None:
        #: Nowhere until ``start_at``: ``positions.replay`` reads where the channels are.
        self.positions = StreamPosition(channels, {})
        self._held: list[tuple[Message, bool]] = []
        self._finished = False

    def start_at(self, positions: StreamPosition) -> None:
        """Where the stream starts (read after its channels were attached). Parts held
        meanwhile stay held: ``positions`` decides them when the stream goes live."""
        self.positions = positions

    def offer(self, subscriber: Holder, message: Message, encoded: Encoded, excluded: bool = False) -> None:
        """Queue one received part for ``subscriber``, encoded with its id (shared through
        ``encoded`` with the other streams that show the same id). ``excluded``: a final part
        that excludes the stream's client: it moves the positions and owes its ends, but is not
        sent (as ``Fanout.dispatch`` does on one sequence)."""
        if subscriber.close_reason is not None or self._finished:
            return
        if subscriber.holding:
            self._held.append((message, excluded))
            subscriber.hold(0 if excluded else len(message.data))
            return
        positions = self.positions
        pair: tuple[bytes, int] | None = None
        if (not message.pos or positions.take(message)) and not excluded:
            if message.mercure is not None:
                pair = (message.chunk, message.frame_bytes)
            else:
                event_id = positions.event_id
                pair = encoded.get(event_id)
                if pair is None:
                    pair = encoded[event_id] = encode(message, event_id)
        if message.final:
            self._received_final(subscriber, message, pair)
        elif pair is not None:
            subscriber.queue(*pair)

    def take_replayed(self, stream: Holder, message: Message) -> tuple[bytes, int] | None:
        pair = None
        if not message.pos or self.positions.take(message):
            mercure = message.mercure is not None
            pair = (message.chunk, message.frame_bytes) if mercure else encode(message, self.positions.event_id)
        if not message.final:
            return pair
        self._received_final(stream, message, pair)
        return None

    def _received_final(self, stream: Holder, message: Message, pair: tuple[bytes, int] | None) -> None:
        """Queue a final part (``pair``, unless the stream skips it) and its ends; once every
        channel of the stream ended, nothing more is taken."""
        ending = stream.ending
        ending.received(message, pair)
        self._finished = ending.complete

    def release(self, subscriber: Holder) -> None:
        parts, self._held = self._held, []
        for message, excluded in parts:
            self.offer(subscriber, message, {}, excluded)
