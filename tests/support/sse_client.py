"""A spec parser for event streams and a small async reader for tests.

``SseParser`` follows WHATWG HTML, 9.2.6 "Interpreting an event stream", line by line:
lines end at CRLF, LF or CR; a blank line dispatches; ``data`` values are joined with LF;
``event`` defaults to ``message``; ``id`` containing NUL is ignored; comments are kept
separately so tests can see heartbeats. It is written from the spec, not from sse.py.
"""

from __future__ import annotations

import asyncio
import codecs
import json
from dataclasses import dataclass, field

from aiohttp import ClientResponse


@dataclass
class Event:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None

    def json(self) -> object:
        return json.loads(self.data)


@dataclass
class SseParser:
    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retries: list[int] = field(default_factory=list)
    last_event_id: str = ""
    _buffer: str = ""
    _data: list[str] = field(default_factory=list)
    _has_data: bool = False
    _event: str = ""
    _id: str | None = None
    _retry: int | None = None
    _pending_cr: bool = False

    def feed(self, text: str) -> list[Event]:
        """Feed decoded text; returns the events dispatched by it."""
        before = len(self.events)
        self._buffer += text
        while True:
            index = _line_end(self._buffer)
            if index is None:
                break
            line, ending_length = self._buffer[:index], 1
            if self._buffer[index] == "\r" and self._buffer[index + 1 : index + 2] == "\n":
                ending_length = 2
            elif self._buffer[index] == "\r" and index + 1 == len(self._buffer):
                break  # a CR at the end may be the first half of CRLF: wait for more
            self._buffer = self._buffer[index + ending_length :]
            self._line(line)
        return self.events[before:]

    def _line(self, line: str) -> None:
        if line == "":
            self._dispatch()
            return
        if line.startswith(":"):
            self.comments.append(line[1:].removeprefix(" "))
            return
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._id = value
                self.last_event_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)
                self.retries.append(int(value))

    def _dispatch(self) -> None:
        if self._has_data:
            self.events.append(Event("\n".join(self._data), self._event or "message", self._id, self._retry))
        self._data, self._has_data, self._event, self._id, self._retry = [], False, "", None, None


def _line_end(buffer: str) -> int | None:
    for index, char in enumerate(buffer):
        if char in "\r\n":
            return index
    return None


def parse(text: str) -> list[Event]:
    return SseParser().feed(text)


class EventStream:
    """Reads events from an open SSE response, each wait bounded by a timeout."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response
        self.parser = SseParser()
        # Incremental: a UTF-8 character may be split across two reads.
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._queue: list[Event] = []

    async def next(self, timeout: float = 5) -> Event:
        async with asyncio.timeout(timeout):
            while not self._queue:
                chunk = await self.response.content.readany()
                if not chunk:
                    raise EOFError("stream ended")
                self._queue.extend(self.parser.feed(self._decoder.decode(chunk)))
        return self._queue.pop(0)

    async def next_message(self, timeout: float = 5) -> Event:
        """The next event that is neither ``connected`` nor ``reset``."""
        while True:
            event = await self.next(timeout)
            if event.event not in ("connected", "reset"):
                return event

    async def take(self, count: int, timeout: float = 5) -> list[Event]:
        return [await self.next(timeout) for _ in range(count)]

    async def read_until_closed(self, timeout: float = 5) -> str:
        """The rest of the body as text, once the server ends the stream."""
        async with asyncio.timeout(timeout):
            rest = await self.response.content.read()
        text = self._decoder.decode(rest, final=True)
        self._queue.extend(self.parser.feed(text))
        return text

    def drain(self) -> list[Event]:
        """The events parsed and not read yet (after ``read_until_closed``: the rest)."""
        events, self._queue = self._queue, []
        return events

    async def connected(self, timeout: float = 5) -> Event:
        event = await self.next(timeout)
        assert event.event == "connected", event
        return event
