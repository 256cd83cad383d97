"""A raw HTTP/1.1 exchange over a socket, for requests a well-behaved client library would
refuse to send: the status and headers at once, then the body or SSE events on demand;
every read bounded by ``TIMEOUT``."""

from __future__ import annotations

import asyncio
import codecs
import json
from dataclasses import dataclass, field
from typing import Any

from tests.support.sse_client import Event, SseParser

TIMEOUT = 5


@dataclass
class RawReply:
    """The status and headers of one raw exchange, then the body on demand; every read
    is bounded by ``TIMEOUT``."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int
    headers: dict[str, str]
    parser: SseParser = field(default_factory=SseParser)
    _decoder: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")())
    _events: list[Event] = field(default_factory=list)

    @property
    def is_stream(self) -> bool:
        return self.status == 200 and self.headers.get("content-type", "").startswith("text/event-stream")

    async def body(self) -> bytes:
        """The whole body of a response with a Content-Length (or one ended by close)."""
        async with asyncio.timeout(TIMEOUT):
            length = self.headers.get("content-length")
            if length is not None:
                return await self.reader.readexactly(int(length))
            return await self.reader.read()

    async def json(self) -> Any:
        return json.loads(await self.body())

    async def next_event(self) -> Event:
        """The next SSE event of a chunked stream (RFC 9112, 7.1)."""
        async with asyncio.timeout(TIMEOUT):
            while not self._events:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                data = await self.reader.readexactly(size + 2)
                if size == 0:
                    raise EOFError("the stream ended")
                self._events.extend(self.parser.feed(self._decoder.decode(data[:-2])))
        return self._events.pop(0)

    def close(self) -> None:
        self.writer.close()


async def raw_request(port: int, request: bytes) -> RawReply:
    """Send ``request`` as bytes to 127.0.0.1:``port`` and read the status and headers."""
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
        except BaseException:
            writer.close()
            raise
    status_line, *lines = head.decode("latin-1").removesuffix("\r\n\r\n").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return RawReply(reader, writer, int(status_line.split(" ")[1]), headers)


def get_request(target: bytes, *headers: bytes) -> bytes:
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1", *headers, b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def status_of(port: int, request: bytes) -> int:
    reply = await raw_request(port, request)
    reply.close()
    return reply.status
