"""Publishing as a stream: ``PublishStream`` sends messages as NDJSON lines of one request.

    async with publisher.stream("job-42") as job:
        await job.send("token")           # published as soon as the hub has the line
        await job.send({"n": 1}, event="progress")
    # leaving the block normally ends the channel with a final message
    print(job.summary)                    # {"published": 3, "first_id": ..., "last_id": ...}

The block's end: unless a final message was sent already (``send(..., final=True)`` or
``end(data)``), a normal exit sends ``{"data": "", "final": true}``: a final message with
empty data, which subscribers receive (an empty ``message``) just before the hub's ``end``
event. To end on real content, send the last message with ``end(data)`` instead.
``Publisher.stream(channel, end=False)`` leaves the channel open. An exception in the
block aborts the request without a final message: the lines sent so far stay published.

Invariants:

- Lines go out in order on one ``POST /broadcast`` (``Content-Type: application/x-ndjson``,
  chunked); what ``send`` queued while the connection was busy goes out in one chunk.
- ``send`` waits only while ``MAX_QUEUED_LINES`` lines are queued (backpressure), and
  raises the hub's refusal (``PublishError``, its body with ``line`` and the counts) as
  soon as the hub answered early, which it does only to refuse: a bad line, a
  ``channel_finished`` channel, or ``limits.publish_stream_idle_seconds`` of silence (408).
- The request task is owned by the stream: cancelled and awaited whatever ends the block.
  Connecting, and the answer after the last line, are bounded by the publisher's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Self, TypedDict, cast

import aiohttp
from yarl import URL

from sse_hub.client.errors import PublishError, body_of, connection_error
from sse_hub.client.json_value import JsonValue

MAX_QUEUED_LINES = 256


class PublishSummary(TypedDict):
    """What the hub answers when a publish stream ends: the count and the ids (None when
    nothing was published)."""

    published: int
    first_id: str | None
    last_id: str | None


class PublishStream:
    """One NDJSON publish request, open while its ``async with`` block runs."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: URL,
        headers: dict[str, str],
        timeout_seconds: float,
        end: bool = True,
    ) -> None:
        self.url = url
        self.summary: PublishSummary | None = None
        self.ended = False
        self._session = session
        self._headers = {**headers, "Content-Type": "application/x-ndjson"}
        self._timeout_seconds = timeout_seconds
        self._end = end
        self._lines: asyncio.Queue[bytes | None] = asyncio.Queue(MAX_QUEUED_LINES)
        self._request: asyncio.Task[tuple[int, object]] | None = None

    async def send(
        self,
        data: JsonValue,
        event: str | None = None,
        *,
        final: bool = False,
        channels: Sequence[str] | None = None,
        retry: int | None = None,
    ) -> None:
        """Queue one message (data as ``Publisher.publish`` takes it); ``channels`` None:
        the stream's channel. ``final``: the channel's last message."""
        if self.ended:
            raise RuntimeError("the publish stream has ended: its final message was sent")
        item: dict[str, object] = {"data": data}
        optional = {"event": event, "channels": _channel_list(channels), "retry": retry, "final": final or None}
        item.update((key, value) for key, value in optional.items() if value is not None)
        line = json.dumps(item, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode() + b"\n"
        self.ended = final
        await self._put(line)

    async def end(self, data: JsonValue = "", event: str | None = None) -> None:
        """Send the final message (``send(data, event, final=True)``)."""
        await self.send(data, event, final=True)

    async def __aenter__(self) -> Self:
        self._request = asyncio.create_task(self._exchange())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                await self._finish()
        finally:
            await self._stop()

    async def _finish(self) -> None:
        if self._end and not self.ended:
            await self.end()
        await self._put(None)
        try:
            status, answer = await asyncio.wait_for(asyncio.shield(self._task()), self._timeout_seconds)
        except TimeoutError as exc:
            raise connection_error(self.url, exc, self._timeout_seconds) from exc
        if not 200 <= status < 300 or not (isinstance(answer, dict) and "published" in answer):
            raise PublishError(status, answer, str(self.url))
        self.summary = cast(PublishSummary, answer)

    async def _stop(self) -> None:
        request = self._task()
        if not request.done():
            request.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await request

    def _task(self) -> asyncio.Task[tuple[int, object]]:
        if self._request is None:
            raise RuntimeError("use the publish stream in 'async with'")
        return self._request

    async def _put(self, line: bytes | None) -> None:
        request = self._task()
        if request.done():
            raise self._refusal()
        if not self._lines.full():
            self._lines.put_nowait(line)
            return
        put = asyncio.ensure_future(self._lines.put(line))
        await asyncio.wait({put, request}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            raise self._refusal()

    def _refusal(self) -> PublishError:
        """The error of a request the hub answered before its end; ``result()`` raises
        the request's own error instead when it failed (``HubConnectionError``)."""
        status, answer = self._task().result()
        return PublishError(status, answer, str(self.url))

    async def _body(self) -> AsyncIterator[bytes]:
        """The queued lines, each wait's worth in one chunk, until the end (None)."""
        while True:
            lines = [await self._lines.get()]
            while not self._lines.empty():
                lines.append(self._lines.get_nowait())
            chunk = b"".join(line for line in lines if line is not None)
            if chunk:
                yield chunk
            if lines[-1] is None:
                return

    async def _exchange(self) -> tuple[int, object]:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout_seconds)
        try:
            async with self._session.post(
                self.url, data=self._body(), headers=self._headers, timeout=timeout, allow_redirects=False
            ) as response:
                status, text = response.status, await response.text(encoding="utf-8", errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise connection_error(self.url, exc, self._timeout_seconds) from exc
        return status, body_of(text)


def _channel_list(channels: Sequence[str] | None) -> list[str] | None:
    if channels is None:
        return None
    # A bare string is a Sequence[str] too; take it as one channel, not its letters.
    return [channels] if isinstance(channels, str) else list(channels)
