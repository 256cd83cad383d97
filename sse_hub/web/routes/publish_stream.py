"""``POST /broadcast`` with ``Content-Type: application/x-ndjson``: publish as a stream.

One publish item per line (the fields of the JSON form, ``final`` included), each
published on its own (``Hub.publish`` of one draft) as soon as its line has arrived whole.
``?channel=NAME`` is the channel of the lines that name no target. The answer comes after
the last line: ``202 {"published": N, "first_id", "last_id"}`` (ids null when N is 0).

Invariants:

- A line is parsed by the same ``PublishItem`` model as the JSON form, so every check and
  every field is the same; it is published before the next line is parsed.
- The first line that fails (bad JSON or fields, over ``limits.max_message_bytes``, a
  refusal of the hub such as 409 ``channel_finished``) ends the request: its answer is the
  error's status and body plus ``line`` (1-based, counting blank lines) and the counts.
  The lines before it stay published; nothing after it is parsed or published.
- Silence (no byte at all) for ``limits.publish_stream_idle_seconds`` ends the request
  with 408 and the counts, so a stuck producer does not hold a slot forever.
- At most ``limits.max_publish_streams`` requests are open at once (``web/slots.py``);
  past that a new one is 503 ``too_many_publish_streams`` before any line is read.
- Blank lines (only whitespace) are skipped, and a line may end with CRLF.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from aiohttp import StreamReader, web
from pydantic import ValidationError
from pydantic_core import from_json

from sse_hub.core.hub import Hub
from sse_hub.errors import BadRequest, HubError, InvalidChannel, PayloadTooLarge, RequestTimeout
from sse_hub.messages.message import Message, PublishItem, is_valid_channel
from sse_hub.web.access_log import redacted_path
from sse_hub.web.bodies import invalid_body
from sse_hub.web.middleware import hub_error_body
from sse_hub.web.openapi.schemas import PublishStreamSummary
from sse_hub.web.state import HUB, PUBLISH_STREAMS, SETTINGS

NDJSON = "application/x-ndjson"
_TARGET_FIELDS = ("channel", "channels", "client_id")


class LineReader:
    """The lines of a request body: each whole, at most ``max_bytes`` long (413), each
    byte arriving within ``idle_seconds`` of the one before (408)."""

    def __init__(self, content: StreamReader, max_bytes: int, idle_seconds: float) -> None:
        self._content = content
        self._max_bytes = max_bytes
        self._idle_seconds = idle_seconds
        self._buffer = bytearray()
        self._eof = False

    async def next_line(self) -> bytes | None:
        """The next line without its line end, or None at the end of the body."""
        while (end := self._buffer.find(b"\n")) < 0:
            # A line over the bound fails before it ends (+1: it may end with CRLF).
            self._check_size(len(self._buffer) - 1)
            if self._eof:
                rest = bytes(self._buffer)
                self._buffer.clear()
                self._check_size(len(rest))
                return rest or None
            await self._fill()
        line = bytes(self._buffer[:end]).removesuffix(b"\r")
        del self._buffer[: end + 1]
        self._check_size(len(line))
        return line

    def _check_size(self, size: int) -> None:
        if size > self._max_bytes:
            raise PayloadTooLarge(f"a line is over {self._max_bytes} bytes")

    async def _fill(self) -> None:
        try:
            async with asyncio.timeout(self._idle_seconds):
                chunk = await self._content.readany()
        except TimeoutError as exc:
            raise RequestTimeout(f"nothing arrived for {self._idle_seconds}s") from exc
        if chunk:
            self._buffer += chunk
        else:
            self._eof = True


def parse_line(line: bytes, default_channel: str | None) -> PublishItem:
    """One line as a publish item; a line that names no target gets ``default_channel``."""
    try:
        fields = from_json(line)
    except ValueError as exc:
        raise BadRequest("invalid JSON", str(exc)) from exc
    if default_channel is not None and isinstance(fields, dict):
        if all(fields.get(name) is None for name in _TARGET_FIELDS):
            fields["channel"] = default_channel
    try:
        return PublishItem.model_validate(fields)
    except ValidationError as exc:
        raise invalid_body("invalid message", exc) from exc


class Tally:
    """What a publish stream has done so far: the line it is on, the messages published."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.line = 0
        self.published = 0
        self.first: Message | None = None
        self.last: Message | None = None

    def add(self, messages: Sequence[Message]) -> None:
        if messages:
            self.first = self.first or messages[0]
            self.last = messages[-1]
            self.published += len(messages)

    def body(self) -> PublishStreamSummary:
        ids = self.hub.ids
        return {
            "published": self.published,
            "first_id": ids.receipt_id(self.first) if self.first is not None else None,
            "last_id": ids.receipt_id(self.last) if self.last is not None else None,
        }


def default_channel(request: web.Request) -> str | None:
    channel = request.query.get("channel")
    if channel is not None and not is_valid_channel(channel):
        raise InvalidChannel("invalid channel name in ?channel=", {"channel": channel})
    return channel


async def publish_stream(request: web.Request) -> web.Response:
    """The NDJSON form of ``POST /broadcast`` (the module docstring); the caller checked
    the publisher's token."""
    app = request.app
    channel = default_channel(request)
    limits = app[SETTINGS].limits
    tally = Tally(app[HUB])
    with app[PUBLISH_STREAMS].taken():
        reader = LineReader(request.content, limits.max_message_bytes, limits.publish_stream_idle_seconds)
        try:
            await publish_lines(reader, channel, tally)
        except HubError as exc:
            body = {**hub_error_body(exc, redacted_path(request)), **tally.body(), "line": tally.line}
            return web.json_response(body, status=exc.status, headers=exc.headers, dumps=_dumps)
    return web.json_response(tally.body(), status=202, dumps=_dumps)


async def publish_lines(reader: LineReader, channel: str | None, tally: Tally) -> None:
    hub = tally.hub
    while True:
        tally.line += 1
        line = await reader.next_line()
        if line is None:
            return
        if not line.strip():
            continue
        item = parse_line(line, channel)
        try:
            draft = item.to_draft()
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        tally.add(await hub.publish([draft]))


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
