"""One subscriber: its channels, its outgoing bytes, its counters.

A subscriber moves through three states, one way (and may finish in the last two):

- **holding** (registered, response not started): live messages are kept, with their
  ids, so that a replay read from history meanwhile can be followed by them with no gap.
- **replaying** (``go_live`` with a replay): the preamble, then the replay, fed to the
  socket as the client drains it, at most ``REPLAY_WINDOW_BYTES`` beyond what the kernel
  holds (the stream handler wakes the feed when the transport drains, and reads the next
  page of history when one is used up: ``needs_page``); live messages are still held.
- **live**: what was held, then every message as it is offered.
- **finishing**: every channel ended (``core/ending.py``); closes once its queue is written.

Invariants:

1. Exactly one writer per socket: only ``Subscriber.flush`` writes to the transport; the
   HTTP handler only waits (for the transport to drain during a replay), and the chunked
   terminator is written once the subscriber is closed (by aiohttp, or by
   ``StreamProtocol`` once the stream was handed over).
2. Nothing here awaits. ``offer`` appends pre-encoded bytes to the outbox and marks the
   subscriber dirty; the shared ``Flusher`` writes every dirty outbox once per loop
   iteration, so messages published together leave in one ``write`` per socket.
3. Ids only go up on a stream: the floor is the id the client resumed from, then the last
   id queued; an offer at or below it is dropped, on every path (held, replayed, live,
   and after the instance's own reconnect to its broker).
4. Memory is bounded: held messages and the transport's backlog each stay within
   ``client_buffer_bytes`` (over it: closed as ``slow``); a replay never holds more than
   the window in the transport, however long it is. A stream whose backlog the client
   does not read for ``stall_seconds`` is closed as ``slow`` (``tick``).

``messages_sent`` and ``bytes_sent`` count published messages queued for this client,
live or replayed (their SSE frames, without HTTP chunk framing); the preamble, ``reset``
and heartbeats are not messages and are not counted.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterator, Sequence

from sse_hub.core.ending import Ending, Ends
from sse_hub.core.flusher import Flusher
from sse_hub.core.liveness import Progress
from sse_hub.core.streams import HEARTBEAT_CHUNK, CloseReason, Placement, Transport
from sse_hub.messages.message import Message

# Replay bytes handed to the transport beyond what the kernel took: enough to keep a reading
# client's socket busy between two drain wake-ups, little for one that stops reading.
REPLAY_WINDOW_BYTES = 64 * 1024


class Subscriber:
    __slots__ = (
        "_closed",
        "_ending",
        "_floor",
        "_flusher",
        "_held",
        "_held_bytes",
        "_max_buffer_bytes",
        "_on_close",
        "_outbox",
        "_progress",
        "_replay",
        "_replay_complete",
        "_replay_window",
        "_transport",
        "bytes_sent",
        "channels",
        "client_id",
        "close_reason",
        "connected_at",
        "ip",
        "last_activity",
        "messages_sent",
        "placement",
        "user_agent",
    )

    def __init__(
        self,
        client_id: str,
        channels: tuple[str, ...],
        ip: str,
        user_agent: str,
        flusher: Flusher,
        max_buffer_bytes: int,
        on_close: Callable[[Subscriber, CloseReason], None],
        placement: Placement | None = None,
    ) -> None:
        self.client_id = client_id
        self.channels = channels
        self.ip = ip
        self.user_agent = user_agent
        self.connected_at = time.time()
        self.last_activity = self.connected_at
        self.messages_sent = 0
        self.bytes_sent = 0
        self.close_reason: CloseReason | None = None
        self._transport: Transport | None = None
        self._outbox: list[bytes] = []
        self._held: list[tuple[int, bytes, int, Ends | None]] | None = []
        self._held_bytes = 0
        self._floor = 0
        self._ending: Ending | None = None
        self._replay: Iterator[Message] | None = None
        self._replay_complete = True
        self._replay_window = min(REPLAY_WINDOW_BYTES, max(1, max_buffer_bytes // 2))
        self._progress = Progress(self.connected_at)
        self._flusher = flusher
        self._max_buffer_bytes = max_buffer_bytes
        self._closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._on_close = on_close
        #: None: one id sequence, the floor below decides; else the stream's positions do.
        self.placement = placement

    def offer(self, message_id: int, chunk: bytes, frame_bytes: int, ends: Ends | None = None) -> None:
        """Queue one encoded message; never awaits, never raises for a dead client.
        ``frame_bytes`` is the SSE frame's length inside ``chunk``, for ``bytes_sent``;
        ``ends``: it is a final message, these are its ``end`` chunks (``core/ending.py``)."""
        if message_id <= self._floor:
            return
        held = self._held
        if held is not None:
            held.append((message_id, chunk, frame_bytes, ends))
            self.hold(len(chunk))
            return
        self._floor = message_id
        if ends is not None:
            self.ending.offer(chunk, frame_bytes, ends)
            return
        outbox = self._outbox
        if not outbox:
            self._flusher.mark(self)
        outbox.append(chunk)
        self.messages_sent += 1
        self.bytes_sent += frame_bytes

    @property
    def ending(self) -> Ending:
        if self._ending is None:
            self._ending = Ending(self)
        return self._ending

    def finish(self) -> None:
        """Every channel ended: queue nothing more (the rest of a replay, what was held, a
        later global broadcast); ``flush`` closes the stream once the queue is written."""
        self._floor = sys.maxsize
        self._replay, self._replay_complete = None, True
        self._held, self._held_bytes = None, 0

    @property
    def holding(self) -> bool:
        """Live messages wait until the replay is written (``go_live``)."""
        return self._held is not None

    def hold(self, size: int) -> None:
        """``size`` bytes held (by ``offer``, or the placement): within the buffer limit."""
        self._held_bytes += size
        if self._held_bytes > self._max_buffer_bytes:
            self.close("slow", abort=True)

    def queue(self, chunk: bytes, frame_bytes: int) -> None:
        """Queue a published message's chunk (``offer`` does the same inline: hot path)."""
        if not self._outbox:
            self._flusher.mark(self)
        self._outbox.append(chunk)
        self.messages_sent += 1
        self.bytes_sent += frame_bytes

    def flush(self, now: float) -> None:
        """Write the outbox (while replaying, with the next slice of the replay after it)."""
        transport = self._transport
        if transport is None:
            return
        replay = self._replay
        if replay is not None:
            self._feed_replay(transport, replay)
        outbox = self._outbox
        if not outbox:
            return
        data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
        outbox.clear()
        if transport.is_closing():
            self.close("disconnected")
            return
        transport.write(data)
        self._progress.wrote(len(data))
        self.last_activity = now
        if self._ending is not None and self._ending.complete:
            self.close("finished")
        elif self._replay is None and transport.get_write_buffer_size() > self._max_buffer_bytes:
            self.close("slow", abort=True)

    def _feed_replay(self, transport: Transport, replay: Iterator[Message]) -> None:
        """Queue the next replayed messages, up to the window beyond what the kernel took;
        when the replay is done, queue what was held and go live."""
        outbox = self._outbox
        budget = self._replay_window - transport.get_write_buffer_size() - sum(map(len, outbox))
        while budget > 0 and self._replay is replay:  # (a final message may finish the stream)
            message = next(replay, None)
            if message is None:
                self._replay = None
                if self._replay_complete:
                    self._release_held()
                return
            taken = self._take_replayed(message)
            if taken is None:
                continue
            chunk, frame_bytes = taken
            outbox.append(chunk)
            budget -= len(chunk)
            self.messages_sent += 1
            self.bytes_sent += frame_bytes

    def _take_replayed(self, message: Message) -> tuple[bytes, int] | None:
        """A replayed message's chunk and frame length, None when the stream is past it (the
        floor or positions move past it) or it is final (``Ending.received`` queues it)."""
        if self.placement is not None:
            return self.placement.take_replayed(self, message)
        taken = None if message.id <= self._floor else (message.chunk, message.frame_bytes)
        self._floor = max(self._floor, message.id)
        if not message.final:
            return taken
        self.ending.received(message, taken)
        return None

    def _release_held(self) -> None:
        held, self._held = self._held or [], None
        self._held_bytes = 0
        if self._ending is not None and self._ending.settle():
            return  # finished
        if self.placement is not None:
            self.placement.release(self)
            return
        for entry in held:
            self.offer(*entry)

    def resume_after(self, message_id: int) -> None:
        """The client has seen every message up to this id: none of them is sent again."""
        if message_id > self._floor:
            self._floor = message_id

    def go_live(
        self, transport: Transport, preamble: Sequence[bytes], replay: Sequence[Message] = (), complete: bool = True
    ) -> None:
        """Start writing: the preamble, the replay (fed as the client drains it; ``complete``
        False when more pages follow), then what was held, skipping ids already sent."""
        if self.close_reason is not None:
            return  # closed while the replay was read (kicked, or slow while holding)
        self._transport = transport
        self._progress.restart(time.time())
        for chunk in preamble:
            self._send(chunk)
        if replay or not complete:
            # The transport pauses its protocol above the window, so the stream handler's
            # drain() wakes the feed when the client has read most of it.
            transport.set_write_buffer_limits(high=self._replay_window // 2)
            self.extend_replay(replay, complete)
        else:
            self._release_held()

    def extend_replay(self, page: Sequence[Message], complete: bool) -> None:
        """The next page of the replay (``complete``: the last one)."""
        self._replay = iter(page)
        self._replay_complete = complete
        if not self._outbox:
            self._flusher.mark(self)

    @property
    def replaying(self) -> bool:
        """The replay is not all handed to the transport yet."""
        return (self._replay is not None or not self._replay_complete) and self.close_reason is None

    @property
    def needs_page(self) -> bool:
        """The page is written and more history follows: read the one after ``replay_cursor``."""
        return self._replay is None and not self._replay_complete and self.close_reason is None

    @property
    def replay_cursor(self) -> int:
        """The last id queued for this stream (or the id it resumed from)."""
        return self._floor

    def feed(self) -> None:
        """The transport drained: write the next slice of the replay now."""
        self.flush(time.time())

    def send_control(self, chunk: bytes) -> None:
        """Queue bytes that are not a published message (a shutdown retry block, an ``end``);
        dropped before the stream is live."""
        if self._transport is not None:
            self._send(chunk)

    def _send(self, chunk: bytes) -> None:
        if self.close_reason is not None:
            return
        if not self._outbox:
            self._flusher.mark(self)
        self._outbox.append(chunk)

    def tick(self, now: float, ping_before: float, stalled_before: float) -> None:
        """Heartbeat timer: close a stalled stream (``core/liveness.py``), ping one silent since
        ``ping_before``, notice a transport that went away without the handler hearing of it."""
        transport = self._transport
        if transport is None:
            return
        if transport.is_closing():
            self.close("disconnected")
            return
        if self._progress.stalled(transport.get_write_buffer_size(), now, stalled_before):
            self.close("slow", abort=True)
            return
        if self.last_activity < ping_before and not self._outbox:
            self._send(HEARTBEAT_CHUNK)

    @property
    def buffered_bytes(self) -> int:
        transport = self._transport
        pending = sum(map(len, self._outbox)) + self._held_bytes
        return pending + (transport.get_write_buffer_size() if transport is not None else 0)

    def close(self, reason: CloseReason, abort: bool = False) -> None:
        """Stop this stream. Graceful closes write what is queued first; ``abort`` drops it."""
        if self.close_reason is not None:
            return
        if not abort:
            self._replay = None  # a graceful end does not wait for the rest of a replay
            self.flush(time.time())
            if self.close_reason is not None:
                return
        self.close_reason = reason
        self._outbox.clear()
        self._held = None
        self._replay = None
        # Until the handler releases it, dispatch may still offer to this subscriber: the floor
        # drops those too, free on the hot path, so nothing follows the stream's last chunk.
        self._floor = sys.maxsize
        if abort and self._transport is not None:
            self._transport.abort()
        if not self._closed.done():
            self._closed.set_result(reason)
        self._on_close(self, reason)

    def wait_closed(self) -> asyncio.Future[str]:
        """Resolves with the close reason. Not shielded (saves a future and a callback per
        connection): a cancelled handler cancels it; ``close`` sets only an undone one."""
        return self._closed
