"""``GET /events/{channel}``, ``GET /events?channel=a&channel=b`` and the configured aliases.

Invariants:

1. Checks come before registration, capacity before auth (a refused stream must not use
   up its one-time ticket), and nothing is written before the subscriber is registered
   and its channels attached: a stream misses nothing published after ``connected``.
2. A broker that cannot read history answers 200 with ``retry:`` and an end, never a
   status EventSource would treat as final.
3. The subscriber is released exactly once: here when the stream ends before it is live,
   else by the ``StreamProtocol`` it is handed over to (``run_stream``).
4. A stream that would get nothing at all (its channels ended, docs/api.md#streams-that-end)
   is answered ``204`` before any stream byte: EventSource stops reconnecting on it
   (WHATWG HTML 9.2.3: a 204 fails the connection for good).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import HttpVersion11, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.typedefs import Handler

from sse_hub.core.hub import Hub
from sse_hub.core.replay import StartAt
from sse_hub.core.subscriber import Subscriber
from sse_hub.errors import BadRequest, BrokerUnavailable, HttpVersionNotSupported, InvalidChannel, Unauthorized
from sse_hub.messages.contract import History
from sse_hub.messages.message import is_valid_channel
from sse_hub.web.auth import OPEN_GRANT, TOKEN_COOKIE, Grant, bearer_token
from sse_hub.web.auth import check_channels as check_grant
from sse_hub.web.state import AUTH, CLIENT_ADDRESS, HUB, SETTINGS
from sse_hub.web.stream_protocol import hand_over

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    # no-transform: proxies must not compress or rewrite the stream (RFC 9111, 5.2.2.6).
    "Cache-Control": "no-cache, no-transform",
    # nginx: do not buffer this response (nginx docs, proxy_buffering / X-Accel-Buffering).
    "X-Accel-Buffering": "no",
}


def channels_from_query(request: web.Request) -> list[str]:
    """``?channel=a&channel=b``; ``?channels=a,b`` is accepted too."""
    names = list(request.query.getall("channel", []))
    for joined in request.query.getall("channels", []):
        names.extend(name for name in joined.split(",") if name)
    return names


def check_channels(request: web.Request, names: list[str]) -> tuple[str, ...]:
    if not names:
        raise BadRequest("name at least one channel: /events/{channel} or ?channel=name")
    for name in names:
        if not is_valid_channel(name):
            raise InvalidChannel(
                "invalid channel name",
                {"channel": name[:200], "rule": "1-128 characters of A-Z a-z 0-9 _ . : @ -"},
            )
    channels = tuple(dict.fromkeys(names))
    limit = request.app[SETTINGS].limits.max_channels_per_connection
    if len(channels) > limit:
        raise BadRequest(f"at most {limit} channels per connection")
    return channels


def last_event_id(request: web.Request) -> str | None:
    """Browsers resend ``Last-Event-ID`` on reconnect; the query forms let a page resume
    after a reload, where EventSource cannot set headers."""
    return (
        request.headers.get("Last-Event-ID")
        or request.query.get("last_event_id")
        or request.query.get("lastEventId")
        or None
    )


def start_at(request: web.Request) -> StartAt:
    """Where the stream begins: a last event id (header or query) wins over ``?from=start``."""
    origin = request.query.get("from")
    if origin not in (None, "start"):
        raise BadRequest("'from' takes only 'start'", {"from": origin[:200]})
    return StartAt(last_event_id(request), from_start=origin == "start")


def bound_kernel_buffer(transport: asyncio.BaseTransport, buffer_bytes: int) -> None:
    """Cap the socket's kernel send buffer near ``client_buffer_bytes``.

    The hub measures a client's backlog in the transport's buffer, which fills only once
    the kernel's send buffer is full; Linux autotunes that up to ``tcp_wmem`` max (4 MiB
    by default), so a stalled client could absorb megabytes before being noticed. Setting
    SO_SNDBUF turns autotuning off for this socket (socket(7); the kernel doubles the
    value for its bookkeeping), which bounds the whole backlog to a few times the limit.
    """
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer_bytes)


def require_http11(request: web.Request) -> None:
    if request.version < HttpVersion11:
        # The stream is sent as HTTP/1.1 chunks, encoded once for every subscriber.
        raise HttpVersionNotSupported("SSE streams need HTTP/1.1 (nginx: proxy_http_version 1.1)")


def client_ip(request: web.Request) -> str:
    """The client's address, through ``server.trusted_proxies``."""
    return request.app[CLIENT_ADDRESS].resolve(
        request.remote, request.headers.get("X-Forwarded-For"), request.headers.get("X-Real-IP")
    )


