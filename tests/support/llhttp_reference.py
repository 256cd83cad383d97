"""aiohttp's own reading of a byte stream: the reference the front's parser is held to.

The parser is the one aiohttp's server builds for each connection (``RequestHandler`` in
aiohttp/web_protocol.py), with the server's limits: llhttp (``aiohttp._http_parser``, what
runs in production) or its pure-Python twin (what runs when aiohttp's C extensions are
not there). The stream is fed one byte at a time, the finest split a socket can make, so
the offset where each request ends is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from aiohttp import _http_parser
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import HttpRequestParserPy

PARSERS: dict[str, Any] = {"llhttp": _http_parser.HttpRequestParser, "python": HttpRequestParserPy}
# aiohttp's server defaults (web_protocol.RequestHandler), which sse-hub keeps.
SERVER_LIMITS = {"max_line_size": 8190, "max_field_size": 8190, "max_headers": 128}
# The body bytes a parser buffers before it pauses (``read_bufsize``): far above the bodies here.
READ_BUFSIZE = 2**18


@dataclass(frozen=True)
class Request:
    """One whole request as a parser reads it."""

    method: str
    target: str
    version: tuple[int, int]
    headers: tuple[tuple[bytes, bytes], ...]  # names and values as sent, in order
    body: bytes | None  # None: aiohttp cannot decode it (its Content-Encoding)
    end: int  # the offset just past its last byte
    keep_alive: bool = True
    upgrade: bool = False
    chunked: bool = False


@dataclass(frozen=True)
class Reading:
    """The whole requests aiohttp reads from a stream, and where it stops reading."""

    requests: tuple[Request, ...]
    # Why it reads no further: a 400 at ``stop`` (the offending byte), an upgrade, a body
    # it cannot decode, or "" when it waits for more bytes.
    error: str
    stop: int

    def describe(self) -> str:
        """Where aiohttp stops reading, for an assertion message."""
        if self.error:
            return f"aiohttp reads {len(self.requests)} request(s), then stops at offset {self.stop}: {self.error}"
        return f"aiohttp reads {len(self.requests)} whole request(s) and waits for more bytes"


def read_stream(stream: bytes, parser_name: str = "llhttp") -> Reading:
    """What aiohttp's request parser makes of ``stream``, fed a byte at a time."""
    with contextlib.closing(asyncio.new_event_loop()) as loop:  # the body streams' loop; never run
        parser = PARSERS[parser_name](BaseProtocol(loop), loop, READ_BUFSIZE, **SERVER_LIMITS)
        requests: list[Request] = []
        pending: list[tuple[Any, Any]] = []  # (message, body stream) whose body is still arriving
        for offset in range(len(stream)):
            try:
                messages, upgraded, _ = parser.feed_data(stream[offset : offset + 1])
            except HttpProcessingError as exc:
                return Reading(tuple(requests), f"400 {exc.message}", offset)
            pending.extend(messages)
            while pending and (pending[0][1].is_eof() or pending[0][1].exception() is not None):
                requests.append(_request(*pending.pop(0), offset + 1))
                if requests[-1].body is None:
                    return Reading(tuple(requests), "the body cannot be decoded (its Content-Encoding)", offset)
            if upgraded:
                return Reading(tuple(requests), "upgraded: the rest is not HTTP", offset + 1)
        return Reading(tuple(requests), "", len(stream))


def _request(message: Any, body: Any, end: int) -> Request:
    return Request(
        method=message.method,
        target=message.path,
        version=tuple(message.version),
        headers=tuple(message.raw_headers),
        body=body.read_nowait(-1) if body.exception() is None else None,
        end=end,
        keep_alive=not message.should_close,
        upgrade=bool(message.upgrade),
        chunked=bool(message.chunked),
    )
