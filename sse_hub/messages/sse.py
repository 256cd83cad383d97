"""The SSE wire format: one pure module that turns events into bytes.

Rules (WHATWG HTML, "Server-sent events", section 9.2.6 "Interpreting an event stream"):

- The stream is UTF-8. A line ends with CRLF, LF or CR; a blank line dispatches the event.
- Every line of the payload gets its own ``data:`` prefix, whatever its line ending, so no
  payload can inject a field or end a frame early. We split on CRLF, CR and LF only, never
  with ``str.splitlines()``, which also splits on U+2028, U+0085 and friends and would
  change the payload the client reassembles.
- A field value starts after ``": "``; the parser strips exactly one leading space, so we
  always write ``"data: "`` and a payload line that starts with a space survives.
- ``id`` and ``event`` values can never carry CR or LF (they would end the line), and
  ``id`` can never carry NUL (the spec ignores such an id). We reject them, we don't strip.
  An empty event name is rejected too: the client would read it as ``message``.
- ``retry`` is an ASCII decimal integer; anything else (a minus sign) is ignored by the
  client, so a negative value is a programming error here.
- A message whose data is the empty string is still a message: one ``data:`` line.

Each function returns the SSE frame as bytes; ``chunk()`` wraps a frame in HTTP/1.1
chunked framing so the hub can encode a message once, framing included, and hand the
same bytes to every socket. A zero-length chunk is the end of the body (RFC 9112, 7.1),
so ``chunk()`` refuses empty bytes rather than end a stream by accident.
"""

from __future__ import annotations

import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FORBIDDEN_IN_FIELD = re.compile(r"[\r\n\x00]")

HEARTBEAT = b": ping\n\n"


class FieldError(ValueError):
    """An id or event name that cannot be written as an SSE field."""


def check_field(name: str, value: str) -> None:
    """Raise FieldError if ``value`` carries CR, LF or NUL."""
    if _FORBIDDEN_IN_FIELD.search(value):
        raise FieldError(f"{name} must not contain CR, LF or NUL")


def check_retry(retry_ms: int) -> None:
    """Raise FieldError unless ``retry_ms`` is a non-negative integer."""
    if retry_ms < 0:
        raise FieldError("retry must not be negative")


def split_lines(data: str) -> list[str]:
    """Split a payload into lines at CRLF, CR and LF only (never U+2028 and friends)."""
    return _LINE_BREAK.split(data)


def encode_event(
    data: str,
    event: str = "message",
    event_id: str | None = None,
    retry_ms: int | None = None,
) -> bytes:
    """Encode one event as an SSE frame ending with a blank line.

    ``event: message`` is omitted because it is what the client assumes without it.
    Data of one line (no CR, no LF: most events) skips the split.
    """
    head = ""
    if event_id is not None:
        check_field("id", event_id)
        head = f"id: {event_id}\n"
    if event != "message":
        if not event:
            raise FieldError("event must not be empty")
        check_field("event", event)
        head += f"event: {event}\n"
    if retry_ms is not None:
        check_retry(retry_ms)
        head += f"retry: {retry_ms:d}\n"
    if "\n" in data or "\r" in data:
        lines = "".join(f"data: {line}\n" for line in split_lines(data))
        return f"{head}{lines}\n".encode()
    return f"{head}data: {data}\n\n".encode()


def encode_retry(retry_ms: int) -> bytes:
    """A frame that only sets the client's reconnection delay (dispatches no event)."""
    check_retry(retry_ms)
    return b"retry: %d\n\n" % retry_ms


def chunk(frame: bytes) -> bytes:
    """Wrap bytes in one HTTP/1.1 chunk (RFC 9112, section 7.1)."""
    if not frame:
        raise ValueError("an empty chunk would end the HTTP body")
    return b"%x\r\n%b\r\n" % (len(frame), frame)
