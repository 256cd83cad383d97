"""A thin front protocol on every connection: plain ``POST /broadcast`` answered here, all
else given to aiohttp.

Under S5 (one POST per delivery) aiohttp's request machinery (request handler task, parser
callbacks, request, match info, middlewares, response, writer, signals) was about half of
the server's CPU per message (docs/performance.md, S5). This protocol owns a new
connection first. While the requests it sees are plain, whole publishes, it answers them
itself with the same validation, hub and receipt as ``routes/publish.py`` (both read the
body with ``web/bodies.py``); at the first request that is anything else it hands the
connection to aiohttp for good.

Invariants:

1. Only a request whose every byte is known to be plain is answered here: the request
   line ``POST /broadcast HTTP/1.1`` (or ``/api/broadcast``), header lines of visible
   ASCII with token names, no repeated name, a ``Host``, one all-digit ``Content-Length``
   within ``limits.max_message_bytes``, ``Content-Type: application/json``, none of
   Transfer-Encoding, Expect, Upgrade, Connection, Origin, Content-Encoding (aiohttp
   decodes the body) and Sec-WebSocket-Key1 (aiohttp refuses it), the head and body whole in
   the buffer, a valid body, an accepted token, and the hub not draining. Any other
   request, and any request that would be an error, goes to aiohttp, which answers it
   exactly as before (status, JSON error, CORS, access log, timeouts).
2. Handing over: aiohttp's request handler (``Server.__call__``) gets the transport
   (``set_protocol``), ``connection_made`` and every byte not answered yet, in order; the
   front then never touches the connection again. Nothing is answered twice: a request
   is either answered here (after its publish) or replayed to aiohttp (before any
   publish, validation has no side effect).
3. One request at a time, in order (HTTP/1.1 pipelining): bytes that arrive while a
   publish runs wait in the buffer; reading pauses when the buffer or the write buffer
   is full.
4. An idle connection (no whole request within ``request_header_timeout`` of its start or
   of its last answer, as aiohttp's keep-alive timeout counts) is closed, also when what
   it sent so far may still become a plain request's head (slowloris: the handover must
   not restart aiohttp's count). A request whose head is whole but not plain, or whose
   body is still arriving, is aiohttp's at once, under aiohttp's body timeout.
5. The drain (``sse_hub/ops/server.py``) sees these connections: the app's ``Connections`` lists them, and
   ``close`` closes an idle one now and a busy one after its answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import cast

from aiohttp import web

from sse_hub.errors import HubError
from sse_hub.messages.message import Draft, Message
from sse_hub.web.bodies import parse_items, receipts_body
from sse_hub.web.front_http import MAX_HEAD_BYTES, Plain, head_incomplete, plain_request, response_bytes
from sse_hub.web.middleware import INTERNAL_ERROR, hub_error_body
from sse_hub.web.state import AUTH, CONNECTIONS, CORS, HUB, SETTINGS

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("sse_hub.access")


class FrontShared:
    """What every connection of a site reads of the app, looked up once (the app's state
    is set before its sites start: ``web/app.py``)."""

    __slots__ = (
        "auth",
        "connections",
        "cors_headers",
        "hub",
        "idle_timeout",
        "make_handler",
        "max_batch",
        "max_body",
        "publishes_now",
    )

    def __init__(self, make_handler: Callable[[], asyncio.Protocol], app: web.Application) -> None:
        settings = app[SETTINGS]
        self.make_handler = make_handler
        self.hub = app[HUB]
        self.auth = app[AUTH]
        self.connections = app[CONNECTIONS]
        self.cors_headers = app[CORS].headers_for(None)  # a plain request has no Origin
        self.max_body = settings.limits.max_message_bytes
        self.max_batch = settings.limits.max_batch
        self.idle_timeout = settings.server.request_header_timeout
        self.publishes_now = self.hub.broker.publishes_now


class FrontProtocol(asyncio.Protocol):
    """A connection's first owner: see the module docstring."""

    def __init__(self, shared: FrontShared) -> None:
        self._shared = shared
        self._connections = shared.connections
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._busy = False
        self._closing = False
        self._write_paused = False
        self._read_paused = False
        self._task: asyncio.Task[None] | None = None  # the publish in hand: referenced
        self._idle_since = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._connections.fronts.add(self)
        self._idle_since = asyncio.get_running_loop().time()
        self._arm(self._idle_since)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > self._max_buffer() and self._transport is not None and not self._read_paused:
            self._read_paused = True  # resumed once the buffer is answered (invariant 3)
            self._transport.pause_reading()
        if not self._busy:
            self._next()

    def eof_received(self) -> bool:
        if self._busy:
            self._closing = True  # answer the request in hand, then close
            return True
        if self._buffer:
            return self._hand_over(eof=True)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if not self._busy:
            self._next()

    def close(self) -> None:
        """For the drain: close now when idle, after the answer in hand when busy."""
        self._closing = True
        if not self._busy and self._transport is not None:
            self._transport.close()

    def _max_buffer(self) -> int:
        return 2 * (self._shared.max_body + MAX_HEAD_BYTES)

    def _forget(self) -> None:
        self._connections.fronts.discard(self)
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, since: float) -> None:
        timeout = self._shared.idle_timeout
        self._timer = asyncio.get_running_loop().call_at(since + timeout, self._idle_check)

    def _idle_check(self) -> None:
        """Invariant 4: one timer per connection, moved on lazily, not per request."""
        self._timer = None
        transport = self._transport
        if transport is None:
            return
        loop = asyncio.get_running_loop()
        timeout = self._shared.idle_timeout
        if not self._busy and loop.time() - self._idle_since >= timeout:
            transport.close()  # a partial head in the buffer is dropped unanswered, as aiohttp does
            return
        self._arm(loop.time() if self._busy else self._idle_since)

    def _next(self) -> None:
        """Answer the next request in the buffer, or hand the connection over."""
        transport = self._transport
        if transport is None or self._write_paused or not self._buffer:
            return
        if self._closing:
            transport.close()
            return
        request = plain_request(self._buffer, self._shared.max_body)
        if request is None and head_incomplete(self._buffer):
            return  # the rest of the head is awaited under the idle timer (invariant 4)
        parsed = self._drafts(request) if request is not None else None
        if request is None or parsed is None:
            self._hand_over(eof=False)
            return
        self._buffer = self._buffer[request.end :]
        self._busy = True
        loop = asyncio.get_running_loop()
        if self._shared.publishes_now:
            loop.call_soon(self._publish_soon, request.path, *parsed)
        else:  # no hop before the task's first step: its publish joins this turn's group
            self._task = loop.create_task(self._publish(request.path, *parsed, time.monotonic()))

    def _drafts(self, request: Plain) -> tuple[list[Draft], bool] | None:
        """The request's drafts and whether it is a batch, or None when aiohttp should
        answer it (an error, or a direct message whose unknown client is the hub's 404)."""
        shared = self._shared
        if shared.hub.draining:
            return None
        try:
            shared.auth.require_publisher(request.authorization)
            items, batch = parse_items(request.body, shared.max_batch)
            if any(item.client_id is not None for item in items):
                return None
            published_at = time.time()
            return [item.to_draft(published_at) for item in items], batch
        except (HubError, ValueError):
            return None

    def _publish_soon(self, path: str, drafts: Sequence[Draft], batch: bool) -> None:
        """Publish and answer once the loop has read what it can, not in the turn that read
        the request: more requests then arrive per turn, at less CPU per message
        (docs/performance.md, "The front path"). A publish that needs no await
        (``Hub.publish_now``, the memory broker) is answered here, without a task
        (should it answer None after all, the publish goes to a task)."""
        started = time.monotonic()
        try:
            messages = self._shared.hub.publish_now(drafts)
        except Exception as exc:
            self._reply(path, batch, started, exc)
            return
        if messages is None:
            self._task = asyncio.get_running_loop().create_task(self._publish(path, drafts, batch, started))
        else:
            self._reply(path, batch, started, messages)

    async def _publish(self, path: str, drafts: Sequence[Draft], batch: bool, started: float) -> None:
        outcome: list[Message] | Exception
        try:
            outcome = await self._shared.hub.publish(drafts)
        except Exception as exc:
            outcome = exc
        self._task = None
        self._reply(path, batch, started, outcome)

    def _reply(self, path: str, batch: bool, started: float, outcome: list[Message] | Exception) -> None:
        """Answer the request in hand with its receipts or its error; then the idle count
        restarts, reading resumes once the buffer is back under its limit (invariant 3),
        and the next request is taken."""
        if isinstance(outcome, HubError):
            body = json.dumps(hub_error_body(outcome, path)).encode()
            self._answer(path, outcome.status, body, outcome.headers, started)
        elif isinstance(outcome, Exception):
            logger.error("unhandled error path=%s", path, exc_info=outcome)
            self._answer(path, 500, json.dumps(INTERNAL_ERROR).encode(), {}, started)
        else:
            self._answer(path, 202, receipts_body(outcome, batch, self._shared.hub.ids), {}, started)
        self._busy = False
        self._idle_since = asyncio.get_running_loop().time()
        if self._read_paused and self._transport is not None and len(self._buffer) <= self._max_buffer():
            self._read_paused = False
            self._transport.resume_reading()
        self._next()

    def _answer(self, path: str, status: int, body: bytes, extra: dict[str, str], started: float) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        headers = {**extra, **self._shared.cors_headers} if extra else self._shared.cors_headers
        if self._closing:
            headers = {**headers, "Connection": "close"}
        transport.write(response_bytes(status, body, headers))
        self._connections.answered += 1
        if access_logger.isEnabledFor(logging.INFO):
            peer = transport.get_extra_info("peername")
            remote = peer[0] if isinstance(peer, tuple) else None
            access_logger.info("%s %s %d %.3fs ip=%s", "POST", path, status, time.monotonic() - started, remote)
        if self._closing:
            transport.close()

    def _hand_over(self, eof: bool) -> bool:
        """Invariant 2: the connection is aiohttp's from here, with every unanswered byte."""
        transport = self._transport
        buffer, self._buffer = self._buffer, b""
        self._forget()
        if transport is None:
            return False
        self._connections.handed_over += 1
        handler = self._shared.make_handler()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self._write_paused:
            handler.pause_writing()
        if self._read_paused:
            transport.resume_reading()
        if buffer:
            handler.data_received(buffer)
        return bool(handler.eof_received()) if eof else False


class FrontSite(web.TCPSite):
    """``web.TCPSite`` whose connections start with a ``FrontProtocol``."""

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        app = getattr(self._runner, "app", None)
        assert server is not None and isinstance(app, web.Application)
        loop = asyncio.get_running_loop()
        shared = FrontShared(server, app)
        self._server = await loop.create_server(
            lambda: FrontProtocol(shared),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
