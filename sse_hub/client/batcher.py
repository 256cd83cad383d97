"""``Batcher``: concurrent ``Publisher.publish`` calls gathered into one ``POST /broadcast``.

Group commit, as ``broker/redis/publisher.py`` does it: one request is in flight at a time.
A publish that finds none in flight goes out at once (no timer; publishes of the same loop
iteration share its request); what arrives while one is in flight waits and goes out as
the next batch as soon as that one is answered. So a lone publisher that awaits each
publish pays nothing for the batching (one request per publish, no wait), and under load a
batch holds what came in during one round trip. A batch is the longest prefix of the
waiting messages that fits ``max_batch`` messages and ``max_body_bytes`` as one JSON array.
``linger_seconds`` (0 by default) is an optional extra wait for a batch formed behind a
request in flight: it goes out when its oldest message has waited that long, or when it
is full; the first batch after a quiet spell never lingers.

Invariants:

- Each caller gets what a lone publish of its message would have got. A batch of one is
  sent as the plain object, exactly as a lone publish. The hub takes a batch all or
  nothing, so when it refuses one for a reason an item can cause (``SPLIT_STATUSES``:
  invalid, unknown client, channel finished, too large) nothing was published and the
  batch is split in halves and each sent again, down to single messages: a caller whose
  message was fine gets its receipt, the others their own error. Any other failure
  (401, 503, a timeout, a lost connection) goes to every caller of the batch: it would
  have met each of them alone, and a message that may have been published is never sent
  again (a publish is not idempotent).
- Messages go out in the order ``submit`` was called, across tasks: batches are sent one
  at a time, in order, each in order, and a split sends its first half first.
- A body never passes ``max_body_bytes`` unless one message alone does (that one goes
  alone and meets the hub's 413, as it would have alone).
- A caller cancelled before its message went out is left out of every batch (it is not
  published), and so is one cancelled before a refused batch is split; one cancelled
  while its message was in flight may have been published and only loses its answer. Either way
  the others get exactly their own answers, once.
- ``aclose`` sends what waits without lingering and awaits the drain task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sse_hub.client.errors import PublishError

# The hub's refusals an item of a batch can cause by itself (docs/api.md, POST /broadcast).
SPLIT_STATUSES = frozenset({400, 404, 409, 413})

# ``send(body)``: the status and parsed answer of a 2xx, else it raises (PublishError...).
Send = Callable[[bytes], Awaitable[tuple[int, object]]]


@dataclass(slots=True)
class _Entry:
    encoded: bytes
    arrived: float
    answer: asyncio.Future[tuple[int, object]] = field(repr=False)


class Batcher:
    """Gathers encoded messages into batches for ``send``; see the module docstring."""

    def __init__(self, send: Send, url: str, *, linger_seconds: float, max_batch: int, max_body_bytes: int) -> None:
        self._send = send
        self._url = url
        self._linger_seconds = linger_seconds
        self._max_batch = max_batch
        self._max_body_bytes = max_body_bytes
        self._pending: list[_Entry] = []
        self._pending_bytes = 1  # the body of every pending message as one array: "[" a "," b "]"
        self._full = asyncio.Event()
        self._closing = False
        self._drain: asyncio.Task[None] | None = None
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Messages of the request in flight (sent, not answered yet)."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Messages queued and not sent yet (cancelled callers included until dropped)."""
        return len(self._pending)

    def submit(self, encoded: bytes) -> asyncio.Future[tuple[int, object]]:
        """Queue one encoded message; the future resolves to its status and own answer."""
        loop = asyncio.get_running_loop()
        entry = _Entry(encoded, loop.time(), loop.create_future())
        self._pending.append(entry)
        self._pending_bytes += len(encoded) + 1
        if len(self._pending) >= self._max_batch or self._pending_bytes > self._max_body_bytes:
            self._full.set()
        if self._drain is None or self._drain.done():
            self._drain = loop.create_task(self._run())
        return entry.answer

    async def aclose(self) -> None:
        """Send what waits now, and wait until every batch was answered."""
        self._closing = True
        self._full.set()
        try:
            if self._drain is not None:
                await self._drain
        finally:
            self._closing = False

    async def _run(self) -> None:
        # No request was in flight when this drain started: its first batch goes at once.
        behind_a_request = False
        while self._pending:
            if behind_a_request:
                await self._linger()
            batch = self._take()
            if batch:
                await self._deliver(batch)
                behind_a_request = True

    async def _linger(self) -> None:
        """Wait until the oldest message has waited ``linger_seconds`` or a batch is full."""
        if self._closing or self._full.is_set():
            return
        remaining = self._pending[0].arrived + self._linger_seconds - asyncio.get_running_loop().time()
        if remaining > 0:
            try:
                async with asyncio.timeout(remaining):
                    await self._full.wait()
            except TimeoutError:
                pass

    def _take(self) -> list[_Entry]:
        """The longest prefix of live messages within ``max_batch`` and ``max_body_bytes``
        (at least one message); cancelled callers are dropped here, never sent."""
        batch: list[_Entry] = []
        size = 1
        taken = 0
        for entry in self._pending:
            grown = size + len(entry.encoded) + 1
            if batch and (len(batch) >= self._max_batch or grown > self._max_body_bytes):
                break
            taken += 1
            self._pending_bytes -= len(entry.encoded) + 1
            if not entry.answer.done():
                batch.append(entry)
                size = grown
        del self._pending[:taken]
        if len(self._pending) < self._max_batch and self._pending_bytes <= self._max_body_bytes:
            self._full.clear()
        return batch

    async def _deliver(self, batch: list[_Entry]) -> None:
        """Send ``batch`` and give each caller its answer; split a refusal an item may cause."""
        try:
            status, answer = await self._send_counted(batch)
        except PublishError as exc:
            live = [entry for entry in batch if not entry.answer.done()]  # none was published
            if len(batch) > 1 and exc.status in SPLIT_STATUSES:
                middle = len(live) // 2
                for half in (live[:middle], live[middle:]):
                    if half:
                        await self._deliver(half)
                return
            _fail(batch, exc)
            return
        except asyncio.CancelledError:
            for entry in batch:  # the drain was cancelled (the loop is ending): so are they
                entry.answer.cancel()
            raise
        except Exception as exc:  # a task boundary: every caller learns why, none hangs
            _fail(batch, exc)
            return
        if len(batch) == 1:
            _resolve(batch[0], (status, answer))
        elif isinstance(answer, list) and len(answer) == len(batch):
            for entry, receipt in zip(batch, answer, strict=True):
                _resolve(entry, (status, receipt))
        else:
            _fail(batch, PublishError(status, answer, self._url))

    async def _send_counted(self, batch: list[_Entry]) -> tuple[int, object]:
        self._in_flight = len(batch)
        try:
            return await self._send(_body(batch))
        finally:
            self._in_flight = 0


def _body(batch: list[_Entry]) -> bytes:
    if len(batch) == 1:
        return batch[0].encoded
    return b"[" + b",".join(entry.encoded for entry in batch) + b"]"


def _resolve(entry: _Entry, answer: tuple[int, object]) -> None:
    if not entry.answer.done():  # its caller may have been cancelled meanwhile
        entry.answer.set_result(answer)


def _fail(batch: list[_Entry], exc: BaseException) -> None:
    for entry in batch:
        if not entry.answer.done():
            entry.answer.set_exception(exc)
