"""Which of one stream's channels have ended: the ``end`` events a ``Subscriber`` owes.

A final message ends its channels (docs/api.md#streams-that-end). A stream that gets it
(live, held or replayed) queues the message, then ``event: end`` for each of its own
channels that the message names; a stream that had ended all of them already skips the
message. Channels that had ended when the stream opened are owed their ``end`` once the
replay is written (their final message, if the replay holds it, ended them earlier). When
every channel of the stream has ended, the stream is finished: the ``Subscriber`` queues
nothing more and closes as ``finished`` once its queue is written.

Invariants:

1. At most one ``end`` per channel per stream, always after the final message when the
   stream gets that message, never before.
2. Nothing here encodes on the fan-out path: ``Fanout.dispatch`` hands every stream the same
   ``end`` chunks of a final message (``end_chunks``, built once per message).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Protocol

from sse_hub.messages import sse
from sse_hub.messages.message import Message

# The ``end`` event of each channel a final message ends, as HTTP chunks, by channel.
Ends = Mapping[str, bytes]


def end_chunk(channel: str) -> bytes:
    """``event: end`` for ``channel``, one HTTP chunk; no ``id:`` line (a control event,
    like ``connected`` and ``reset``, so the client's last event id stays the final
    message's)."""
    data = json.dumps({"channel": channel}, separators=(",", ":"))
    return sse.chunk(sse.encode_event(data, "end"))


def end_chunks(channels: Iterable[str]) -> dict[str, bytes]:
    """The ``end`` chunk of each of ``channels``: built once per final message, shared by
    every stream it reaches."""
    return {channel: end_chunk(channel) for channel in channels}


class Stream(Protocol):
    """What ending channels needs of the stream (``Subscriber``)."""

    channels: tuple[str, ...]

    def queue(self, chunk: bytes, frame_bytes: int) -> None: ...
    def send_control(self, chunk: bytes) -> None: ...
    def finish(self) -> None: ...


class Ending:
    """The ended channels of one stream, made at its first final message (most streams
    never need one)."""

    __slots__ = ("_channels", "_ended", "_stream", "owed")

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._channels = stream.channels
        self._ended: set[str] = set()
        #: Ended when the stream opened: their ``end`` follows the replay.
        self.owed: tuple[str, ...] = ()

    def offer(self, chunk: bytes, frame_bytes: int, ends: Ends) -> None:
        """A final message the stream takes live: queued, then the ``end`` of the stream's
        channels it names; skipped when none of them is open. An empty ``chunk``: the
        stream is excluded from the message (``exclude_client_id``) and gets the ends only."""
        owed = self.take(ends, ends)
        if owed and chunk:
            self._stream.queue(chunk, frame_bytes)
        self.queue(owed)

    def received(self, message: Message, taken: tuple[bytes, int] | None) -> None:
        """A final message (replayed, or a sharded broker's part), ``taken`` (its chunk and
        frame length) unless the stream is past it: queued as ``offer`` does. Its ends are
        owed even when the stream skips it (a later part of a message that the stream took
        from an earlier part)."""
        owed = self.take(message.channels)
        if owed and taken is not None:
            self._stream.queue(*taken)
        self.queue(owed)

    def settle(self) -> bool:
        """The replay is written: queue the ends owed since the stream opened; True when
        the stream has finished."""
        owed, self.owed = self.owed, ()
        self.end(owed)
        return self.complete

    def end(self, channels: Iterable[str]) -> None:
        """Queue ``end`` for those of ``channels`` that are the stream's and still open."""
        self.queue(self.take(channels))

    def queue(self, chunks: list[bytes]) -> None:
        """Queue ``end`` chunks from ``take``; the stream finishes when none is left open."""
        for chunk in chunks:
            self._stream.send_control(chunk)
        if chunks and self.complete:
            self._stream.finish()

    def take(self, channels: Iterable[str], ends: Ends | None = None) -> list[bytes]:
        """The ``end`` chunks of those of ``channels`` that are the stream's and still open
        (from ``ends``, else encoded here), which are ended from now on; empty when the
        message ends none of them (the stream must then skip it)."""
        chunks = []
        for channel in channels:
            if channel in self._channels and channel not in self._ended:
                self._ended.add(channel)
                chunks.append(end_chunk(channel) if ends is None else ends[channel])
        return chunks

    @property
    def complete(self) -> bool:
        """Every channel of the stream has ended."""
        return len(self._ended) == len(self._channels)
