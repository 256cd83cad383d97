"""Publishing to sse-hub over HTTP: ``Publisher`` sends messages to ``POST /broadcast``.

    async with Publisher("http://127.0.0.1:8080", token="...") as hub:
        receipt = await hub.publish({"price": 182.3}, channels=["stocks"], event="tick")
        async with hub.stream("job-42") as job:  # one request, a line per message
            await job.send("token")

``stream`` is ``client/publish_stream.py`` (its docstring says how the block ends).
Concurrent ``publish`` calls go out as one batch by group commit (``client/batcher.py``,
whose docstring says what each caller gets and in what order); ``max_batch=1`` sends one
request per message.

Invariants:

- A publish is never retried (it is not idempotent): a failure is a HubConnectionError
  or a PublishError and the caller decides.
- Every request has a timeout. Redirects are not followed: a 3xx is a PublishError.
- A receipt is returned only when the hub answered 2xx with a receipt; any other 2xx
  answer (from something other than the hub) is a PublishError.
- The publisher closes the session it made, and leaves open one it was given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NotRequired, TypedDict, cast

import aiohttp

from sse_hub.client.batcher import Batcher
from sse_hub.client.errors import PublishError, body_of, connection_error, hub_url
from sse_hub.client.json_value import JsonValue
from sse_hub.client.publish_stream import PublishStream
from sse_hub.client.resource import AsyncResource


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
    reconnection time in ms. ``final``: the last message of its channels (they end).
    """

    data: JsonValue
    channels: Sequence[str] | None = None
    event: str | None = None
    client_id: str | None = None
    exclude_client_id: str | None = None
    retry: int | None = None
    final: bool = False

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
            "final": self.final or None,
        }
        body.update((key, value) for key, value in optional.items() if value is not None)
        return body


class Publisher(AsyncResource):
    """Publishes to one hub over ``POST /broadcast``. Use ``async with`` (or ``aclose()``).

    ``timeout`` bounds each request (connect, send and the answer). Pass ``session`` to
    share an ``aiohttp.ClientSession``; the publisher then leaves it open.

    ``publish`` batches by itself, by group commit: a publish goes out at once when no
    request of this publisher is in flight; those made while one is share the next
    request, sent as soon as it is answered, of at most ``max_batch`` messages and
    ``max_body_bytes`` (keep both at or below the hub's ``limits.max_batch`` and
    ``limits.max_message_bytes``). Each caller still gets its own receipt or error.
    ``linger_ms`` (default 0) lets a batch formed behind a request in flight wait that much
    longer for company; a publish that finds nothing in flight never waits. ``max_batch=1``
    turns batching off: each publish its own request, sent at once, several in flight
    (and then no order across tasks). A batched publish waits for the request in flight
    (and the linger) before its own, so it may take longer than ``timeout`` in all.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30,
        session: aiohttp.ClientSession | None = None,
        linger_ms: float = 0,
        max_batch: int = 1000,
        max_body_bytes: int = 65_536,
    ) -> None:
        if linger_ms < 0 or max_batch < 1 or max_body_bytes < 1:
            raise ValueError("linger_ms must be >= 0, max_batch and max_body_bytes >= 1")
        self.url = hub_url(url)
        self._broadcast_url = self.url / "broadcast"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout_seconds = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None
        self._batcher = (
            Batcher(
                self._post_bytes,
                str(self._broadcast_url),
                linger_seconds=linger_ms / 1000,
                max_batch=max_batch,
                max_body_bytes=max_body_bytes,
            )
            if max_batch > 1
            else None
        )

    @property
    def waiting(self) -> int:
        """Messages that wait for their batch to go out (0 without batching)."""
        return 0 if self._batcher is None else self._batcher.waiting

    @property
    def in_flight(self) -> int:
        """Messages of the batch in flight, sent and not answered yet (0 without batching)."""
        return 0 if self._batcher is None else self._batcher.in_flight

    async def aclose(self) -> None:
        """Send the messages still waiting for their batch, then close an own session."""
        if self._batcher is not None:
            await self._batcher.aclose()
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
        final: bool = False,
    ) -> Receipt:
        """Publish one message; returns ``{"id", "channels"}`` once the hub stored it
        (maybe in one request with other tasks' messages: see the class docstring)."""
        item = Publication(data, channels, event, client_id, exclude_client_id, retry, final)
        encoded = _encode(item.to_json())
        if self._batcher is None:
            status, answer = await self._post_bytes(encoded)
        else:
            status, answer = await self._batcher.submit(encoded)
        return _receipt(status, answer, str(self._broadcast_url))

    async def publish_batch(self, items: Iterable[Publication]) -> list[Receipt]:
        """Publish several messages in one request: all are published, or none (PublishError)."""
        status, answer = await self._post_bytes(_encode([item.to_json() for item in items]))
        if not isinstance(answer, list):
            raise PublishError(status, answer, str(self._broadcast_url))
        return [_receipt(status, entry, str(self._broadcast_url)) for entry in answer]

    def stream(self, channel: str, *, end: bool = True) -> PublishStream:
        """``async with publisher.stream("job-42") as job: await job.send(data)``: messages
        to ``channel`` as lines of one request, each published as the hub reads it. A normal
        exit ends the channel with a final message unless one was sent or ``end`` is False."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = self._broadcast_url.with_query(channel=channel)
        return PublishStream(self._session, url, self._headers, self._timeout_seconds, end)

    async def _post_bytes(self, payload: bytes) -> tuple[int, object]:
        """POST the JSON body; the status and parsed answer of a 2xx, else PublishError."""
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
            raise connection_error(self.url, exc, self._timeout_seconds) from exc
        answer = body_of(text)
        if not 200 <= status < 300:
            raise PublishError(status, answer, str(self._broadcast_url))
        return status, answer


def _encode(body: JsonValue) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _receipt(status: int, answer: object, url: str) -> Receipt:
    """A 2xx answer that is not a receipt came from something other than the hub."""
    if not (isinstance(answer, dict) and isinstance(answer.get("id"), str)):
        raise PublishError(status, answer, url)
    return cast(Receipt, answer)
