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

Every network wait has a timeout. This module depends on aiohttp only, not on the server
side of the package. Errors:

    HubClientError
    ├── HubConnectionError   the hub could not be reached, or did not answer in time
    └── HubResponseError     the hub answered with an error status (``status``, ``body``)
        ├── PublishError     ``POST /broadcast`` refused (4xx/5xx)
        └── SubscribeError   the stream was refused with a status not worth retrying
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import os
import random
import re
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import NotRequired, Self, TypeAlias, TypedDict, cast

import aiohttp
from yarl import URL

logger = logging.getLogger(__name__)

JsonValue: TypeAlias = "str | int | float | bool | Sequence[JsonValue] | Mapping[str, JsonValue] | None"

# Statuses worth another attempt (the hub is busy, restarting or behind a failing proxy);
# any other refusal (bad channel, bad token) would be refused again.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


# -- errors -------------------------------------------------------------------------------


class HubClientError(Exception):
    """Base class of every error this client raises."""


class HubConnectionError(HubClientError):
    """The hub could not be reached, or did not answer within the timeout."""


class HubResponseError(HubClientError):
    """The hub answered with an error status; ``body`` is its JSON error body (or text)."""

    def __init__(self, status: int, body: object, url: str) -> None:
        self.status = status
        self.body = body
        self.url = url
        fields = body if isinstance(body, dict) else {}
        self.error: str | None = fields.get("error") if isinstance(fields.get("error"), str) else None
        self.detail: object = fields.get("detail")
        super().__init__(f"{url} answered {status}: {describe_body(body)}")


class PublishError(HubResponseError):
    """``POST /broadcast`` answered 4xx or 5xx; nothing was published."""


class SubscribeError(HubResponseError):
    """The stream was refused with a status that another attempt would not change."""


def describe_body(body: object, limit: int = 500) -> str:
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def hub_url(url: str) -> URL:
    """The hub's base URL (``http://host:port``, maybe with a path prefix behind a proxy)."""
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"the hub URL must be http(s)://host[:port][/prefix], not {url!r}")
    return parsed.with_query(None).with_fragment(None)


