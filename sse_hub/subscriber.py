"""One subscriber: its channels, its outgoing bytes, its counters.

Invariants:

1. Exactly one writer per socket: only ``Subscriber.flush`` writes to the transport once
   the stream is live; the HTTP handler only parks on ``wait_closed``.
2. Nothing here awaits. ``offer`` appends pre-encoded bytes to the outbox and marks the
   subscriber dirty; the shared ``Flusher`` writes every dirty outbox once per loop
   iteration, so messages published together leave in one ``write`` per socket.
3. The buffer is bounded: the bytes the kernel has not taken yet (the transport's write
   buffer) plus, before the stream is live, the held live messages. Over
   ``client_buffer_bytes`` the subscriber is closed as ``slow``; it never blocks others.
   A replay burst is allowed on top, shrinking as the client reads it.
4. Until ``go_live`` the subscriber holds live messages (with their ids) so that a replay
   from history can be followed by them with no gap and no duplicate.

``messages_sent`` and ``bytes_sent`` count published messages queued for this client
(their SSE frames, without HTTP chunk framing); the preamble, ``reset`` and heartbeats
are not messages and are not counted.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from sse_hub import sse
from sse_hub.models import Message

HEARTBEAT_CHUNK = sse.chunk(sse.HEARTBEAT)


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...
    def is_closing(self) -> bool: ...
    def abort(self) -> None: ...
    def get_write_buffer_size(self) -> int: ...


# Sockets written per loop iteration. A message to 10,000 subscribers is 10,000 writes
# (~100 ms of one core); writing them in rounds lets the loop read the next publishes in
# between, and whatever they add to a subscriber still waiting joins its outbox, so one
# write carries several messages (bench: S4 p99 about halved; docs/performance.md).
MAX_WRITES_PER_ROUND = 1000


class Flusher:
    """Writes every dirty subscriber's outbox once, in rounds of at most
    ``MAX_WRITES_PER_ROUND`` sockets per loop iteration, oldest first."""

    __slots__ = ("_dirty", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[Subscriber] = []
        self._scheduled = False

    def mark(self, subscriber: Subscriber) -> None:
        self._dirty.append(subscriber)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        dirty = self._dirty
        if len(dirty) > MAX_WRITES_PER_ROUND:
            batch = dirty[:MAX_WRITES_PER_ROUND]
            del dirty[:MAX_WRITES_PER_ROUND]
            asyncio.get_running_loop().call_soon(self.flush)  # still scheduled: the rest next iteration
        else:
            batch, self._dirty = dirty, []
            self._scheduled = False
        now = time.time()
        for subscriber in batch:
            subscriber.flush(now)


class Subscriber:
    __slots__ = (
        "_closed",
        "_flusher",
        "_held",
        "_held_bytes",
        "_max_buffer_bytes",
        "_on_close",
        "_outbox",
        "_replay_allowance",
        "_skip_through",
        "_transport",
        "bytes_sent",
        "channels",
        "client_id",
        "close_reason",
        "connected_at",
        "ip",
        "last_activity",
        "messages_sent",
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
        on_close: Callable[[Subscriber, str], None],
    ) -> None:
        self.client_id = client_id
        self.channels = channels
        self.ip = ip
        self.user_agent = user_agent
        self.connected_at = time.time()
        self.last_activity = self.connected_at
        self.messages_sent = 0
        self.bytes_sent = 0
        self.close_reason: str | None = None
        self._transport: Transport | None = None
        self._outbox: list[bytes] = []
        self._held: list[tuple[int, bytes, int]] | None = []
        self._held_bytes = 0
        self._skip_through = 0
        self._replay_allowance = 0
        self._flusher = flusher
        self._max_buffer_bytes = max_buffer_bytes
        self._closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._on_close = on_close

    # -- hot path ---------------------------------------------------------------------

    def offer(self, message_id: int, chunk: bytes, frame_bytes: int) -> None:
        """Queue one encoded message; never awaits, never raises for a dead client.
        ``frame_bytes`` is the SSE frame's length inside ``chunk``, for ``bytes_sent``."""
        if message_id <= self._skip_through:
            return
        held = self._held
        if held is not None:
            held.append((message_id, chunk, frame_bytes))
            self._held_bytes += len(chunk)
            if self._held_bytes > self._max_buffer_bytes:
                self.close("slow", abort=True)
            return
        outbox = self._outbox
        if not outbox:
            self._flusher.mark(self)
        outbox.append(chunk)
        self.messages_sent += 1
        self.bytes_sent += frame_bytes

    def flush(self, now: float) -> None:
        outbox = self._outbox
        transport = self._transport
        if not outbox or transport is None:
            return
        data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
        outbox.clear()
        if transport.is_closing():
            self.close("disconnected")
            return
        transport.write(data)
        self.last_activity = now
        backlog = transport.get_write_buffer_size()
        allowance = self._replay_allowance
        if allowance and backlog < allowance:
            # The replay sits at the front of the backlog, so it is at most the smallest
            # backlog seen since: the allowance shrinks as the client reads it.
            self._replay_allowance = allowance = backlog
        if backlog > self._max_buffer_bytes + allowance:
            self.close("slow", abort=True)

    # -- lifecycle --------------------------------------------------------------------

    def go_live(self, transport: Transport, preamble: Sequence[bytes], replay: Sequence[Message] = ()) -> None:
        """Start writing: the preamble chunks, the replayed messages, then what was held
        meanwhile, skipping held ids already replayed."""
        if self.close_reason is not None:
            return  # closed while the replay was read (kicked, or slow while holding)
        self._transport = transport
        held, self._held = self._held or [], None
        self._held_bytes = 0
        for chunk in preamble:
            self._send(chunk)
        for message in replay:
            self.offer(message.id, message.chunk, message.frame_bytes)
        if replay:
            self._skip_through = replay[-1].id
            # History goes out in one burst that may exceed the buffer limit by itself;
            # only the backlog beyond it means the client is slow. Without this allowance
            # a client owed more than client_buffer_bytes would be cut off on every
            # reconnect and never catch up.
            self._replay_allowance = sum(len(message.chunk) for message in replay)
        for message_id, chunk, frame_bytes in held:
            self.offer(message_id, chunk, frame_bytes)

    def send_control(self, chunk: bytes) -> None:
        """Queue bytes that are not a published message (a shutdown retry block); dropped
        before the stream is live."""
        if self._held is None:
            self._send(chunk)

    def _send(self, chunk: bytes) -> None:
        if self.close_reason is not None:
            return
        if not self._outbox:
            self._flusher.mark(self)
        self._outbox.append(chunk)

    def tick(self, ping_before: float) -> None:
        """Heartbeat timer: ping if nothing was written since ``ping_before``; notice a
        transport that went away without the handler hearing of it."""
        transport = self._transport
        if transport is None:
            return
        if transport.is_closing():
            self.close("disconnected")
        elif self.last_activity < ping_before and not self._outbox:
            self._send(HEARTBEAT_CHUNK)

    @property
    def buffered_bytes(self) -> int:
        transport = self._transport
        pending = sum(map(len, self._outbox)) + self._held_bytes
        return pending + (transport.get_write_buffer_size() if transport is not None else 0)

    def close(self, reason: str, abort: bool = False) -> None:
        """Stop this stream. Graceful closes write what is queued first; ``abort`` drops it."""
        if self.close_reason is not None:
            return
        if not abort:
            self.flush(time.time())
            if self.close_reason is not None:
                return
        self.close_reason = reason
        self._outbox.clear()
        self._held = None
        # Until the handler releases it, dispatch may still offer to this subscriber; the
        # id check that skips replayed messages drops those too, at no cost to the hot path,
        # so nothing is written after the stream's last chunk.
        self._skip_through = sys.maxsize
        if abort and self._transport is not None:
            self._transport.abort()
        if not self._closed.done():
            self._closed.set_result(reason)
        self._on_close(self, reason)

    def wait_closed(self) -> asyncio.Future[str]:
        """Resolves with the close reason. Not shielded: a cancelled handler cancels it,
        and ``close`` only sets a result on a future that is not done (saves a future and
        a callback per connection)."""
        return self._closed
