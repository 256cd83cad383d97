"""The Flusher: writes every dirty subscriber's outbox once per loop iteration.

Invariants:

1. A subscriber marked dirty is flushed once per mark, in the order marked (oldest first):
   whatever is offered to it before its turn joins the same write.
2. At most ``round_size(subscribers)`` sockets are written per loop iteration (a quarter of
   the hub's subscribers, within ``MIN_WRITES_PER_ROUND`` and ``MAX_WRITES_PER_ROUND``);
   the rest wait for the next iteration, so the loop reads new publishes in between.
3. The Flusher never awaits and never writes itself: ``Subscriber.flush`` is the one
   writer of each socket.
4. Each round waits at most once before its writes, for at most ``HOLD_SECONDS``, and
   only while the broker says messages this instance published are on their way back to
   it (``Broker.arriving``): they then join the same writes instead of needing a second
   write to every subscriber. A broker that delivers during publish never holds it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import Protocol


class Flushable(Protocol):
    def flush(self, now: float) -> None: ...


# Sockets written per loop iteration: a fan-out goes out in about four rounds, so the loop
# reads publishes between them (why these numbers: docs/performance.md, "Flush rounds").
ROUNDS_PER_FAN_OUT = 4
MIN_WRITES_PER_ROUND = 100
MAX_WRITES_PER_ROUND = 1000

# The longest a round waits for this instance's own publishes to come back from the broker
# (invariant 4; why 2 ms: docs/performance.md, "Flush rounds").
HOLD_SECONDS = 0.002


def round_size(subscribers: int) -> int:
    """Sockets a flush round writes when the hub has ``subscribers`` streams."""
    quarter = -(-subscribers // ROUNDS_PER_FAN_OUT)
    return min(MAX_WRITES_PER_ROUND, max(MIN_WRITES_PER_ROUND, quarter))


def _nothing_arriving() -> asyncio.Future[None] | None:
    return None


def _nobody() -> int:
    return 0


class Flusher:
    """Writes every dirty subscriber's outbox once, in rounds of at most
    ``round_size(subscribers())`` sockets per loop iteration, oldest first."""

    __slots__ = ("_arriving", "_dirty", "_scheduled", "_subscribers")

    def __init__(
        self,
        arriving: Callable[[], asyncio.Future[None] | None] = _nothing_arriving,
        subscribers: Callable[[], int] = _nobody,
    ) -> None:
        self._arriving = arriving
        self._subscribers = subscribers
        self._dirty: list[Flushable] = []
        self._scheduled = False

    def mark(self, subscriber: Flushable) -> None:
        self._dirty.append(subscriber)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._begin)

    def _begin(self) -> None:
        """Flush a round now, or once the messages of our own publish in flight are back
        (invariant 4)."""
        arrival = self._arriving()
        if arrival is None or arrival.done():
            self.flush()
            return
        timer = asyncio.get_running_loop().call_later(HOLD_SECONDS, arrival.cancel)
        arrival.add_done_callback(partial(self._held, timer))

    def _held(self, timer: asyncio.TimerHandle, _arrival: asyncio.Future[None]) -> None:
        timer.cancel()
        self.flush()

    def flush(self) -> None:
        dirty = self._dirty
        size = round_size(self._subscribers())
        if len(dirty) > size:
            batch = dirty[:size]
            del dirty[:size]
            asyncio.get_running_loop().call_soon(self._begin)  # still scheduled: the next round, held or not
        else:
            batch, self._dirty = dirty, []
            self._scheduled = False
        now = time.time()
        for subscriber in batch:
            subscriber.flush(now)