def _body_of(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _connection_error(url: URL, exc: Exception, timeout_seconds: float | None) -> HubConnectionError:
    if isinstance(exc, TimeoutError):
        return HubConnectionError(f"no answer from the hub at {url} within {timeout_seconds}s")
    return HubConnectionError(f"cannot connect to the hub at {url}: {describe_error(exc)}")


def describe_error(exc: BaseException) -> str:
    """A short reason: ``Connection refused`` rather than aiohttp's full sentence."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, ConnectionError) and os_error.errno:
            # asyncio words a refusal "Connect call failed (...)"; the OS says what it was.
            return os.strerror(os_error.errno)
        return os_error.strerror or str(os_error) or str(exc)
    return str(exc) or type(exc).__name__


# -- publishing ---------------------------------------------------------------------------


class Receipt(TypedDict):
    """What the hub answers for one published message."""

    id: str
    channels: list[str]
    client_id: NotRequired[str]


@dataclass(frozen=True, slots=True)
class Publication:
    """One message to publish (an item of ``Publisher.publish_batch``).

    ``data``: a string is sent verbatim, any other JSON value as compact JSON.
    ``channels``: None sends to every client of the hub. ``client_id``: that client only.
    ``exclude_client_id``: everyone but that client. ``retry``: the clients' new
    reconnection time in ms.
    """

    data: JsonValue
    channels: Sequence[str] | None = None
    event: str | None = None
    client_id: str | None = None
    exclude_client_id: str | None = None
    retry: int | None = None

    def to_json(self) -> dict[str, JsonValue]:
        body: dict[str, JsonValue] = {"data": self.data}
        if self.channels is not None:
            # A bare string is a Sequence[str] too; take it as one channel, not its letters.
            body["channels"] = [self.channels] if isinstance(self.channels, str) else list(self.channels)
        optional: dict[str, JsonValue] = {
            "event": self.event,
            "client_id": self.client_id,
            "exclude_client_id": self.exclude_client_id,
            "retry": self.retry,
        }
        body.update((key, value) for key, value in optional.items() if value is not None)
        return body


class Publisher:
    """Publishes to one hub over ``POST /broadcast``. Use ``async with`` (or ``aclose()``).

    ``timeout`` bounds each request (connect, send and the answer). Pass ``session`` to
    share an ``aiohttp.ClientSession``; the publisher then leaves it open.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = hub_url(url)
        self._broadcast_url = self.url / "broadcast"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout_seconds = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def publish(
        self,
        data: JsonValue,
        channels: Sequence[str] | None = None,
        event: str | None = None,
        client_id: str | None = None,
        exclude_client_id: str | None = None,
        retry: int | None = None,
    ) -> Receipt:
        """Publish one message; returns ``{"id", "channels"}`` once the hub stored it."""
        item = Publication(data, channels, event, client_id, exclude_client_id, retry)
        status, answer = await self._post(item.to_json())
        return _receipt(status, answer, str(self._broadcast_url))

    async def publish_batch(self, items: Iterable[Publication]) -> list[Receipt]:
        """Publish several messages in one request: all are published, or none (PublishError)."""
        status, answer = await self._post([item.to_json() for item in items])
        if not isinstance(answer, list):
            raise PublishError(status, answer, str(self._broadcast_url))
        return [_receipt(status, entry, str(self._broadcast_url)) for entry in answer]

    async def _post(self, body: JsonValue) -> tuple[int, object]:
        """POST the body; the status and parsed answer of a 2xx, else PublishError."""
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                self._broadcast_url,
                data=payload,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                status, text = response.status, await response.text(encoding="utf-8", errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _connection_error(self.url, exc, self._timeout_seconds) from exc
        answer = _body_of(text)
        if not 200 <= status < 300:
            raise PublishError(status, answer, str(self._broadcast_url))
        return status, answer


def _receipt(status: int, answer: object, url: str) -> Receipt:
    """A 2xx answer that is not a receipt came from something other than the hub."""
    if not (isinstance(answer, dict) and isinstance(answer.get("id"), str)):
        raise PublishError(status, answer, url)
    return cast(Receipt, answer)


# -- the event stream parser --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One dispatched event.

    ``id`` is the ``id:`` field of this event's own block, None when it had none (the
    hub's ``connected`` and ``reset`` events); the id a reconnection resends is
    ``Subscription.last_event_id``.
    """

    id: str | None
    event: str
    data: str

    def json(self) -> object:
        """The data parsed as JSON (the hub sends non-string data as compact JSON)."""
        return json.loads(self.data)


_LINE_END = re.compile(r"\r\n|\r|\n")


class SseParser:
    """An incremental event-stream parser (WHATWG HTML 9.2.6). Feed bytes, get events.

    Lines end at CRLF, LF or CR; a blank line dispatches; ``data`` lines are joined with
    LF; comments (``:``) and unknown fields are ignored; an ``id`` holding NUL is
    ignored; ``retry`` (ASCII digits only) sets ``reconnection_ms``. ``last_event_id`` is
    the spec's "last event ID string": set when an event is dispatched, so an ``id:`` in
    a block the stream never finished is not taken as seen.

    A new parser starts from the previous connection's ``last_event_id`` and
    ``reconnection_ms``, as Chrome and Firefox do (the spec's per-stream buffer would
    forget the id as soon as a new stream's first event, like the hub's ``connected``,
    has none, and a second drop would then lose messages).
    """

    def __init__(self, last_event_id: str = "", reconnection_ms: int = 3000) -> None:
        self.last_event_id = last_event_id
        self.reconnection_ms = reconnection_ms
        # Invalid UTF-8 becomes U+FFFD (the spec's "UTF-8 decode"); a character split
        # between two reads is completed by the next one.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False
        self._partial = ""
        self._skip_lf = False
        self._id_buffer = last_event_id
        self._block_id: str | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[Event]:
        """Parse the next bytes of the stream; returns the events they completed."""
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")  # one leading BOM is not part of the stream
        if self._skip_lf:
            # The previous read ended with CR: an LF now is the second half of that CRLF.
            self._skip_lf = False
            text = text.removeprefix("\n")
        text = self._partial + text
        events: list[Event] = []
        start = 0
        for match in _LINE_END.finditer(text):
            event = self._line(text[start : match.start()])
            if event is not None:
                events.append(event)
            start = match.end()
        self._partial = text[start:]
        self._skip_lf = text.endswith("\r")
        return events

    def _line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._id_buffer = self._block_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.reconnection_ms = int(value)
        return None

    def _dispatch(self) -> Event | None:
        self.last_event_id = self._id_buffer
        data, name, block_id = self._data, self._event, self._block_id
        self._data, self._event, self._block_id = [], "", None
        if not data:
            return None
        return Event(block_id, name or "message", "\n".join(data))


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
        body = _body_of(await response.text(errors="replace"))
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


def subscribe(
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
) -> Subscription:
    """Subscribe to ``channels`` of the hub at ``url`` (its base URL); see Subscription."""
    return Subscription(
        url,
        channels,
        last_event_id,
        token,
        session=session,
        retry_ms=retry_ms,
        max_retry_ms=max_retry_ms,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )


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
