"""The Flusher: writes every dirty subscriber's outbox once per loop iteration.

Invariants:

1. A subscriber marked dirty is flushed once per mark, in the order marked (oldest first):
   whatever is offered to it before its turn joins the same write.
2. At most ``MAX_WRITES_PER_ROUND`` sockets are written per loop iteration; the rest wait
   for the next iteration, so the loop reads new publishes in between.
3. The Flusher never awaits and never writes itself: ``Subscriber.flush`` is the one
   writer of each socket.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Flushable(Protocol):
    def flush(self, now: float) -> None: ...


# Sockets written per loop iteration. A message to 10,000 subscribers is 10,000 writes
# (~100 ms of one core); writing them in rounds lets the loop read the next publishes in
# between, and whatever they add to a subscriber still waiting joins its outbox, so one
# write carries several messages (bench: S4 p99 about halved; docs/performance.md).
MAX_WRITES_PER_ROUND = 1000


class Flusher:
    """Writes every dirty subscriber's outbox once, in rounds of at most
    ``MAX_WRITES_PER_ROUND`` sockets per loop iteration, oldest first."""

    __slots__ = ("_dirty", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[Flushable] = []
        self._scheduled = False

    def mark(self, subscriber: Flushable) -> None:
        self._dirty.append(subscriber)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        dirty = self._dirty
        if len(dirty) > MAX_WRITES_PER_ROUND:
            batch = dirty[:MAX_WRITES_PER_ROUND]
            del dirty[:MAX_WRITES_PER_ROUND]
            asyncio.get_running_loop().call_soon(self.flush)  # still scheduled: the rest next iteration
        else:
            batch, self._dirty = dirty, []
            self._scheduled = False
        now = time.time()
        for subscriber in batch:
            subscriber.flush(now)
