"""An async client for sse-hub: publish over HTTP, subscribe to event streams.

    async with Publisher("http://127.0.0.1:8080", token="...") as hub:
        receipt = await hub.publish({"price": 182.3}, channels=["stocks"], event="tick")

    async with subscribe("http://127.0.0.1:8080", ["stocks"]) as events:
        async for event in events:
            print(event.id, event.event, event.data)

Subscriptions follow WHATWG HTML, section 9.2 "Server-sent events": ``SseParser`` is
written from 9.2.6 "Interpreting an event stream", and reconnection from 9.2.3: after the
stream ends or breaks the client waits the reconnection time (the server's ``retry:``),
reconnects and sends ``Last-Event-ID``, so the hub replays what was missed with no gap
and no duplicate. Failed attempts back off exponentially (with jitter) up to
``max_retry_ms``. A ``reset`` event (the hub could not replay everything) is yielded like
any other event: the caller decides how to resynchronise. Publishing is never retried
(a publish is not idempotent); the caller decides.

Every network wait has a timeout. The client depends on aiohttp only, not on the server
side of the package. This module is its entry point and holds the subscribing side;
``Publisher`` lives in ``sse_hub.client_publisher``, the parser in ``sse_hub.sse_parser``
and the errors in ``sse_hub.client_errors``, all re-exported here. Errors:

    HubClientError
    ├── HubConnectionError   the hub could not be reached, or did not answer in time
    └── HubResponseError     the hub answered with an error status (``status``, ``body``)
        ├── PublishError     ``POST /broadcast`` refused (4xx/5xx)
        └── SubscribeError   the stream was refused with a status not worth retrying
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncGenerator, Sequence
from types import TracebackType
from typing import Self

import aiohttp

from sse_hub.client_errors import (
    HubClientError,
    HubConnectionError,
    HubResponseError,
    PublishError,
    SubscribeError,
    body_of,
    describe_body,
    describe_error,
    hub_url,
)
from sse_hub.client_publisher import JsonValue, Publication, Publisher, Receipt
from sse_hub.sse_parser import Event, SseParser

__all__ = [
    "Event",
    "HubClientError",
    "HubConnectionError",
    "HubResponseError",
    "JsonValue",
    "Publication",
    "PublishError",
    "Publisher",
    "Receipt",
    "SseParser",
    "SubscribeError",
    "Subscription",
    "describe_body",
    "describe_error",
    "hub_url",
    "subscribe",
]

# `sse-hub tail` shows this logger's reconnection lines (cli_client configures it by name).
logger = logging.getLogger(__name__)

# Statuses worth another attempt (the hub is busy, restarting or behind a failing proxy);
# any other refusal (bad channel, bad token) would be refused again.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


# -- subscribing --------------------------------------------------------------------------


class Subscription:
    """An async iterator of the events of some channels that reconnects by itself.

    ``client_id`` is the hub's id for the current connection (from its ``connected``
    event), for ``exclude_client_id``. ``last_event_id`` is resent on reconnection.
    ``connect_timeout`` bounds connecting and the response headers; ``read_timeout``
    bounds the silence between two reads (the hub sends a heartbeat every 15 s by
    default), after which the connection counts as dead and is replaced.

    Use ``async with`` (or ``aclose()``). Cancelling a pending ``__anext__`` ends the
    subscription. It ends with SubscribeError when the hub refuses it for good (bad
    channel, bad token) and stops (StopAsyncIteration) on ``204 No Content``.
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

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
                        self.url, headers=self._request_headers(), timeout=self._timeout
                    ) as response:
                        if response.status == 204:
                            return  # WHATWG 9.2.3: the server asks the client to stop
                        await self._check(response)
                        failures = 0
                        async with contextlib.aclosing(self._read(response)) as events:
                            async for event in events:
                                yield event
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
                yield event
            # Blocks that dispatch no event (an id with no data) still move the id.
            self.last_event_id = parser.last_event_id

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
    try:
        value = json.loads(data)
    except ValueError:
        return None
    client_id = value.get("client_id") if isinstance(value, dict) else None
    return client_id if isinstance(client_id, str) else None