def user_agent(request: web.Request) -> str:
    return request.headers.get("User-Agent", "")[:256]


async def head_only(request: web.Request, headers: Mapping[str, str]) -> web.StreamResponse:
    """aiohttp routes HEAD to GET handlers; the hub writes stream bytes straight to the
    socket, which a HEAD response must not carry (RFC 9110, 9.3.2): headers only."""
    head = web.StreamResponse(headers=headers)
    await head.prepare(request)
    return head


async def stream(request: web.Request, channel_names: list[str]) -> web.StreamResponse:
    channels = check_channels(request, channel_names)
    require_http11(request)
    hub = request.app[HUB]
    ip = client_ip(request)
    # Capacity first: a refused connection must not use up its one-time ticket.
    hub.check_capacity(ip)
    if request.method == "HEAD":
        # A one-time ticket is left for the GET it was issued for (a link checker or a
        # prefetch must not use it up); a token is still checked.
        if "ticket" not in request.query:
            await authorize(request, channels)
        return await head_only(request, SSE_HEADERS)
    begin = start_at(request)
    grant = await authorize(request, channels)
    subscriber = hub.open(channels, ip, user_agent(request))

    async def start() -> Opening | None:
        prepared = await hub.prepare_replay(subscriber, begin)
        return None if prepared is None else Opening(*prepared, SSE_HEADERS)

    return await run_stream(request, hub, subscriber, grant.expires_at, start)


@dataclass(frozen=True, slots=True)
class Opening:
    """What a stream starts with: its preamble, the first page of its replay, its headers."""

    preamble: list[bytes]
    replay: History
    headers: Mapping[str, str]


async def run_stream(
    request: web.Request,
    hub: Hub,
    subscriber: Subscriber,
    expires_at: float | None,
    start: Callable[[], Awaitable[Opening | None]],
) -> web.StreamResponse:
    """Serve a registered subscriber's stream to its end, or until it is handed over, and
    release it if it was not; the stream closes when its token expires (``expires_at``),
    and the client reconnects with a fresh one. ``start`` reads what the stream starts
    with (a ``BrokerUnavailable`` from it answers "retry later"; None: nothing, ``204``)."""
    expiry = None
    if expires_at is not None:
        delay = max(0.0, expires_at - time.time())
        expiry = asyncio.get_running_loop().call_later(delay, subscriber.close, "token_expired")
    handed_over = False
    try:
        response, handed_over = await serve(request, hub, subscriber, start, expiry)
        return response
    finally:
        if not handed_over:
            if expiry is not None:
                expiry.cancel()
            hub.release(subscriber)


async def serve(
    request: web.Request,
    hub: Hub,
    subscriber: Subscriber,
    start: Callable[[], Awaitable[Opening | None]],
    expiry: asyncio.TimerHandle | None,
) -> tuple[web.StreamResponse, bool]:
    """Write the stream's head, preamble and replay, then hand the live stream over to a
    protocol of ours (True: from then on it owns the connection, the expiry timer and the
    release, and aiohttp frees its request: sse_hub/web/stream_protocol.py). False: the
    stream ended first, here (the caller releases it; aiohttp writes its last chunk)."""
    try:
        opening = await start()
    except BrokerUnavailable:
        return await retry_later(request, request.app[SETTINGS].sse.retry_ms), False
    if opening is None:
        subscriber.close("finished")
        return web.Response(status=204, headers={"Cache-Control": "no-cache"}), False
    preamble, replay = opening.preamble, opening.replay
    response = web.StreamResponse(headers=opening.headers)
    del opening
    response.enable_chunked_encoding()
    response.force_close()  # "Connection: close": the connection ends with the stream
    await response.prepare(request)
    transport = request.transport
    if transport is None:
        return response, False
    bound_kernel_buffer(transport, request.app[SETTINGS].limits.client_buffer_bytes)
    subscriber.go_live(transport, preamble, replay.messages, replay.complete)
    told_through = replay.evicted_through
    # This frame lives while the replay is fed: drop what is no longer needed (the
    # subscriber keeps the replay only until it is fed).
    del preamble, replay
    if subscriber.replaying:
        await feed_replay(hub, subscriber, request.writer, told_through)
    if subscriber.close_reason is None and hand_over(request, hub, subscriber, expiry):
        return response, True
    await subscriber.wait_closed()
    return response, False


