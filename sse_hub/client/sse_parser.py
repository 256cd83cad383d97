"""The client's event-stream parser: bytes in, dispatched events out, written from the spec.

Follows WHATWG HTML, section 9.2.6 "Interpreting an event stream"
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
UTF-8 decoding with U+FFFD for invalid bytes, one leading BOM dropped, lines ending at
CRLF, LF or CR (even when a CRLF is split between two reads), and the "last event ID
string" set only when a block is dispatched.

Invariants: it does no I/O and knows nothing of the hub or of aiohttp, so it can be
tested on its own (``subscription`` drives it); data is never altered beyond what the
spec says (no ``str.splitlines()``, which would also split on U+2028 and friends).
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass


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
