"""What one instance shares with nobody: the directory of a single instance, and one-time
tickets kept in memory (the memory broker's companions, ``messages/contract.py``).

Invariants:

1. ``LocalDirectory`` knows no other instance: ``client_exists`` is False (the hub asks
   only after its own registry said no) and there is no cluster to summarise. Its Mercure
   subscribers are this instance's, in a dict: a page costs one pass over them
   (``heapq.nsmallest``, O(n log limit)), and ``written`` has nothing to wait for.
2. ``MemoryTickets`` holds at most ``max_tickets`` outstanding tickets, in O(log n) per
   ticket with no timer: expired tickets are swept first (a heap by expiry; entries of
   redeemed tickets are dropped when the heap grows to twice the live tickets), then
   ``issue`` raises ``TooManyTickets`` (503, Retry-After). Time is the monotonic
   ``clock`` (injectable, so tests need not sleep).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable

from sse_hub.errors import TooManyTickets
from sse_hub.messages.contract import ClientDirectory, MercureSubscriber, MercureSubscribers, TicketStore

# Heap entries of redeemed tickets are dropped once the heap is this much over twice
# the live tickets (a rebuild costs one pass, paid for by as many redemptions).
_HEAP_SLACK = 1024

Clock = Callable[[], float]


class LocalDirectory(ClientDirectory):
    """A single instance's directory (invariant 1)."""

    def __init__(self) -> None:
        self._mercure: dict[str, MercureSubscriber] = {}

    async def client_exists(self, client_id: str) -> bool:
        return False

    def client_disconnected(self, client_id: str) -> None:
        self._mercure.pop(client_id, None)

    def mercure_subscribed(self, client_id: str, subscriber: MercureSubscriber | None) -> None:
        if subscriber is None:
            self._mercure.pop(client_id, None)
        else:
            self._mercure[client_id] = subscriber

    async def mercure_subscribers(self, after: str | None, limit: int) -> MercureSubscribers:
        return page_of_subscribers(self._mercure, after, limit)

    async def find_mercure_subscriber(self, client_id: str) -> MercureSubscriber | None:
        return self._mercure.get(client_id)


def page_of_subscribers(subscribers: dict[str, MercureSubscriber], after: str | None, limit: int) -> MercureSubscribers:
    """At most ``limit`` of ``subscribers`` in client id order after ``after``."""
    ids: Iterable[str] = subscribers if after is None else (key for key in subscribers if key > after)
    first = heapq.nsmallest(limit + 1, ids)
    next_after = first[limit - 1] if len(first) > limit and limit > 0 else None
    return MercureSubscribers({key: subscribers[key] for key in first[:limit]}, next_after)


class MemoryTickets(TicketStore):
    """One-time stream tickets of one instance (invariant 2)."""

    def __init__(self, max_tickets: int, clock: Clock = time.monotonic) -> None:
        self._max_tickets = max_tickets
        self._clock = clock
        self._tickets: dict[str, tuple[tuple[str, ...], float]] = {}
        self._expiries: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._tickets)

    async def issue(self, ticket: str, patterns: tuple[str, ...], ttl_seconds: int) -> None:
        now = self._clock()
        self._sweep(now)
        if len(self._tickets) >= self._max_tickets:
            raise TooManyTickets(
                f"{len(self._tickets)} one-time tickets are outstanding (limits.max_tickets);"
                " retry when some are used or expire"
            )
        expires_at = now + ttl_seconds
        self._tickets[ticket] = (patterns, expires_at)
        heapq.heappush(self._expiries, (expires_at, ticket))

    async def redeem(self, ticket: str) -> tuple[str, ...] | None:
        entry = self._tickets.pop(ticket, None)
        if len(self._expiries) > 2 * len(self._tickets) + _HEAP_SLACK:
            self._expiries = [(expires_at, key) for key, (_, expires_at) in self._tickets.items()]
            heapq.heapify(self._expiries)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    def _sweep(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            expires_at, ticket = heapq.heappop(expiries)
            entry = self._tickets.get(ticket)
            if entry is not None and entry[1] == expires_at:
                del self._tickets[ticket]
