"""A live stream's connection, held by a small protocol of ours instead of aiohttp.

While a request runs, aiohttp keeps its request handler (parser, queues, timers), the
request and response objects, two tasks and every coroutine frame of the handler and its
middlewares: about 10 KB per connection, for the whole life of a stream that only waits
(docs/performance.md, S3). Once a stream is live (head written, replay fed),
``hand_over`` gives its socket to a ``StreamProtocol`` and lets aiohttp finish the request
as it does for a client that went away: the handler returns, aiohttp writes the access-log
line, its request task ends and everything it held for the request is freed.

aiohttp has no supported way to detach a connection. ``hand_over`` uses only public names,
and puts aiohttp's request handler in the state it is in after a connection is lost: its
``transport`` is None, so it neither writes, reads nor closes the socket (its final chunk
fails as a client disconnection would, which it logs and ends on), and once its request
task has ended it is told ``connection_lost``, which removes it from the server's
connections. tests/app/test_stream_protocol.py pins this against the installed aiohttp.

Invariants:

1. After the handover aiohttp holds nothing of the connection: the transport calls this
   protocol only, and the server's ``connections`` no longer lists it (the drain counts it in the
   app's ``Connections``).
2. Exactly one writer per socket: ``Subscriber.flush`` while the stream is open; once the
   subscriber is closed (it never writes again), this protocol writes the chunked
   terminator, once, unless the transport is already closing (an abort, a lost client).
3. The stream's response said ``Connection: close``: after its terminator the connection
   closes; bytes the client sends meanwhile are dropped (no request after a stream is
   answered, RFC 9112, 9.6).
4. ``Hub.release`` runs exactly once per handed-over stream, when its subscriber closes
   (the loss of the connection closes it); the token's expiry timer moves here with it.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from sse_hub.core.hub import Hub
from sse_hub.core.subscriber import Subscriber
from sse_hub.web.connections import Connections
from sse_hub.web.state import CONNECTIONS

# The last chunk of a chunked body (RFC 9112, 7.1): the stream ended as a complete response.
CHUNKED_END = b"0\r\n\r\n"


class StreamProtocol(asyncio.Protocol):
    """Owns a live stream's transport: ends the response and releases the subscriber when
    the subscriber closes; closes the subscriber when the connection is lost."""

    __slots__ = ("_connections", "_expiry", "_hub", "_subscriber", "_transport")

    def __init__(
        self,
        hub: Hub,
        subscriber: Subscriber,
        transport: asyncio.Transport,
        expiry: asyncio.TimerHandle | None,
        connections: Connections,
    ) -> None:
        self._hub = hub
        self._subscriber = subscriber
        self._transport = transport
        self._expiry = expiry
        # Counted until the connection is lost: the drain waits for it (sse_hub/web/connections.py).
        self._connections = connections
        connections.streams += 1

    def data_received(self, data: bytes) -> None:
        """A stream takes no request body and answers no further request: dropped."""

    def eof_received(self) -> None:
        """The client closed its side: close ours too (as aiohttp does), which ends the stream."""

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.streams -= 1
        self._subscriber.close("disconnected")

    def subscriber_closed(self, _closed: asyncio.Future[str]) -> None:
        """The stream ended (kicked, shutdown, token expired, slow, or the client left):
        finish the response, close the connection once its bytes are written, and forget
        the subscriber at once (a client that does not read holds its connection, not its
        position in the registry, as in aiohttp's handler)."""
        transport = self._transport
        if not transport.is_closing():
            transport.write(CHUNKED_END)
            transport.close()
        if self._expiry is not None:
            self._expiry.cancel()
        self._hub.release(self._subscriber)


def hand_over(request: web.Request, hub: Hub, subscriber: Subscriber, expiry: asyncio.TimerHandle | None) -> bool:
    """Move a live stream's connection from aiohttp to a ``StreamProtocol``; the caller
    returns its (prepared) response right after, without awaiting. False, and nothing
    changed, when the connection is already closing: the caller keeps the stream."""
    handler = request.protocol
    transport = request.transport
    if transport is None or transport.is_closing():
        return False
    protocol = StreamProtocol(hub, subscriber, transport, expiry, request.app[CONNECTIONS])
    transport.set_protocol(protocol)
    # What aiohttp's own connection_lost does first: from here the request handler sees a
    # connection that is gone, for writing (the final chunk), reading and closing.
    handler.transport = None
    # Then the rest of its connection_lost, once its request task has ended (called
    # earlier, it would cancel that task and lose the access-log line).
    request.task.add_done_callback(lambda _task: handler.connection_lost(None))
    subscriber.wait_closed().add_done_callback(protocol.subscriber_closed)
    return True
