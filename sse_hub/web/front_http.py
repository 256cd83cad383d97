"""The wire side of ``sse_hub/web/front.py``: which requests are plain, and the answer's bytes.

Invariant: ``plain_request`` accepts a strict subset of what aiohttp's parser accepts
(front.py, invariant 1), so the two never disagree on where a request ends: one request
line, header lines of token names and visible-ASCII values, no name twice, a Host, one
all-digit Content-Length, no Transfer-Encoding; anything else is None and goes to aiohttp
whole. Nor on what it holds: aiohttp refuses a request without Host or with
Sec-WebSocket-Key1, and decodes a body by its Content-Encoding, so those go to it too
(tests/app/test_front_differential.py holds the front to aiohttp's parser).
"""

from __future__ import annotations

import functools
import re
import time
from email.utils import formatdate
from http import HTTPStatus

from aiohttp.http import SERVER_SOFTWARE

_REQUEST_LINE = re.compile(rb"POST (/broadcast|/api/broadcast) HTTP/1\.1")
_HEADER_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?[ \t]*")
_REFUSED = frozenset(
    {b"transfer-encoding", b"expect", b"upgrade", b"connection", b"origin", b"content-encoding", b"sec-websocket-key1"}
)
MAX_HEAD_BYTES = 8190
MAX_HEADERS = 32


class Plain:
    """A plain publish request cut from the buffer: its path, token, body and length."""

    __slots__ = ("authorization", "body", "end", "path")

    def __init__(self, path: str, authorization: str | None, body: bytes, end: int) -> None:
        self.path = path
        self.authorization = authorization
        self.body = body
        self.end = end


def plain_request(buffer: bytes, max_body: int) -> Plain | None:
    """The first request of ``buffer`` when it is plain and whole (invariant 1), else None."""
    head_end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES)
    if head_end < 0:
        return None
    head = plain_head(buffer[:head_end])
    if head is None:
        return None
    path, token, size = head
    start = head_end + 4
    if size > max_body or len(buffer) < start + size:
        return None
    return Plain(path, token, buffer[start : start + size], start + size)


# A publisher sends the same few heads over and over (they differ in Content-Length), so
# a head is parsed once: the cache is keyed by its bytes, and the parse is a pure function
# of them. At most this many heads of at most MAX_HEAD_BYTES each are kept.
HEAD_CACHE_SIZE = 512


@functools.lru_cache(maxsize=HEAD_CACHE_SIZE)
def plain_head(head: bytes) -> tuple[str, str | None, int] | None:
    """A plain head's path, token and body length (invariant 1), or None."""
    lines = head.split(b"\r\n")
    line = _REQUEST_LINE.fullmatch(lines[0])
    if line is None or len(lines) > MAX_HEADERS:
        return None
    headers: dict[bytes, bytes] = {}
    for header in lines[1:]:
        match = _HEADER_LINE.fullmatch(header)
        name = match[1].lower() if match is not None else b""
        if match is None or name in headers or name in _REFUSED:
            return None
        headers[name] = match[2] or b""
    if b"host" not in headers:
        return None  # aiohttp answers 400 to an HTTP/1.1 request without one (RFC 9112, section 3.2)
    length = headers.get(b"content-length", b"")
    if not length.isdigit() or len(length) > 9 or headers.get(b"content-type") != b"application/json":
        return None
    token = headers.get(b"authorization")
    return line[1].decode(), token.decode() if token is not None else None, int(length)


_PLAIN_STARTS = (b"POST /broadcast HTTP/1.1\r\n", b"POST /api/broadcast HTTP/1.1\r\n")


def head_incomplete(buffer: bytes) -> bool:
    """Whether ``buffer`` may still become a plain request's head: no blank line yet, under
    the head limit, and the start of a plain request line so far."""
    if b"\r\n\r\n" in buffer or len(buffer) >= MAX_HEAD_BYTES:
        return False
    return any(buffer.startswith(start) or start.startswith(buffer) for start in _PLAIN_STARTS)


_date: tuple[int, bytes] = (0, b"")
_SERVER = b"Server: " + SERVER_SOFTWARE.encode("latin-1") + b"\r\n"


def _date_and_server() -> bytes:
    """The Date and Server lines; the date formatted once a second (as aiohttp does)."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, b"Date: " + formatdate(now, usegmt=True).encode("latin-1") + b"\r\n" + _SERVER)
    return _date[1]


@functools.cache
def _status_head(status: int) -> bytes:
    phrase = HTTPStatus(status).phrase
    return f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json; charset=utf-8\r\n".encode()


def response_bytes(status: int, body: bytes, headers: dict[str, str]) -> bytes:
    """An HTTP/1.1 answer with a JSON body, headers as aiohttp writes them for one."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1") if headers else b""
    return b"%bContent-Length: %d\r\n%b%b\r\n%b" % (_status_head(status), len(body), _date_and_server(), extra, body)
