"""Subscribing to sse-hub: ``Subscription`` (``subscribe``), an event stream that reconnects.

Follows WHATWG HTML, section 9.2 "Server-sent events": bytes are parsed by
``sse_parser.SseParser`` (9.2.6), and reconnection follows 9.2.3: after the stream ends or
breaks the client waits the reconnection time (the server's ``retry:``), reconnects and
sends ``Last-Event-ID``, so the hub replays what was missed with no gap and no duplicate.
With ``from_start`` a first connection (no id seen yet) asks for every retained message
(``?from=start``); once an id was seen, ``Last-Event-ID`` takes over.

Invariants:

- ``last_event_id`` moves only when the parser dispatches a block, so an id from a block
  the stream never finished is not taken as seen.
- Failed attempts back off exponentially (with jitter) up to ``max_retry_ms``; a refusal
  that another attempt would not change (a bad channel or token) ends the subscription
  with SubscribeError, and ``204 No Content`` ends it quietly.
- A stream ends where its channels end: the hub sends an ``end`` control event (data
  ``{"channel": name}``, no id) after a channel's final message. Each channel's ``end`` is
  yielded once, even if a reconnection brings it again; once every channel of the
  subscription has ended the iteration stops, with no reconnection (``finished``).
- Connecting, the response headers and the silence between two reads each have a timeout.
- A ``reset`` event (the hub could not replay everything) is yielded like any other
  event: the caller decides how to resynchronise.
- Closing the subscription closes its connection, and its session if it made one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncGenerator, Sequence
from typing import Self

import aiohttp
from yarl import URL

from sse_hub.client.errors import SubscribeError, body_of, describe_error, hub_url
from sse_hub.client.resource import AsyncResource
from sse_hub.client.sse_parser import Event, SseParser

# `sse-hub tail` shows this logger's reconnection lines: client.cli configures its parent,
# the "sse_hub.client" logger.
logger = logging.getLogger(__name__)

# Statuses worth another attempt (the hub is busy, restarting or behind a failing proxy);
# any other refusal (bad channel, bad token) would be refused again.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class Subscription(AsyncResource):
    """An async iterator of the events of some channels that reconnects by itself.

    ``client_id`` is the hub's id for the current connection (from its ``connected``
    event), for ``exclude_client_id``. ``last_event_id`` is resent on reconnection.
    ``connect_timeout`` bounds connecting and the response headers; ``read_timeout``
    bounds the silence between two reads (the hub sends a heartbeat every 15 s by
    default), after which the connection counts as dead and is replaced.

    ``from_start``: start with every retained message of the channels (``?from=start``)
    rather than from now, when no ``last_event_id`` is given.

    Use ``async with`` (or ``aclose()``). Cancelling a pending ``__anext__`` ends the
    subscription. It ends with SubscribeError when the hub refuses it for good (bad
    channel, bad token) and stops (StopAsyncIteration) on ``204 No Content`` and after the
    ``end`` event of its last channel: ``finished`` is then True, and ``ended`` holds the
    channels whose ``end`` was seen.
    """

    def __init__(
        self,
        url: str,
        channels: Sequence[str],
        last_event_id: str | None = None,
        token: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        retry_ms: int = 3000,
        max_retry_ms: int = 30_000,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        from_start: bool = False,
    ) -> None:
        names = [channels] if isinstance(channels, str) else list(channels)
        if not names:
            raise ValueError("subscribe to at least one channel")
        self.channels = tuple(names)
        self.url = hub_url(url).joinpath("events").with_query([("channel", name) for name in names])
        self.last_event_id = last_event_id or ""
        self.reconnection_ms = retry_ms
        self.max_retry_ms = max_retry_ms
        self.client_id: str | None = None
        self.from_start = from_start
        self.ended: set[str] = set()
        self.finished = False
        self._headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session = session
        self._events = self._run()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """Close the connection (and the session, if the subscription made it)."""
        await self._events.aclose()

    async def _run(self) -> AsyncGenerator[Event, None]:
        async with contextlib.AsyncExitStack() as stack:
            session = self._session
            if session is None:
                session = await stack.enter_async_context(aiohttp.ClientSession())
            failures = 0
            while True:
                retry_after = 0.0
                try:
                    async with session.get(
                        self._request_url(), headers=self._request_headers(), timeout=self._timeout
                    ) as response:
                        if response.status == 204:
                            # WHATWG 9.2.3: the server asks the client to stop; the hub says
                            # so when every channel ended before anything it could send.
                            self.finished = True
                            return
                        await self._check(response)
                        failures = 0
                        async with contextlib.aclosing(self._read(response)) as events:
                            async for event in events:
                                yield event
                    if self.finished:
                        return
                    reason = "stream ended"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    reason = f"stream failed error={describe_error(exc)!r}"
                    failures += 1
                except _Retry as retry:
                    reason = f"stream refused status={retry.status}"
                    retry_after = retry.after_seconds
                    failures += 1
                await self._wait_to_reconnect(reason, failures, retry_after)

    async def _wait_to_reconnect(self, reason: str, failures: int, retry_after: float) -> None:
        delay = max(self._backoff_seconds(failures), retry_after)
        logger.log(
            logging.INFO if failures == 0 else logging.WARNING,
            "%s url=%s; reconnecting in %.1fs last_event_id=%s",
            reason,
            self.url,
            delay,
            self.last_event_id or "-",
        )
        await asyncio.sleep(delay)

    def _request_url(self) -> URL:
        if self.from_start and not self.last_event_id:
            return self.url.update_query({"from": "start"})
        return self.url

    def _request_headers(self) -> dict[str, str]:
        if not self.last_event_id:
            return self._headers
        return {**self._headers, "Last-Event-ID": self.last_event_id}

    async def _check(self, response: aiohttp.ClientResponse) -> None:
        """Accept an event stream; raise _Retry or SubscribeError for anything else."""
        if response.status == 200 and response.content_type == "text/event-stream":
            return
        if response.status in RETRYABLE_STATUSES:
            raise _Retry(response.status, _retry_after(response))
        body = body_of(await response.text(errors="replace"))
        raise SubscribeError(response.status, body, str(self.url))

    async def _read(self, response: aiohttp.ClientResponse) -> AsyncGenerator[Event, None]:
        parser = SseParser(self.last_event_id, self.reconnection_ms)
        async for chunk in response.content.iter_any():
            events = parser.feed(chunk)
            self.reconnection_ms = parser.reconnection_ms
            for event in events:
                if event.id is not None:
                    self.last_event_id = event.id
                if event.event == "connected":
                    self.client_id = _client_id(event.data)
                elif event.event == "end" and not self._first_end(event):
                    continue  # a reconnection brought an end already yielded
                yield event
                if self.finished:
                    return
            # Blocks that dispatch no event (an id with no data) still move the id.
            self.last_event_id = parser.last_event_id

    def _first_end(self, event: Event) -> bool:
        """Take an ``end`` event: False when its channel's end was seen already."""
        channel = _json_field(event.data, "channel")
        if channel is None:
            return True  # not the hub's shape: the caller sees it, it ends nothing
        if channel in self.ended:
            return False
        self.ended.add(channel)
        self.finished = self.ended.issuperset(self.channels)
        return True

    def _backoff_seconds(self, failures: int) -> float:
        """The reconnection time after an ended stream or a first failure (WHATWG 9.2.3),
        then exponential backoff with jitter, so many clients don't return in step."""
        if failures <= 1:
            return self.reconnection_ms / 1000
        grown = max(self.reconnection_ms, 100) << min(failures - 1, 20)
        return min(self.max_retry_ms, grown) * random.uniform(0.5, 1) / 1000


# ``subscribe(url, channels, ...)`` reads better at the call site; it is the class itself,
# so the two signatures cannot drift apart.
subscribe = Subscription


class _Retry(Exception):
    def __init__(self, status: int, after_seconds: float) -> None:
        super().__init__(status)
        self.status = status
        self.after_seconds = after_seconds


def _retry_after(response: aiohttp.ClientResponse) -> float:
    value = response.headers.get("Retry-After", "")
    # Only the delay-seconds form (RFC 9110, 10.2.3); an HTTP date falls back to backoff.
    return min(float(value), 3600.0) if value.isascii() and value.isdigit() else 0.0


def _client_id(data: str) -> str | None:
    return _json_field(data, "client_id")


def _json_field(data: str, name: str) -> str | None:
    """The string field ``name`` of a control event's JSON object, None when there is none."""
    try:
        value = json.loads(data)
    except ValueError:
        return None
    field = value.get(name) if isinstance(value, dict) else None
    return field if isinstance(field, str) else None
