"""The connections of one app that aiohttp's server does not track, for the drain.

aiohttp's server lists the connections its request handlers hold. Two kinds are not among
them: live streams handed over to a ``StreamProtocol`` (sse_hub/web/stream_protocol.py), and
connections still held by the publish ``FrontProtocol`` (sse_hub/web/front.py). The drain
(sse_hub/ops/server.py) waits for these too.

Invariants: one ``Connections`` per app (``state.CONNECTIONS``), never process-wide state;
a protocol counts itself in when it takes a connection and out when it loses it, once.
"""

from __future__ import annotations

from typing import Protocol


class Closable(Protocol):
    def close(self) -> None: ...


class Connections:
    __slots__ = ("answered", "fronts", "handed_over", "streams")

    def __init__(self) -> None:
        #: Connections the front holds (it closes them on ``close_fronts``).
        self.fronts: set[Closable] = set()
        #: Live streams handed over from aiohttp, not lost yet.
        self.streams = 0
        #: Requests the front answered itself, and connections it gave to aiohttp
        #: (for tests and profiles).
        self.answered = 0
        self.handed_over = 0

    def __len__(self) -> int:
        return len(self.fronts) + self.streams

    def close_fronts(self) -> None:
        """For the drain: each front closes now when idle, after its answer when busy."""
        for front in list(self.fronts):
            front.close()