async def feed_replay(hub: Hub, subscriber: Subscriber, writer: AbstractStreamWriter, told_through: int) -> None:
    """Wake the subscriber's replay feed each time the transport drains, and read the next
    page of history when it needs one, until the replay is written or the stream ends.
    ``drain`` returns once the transport's buffer is below its low-water mark (at once
    when it is not above the high one), so the bytes held for a client that stops reading
    stay within the subscriber's replay window, and the messages within a page; such a
    client is closed by the stall rule (``Subscriber.tick``), which aborts the transport
    and so ends the wait. ``told_through``: the evictions the first page saw (the stream
    began with a reset for them, if they concern it)."""
    closed = subscriber.wait_closed()
    while subscriber.replaying:
        if subscriber.needs_page:
            try:
                page = await hub.next_replay_page(subscriber, told_through)
            except BrokerUnavailable:
                subscriber.close("disconnected")  # the client resumes from its last id
                return
            if page is None:
                # Trimmed while this client was reading slowly: rather than a gap, end the
                # stream; it reconnects with its last id and is told (reset).
                subscriber.close("slow")
                return
            subscriber.extend_replay(page.messages, page.complete)
            continue
        drained = asyncio.ensure_future(writer.drain())
        try:
            await asyncio.wait((drained, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not drained.done():
                drained.cancel()
        if drained.cancelled() or closed.done():
            return
        if drained.exception() is not None:
            subscriber.close("disconnected")
            return
        subscriber.feed()


async def retry_later(request: web.Request, retry_ms: int) -> web.StreamResponse:
    """History is unreachable (broker down): end this stream at once, asking the client to
    come back later. A 503 would be final for EventSource (WHATWG HTML 9.2.3: any status
    but 200 fails the connection for good); a 200 that sets ``retry:`` and ends makes the
    browser reconnect by itself with the same Last-Event-ID."""
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    delay_ms = int(max(retry_ms, 1000) * random.uniform(1, 3))
    await response.write(b": broker unavailable, retry later\nretry: %d\n\n" % delay_ms)
    await response.write_eof()
    return response


async def authorize(request: web.Request, channels: tuple[str, ...]) -> Grant:
    """A one-time ``?ticket=``, else the subscriber JWT (header, ``?token=``, cookie) when
    ``auth.subscriber_jwt`` is set; the grant must cover every requested channel."""
    ticket = request.query.get("ticket")
    if ticket is not None:
        patterns = await request.app[HUB].broker.redeem_ticket(ticket) if ticket else None
        if patterns is None:
            raise Unauthorized("the ticket is unknown, used or expired")
        grant = Grant(patterns)
    elif not request.app[AUTH].subscribers_need_credentials:
        return OPEN_GRANT  # no token to look for (saves parsing the Cookie header per connect)
    else:
        token = (
            bearer_token(request.headers.get("Authorization"))
            or request.query.get("token")
            or request.cookies.get(TOKEN_COOKIE)
        )
        grant = request.app[AUTH].subscriber_grant(token)
    check_grant(grant, channels)
    return grant


async def stream_path(request: web.Request) -> web.StreamResponse:
    return await stream(request, [request.match_info["channel"]])


async def stream_query(request: web.Request) -> web.StreamResponse:
    return await stream(request, channels_from_query(request))


def alias(channels: list[str]) -> Handler:
    """A handler for a configured ``streams:`` path bound to fixed channels."""

    async def stream_alias(request: web.Request) -> web.StreamResponse:
        return await stream(request, channels)

    return stream_alias
