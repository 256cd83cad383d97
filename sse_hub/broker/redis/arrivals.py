"""This instance's own messages on their way back through the subscription.

An instance receives what it publishes like any other instance does: the publish script
writes the pub/sub copy, and the listener delivers it, before or after the script's
answer reaches the publisher. ``Arrivals`` hands out futures that say when the messages
of an unanswered publish group have been delivered here (``Broker.arriving``), so that
the flush can wait for them and write them together with what is already waiting.

Invariants:

1. An arrival resolves once the last message of its group that comes back here (a
   channel message on a channel this instance receives; direct messages go to other
   instances' inboxes) was delivered: at the answer when that already happened or none
   comes back, when the group failed, or when the connection is down.
2. ``lost`` resolves every waiting arrival: nothing comes back while disconnected.
3. Waiting arrivals are kept in id order (groups are answered in order), so a delivery
   settles them from the front; one cancelled meanwhile (its waiter gave up) is dropped
   when it reaches the front.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from functools import partial

from sse_hub.messages.message import Message


class Arrivals:
    """``receives(message)``: whether this instance gets ``message`` back;
    ``delivered_id()``: the highest id delivered here; ``connected()``: whether the
    subscription is up."""

    __slots__ = ("_connected", "_delivered_id", "_receives", "_waiting")

    def __init__(
        self,
        receives: Callable[[Message], bool],
        delivered_id: Callable[[], int],
        connected: Callable[[], bool],
    ) -> None:
        self._receives = receives
        self._delivered_id = delivered_id
        self._connected = connected
        # (id, arrival): arrivals waiting for the delivery of an id, ids ascending.
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    def after(self, answer: asyncio.Future[list[Message]]) -> asyncio.Future[None]:
        """An arrival for the group whose numbered messages ``answer`` will hold."""
        arrival: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        answer.add_done_callback(partial(self._expect, arrival))
        return arrival

    def delivered(self, message_id: int) -> None:
        """``message_id`` was delivered here: resolve the arrivals waiting for it or less."""
        waiting = self._waiting
        while waiting and (waiting[0][0] <= message_id or waiting[0][1].done()):
            _resolve(waiting.popleft()[1])

    def lost(self) -> None:
        """The subscription is down (invariant 2)."""
        waiting, self._waiting = self._waiting, deque()
        for _, arrival in waiting:
            _resolve(arrival)

    def _expect(self, arrival: asyncio.Future[None], answer: asyncio.Future[list[Message]]) -> None:
        """The group was answered: wait for the last of its messages this instance receives."""
        last = 0
        if not answer.cancelled() and answer.exception() is None:
            receives = self._receives
            last = max((m.id for m in answer.result() if receives(m)), default=0)
        if last <= self._delivered_id() or not self._connected():
            _resolve(arrival)
        else:
            self._waiting.append((last, arrival))


def _resolve(arrival: asyncio.Future[None]) -> None:
    if not arrival.done():
        arrival.set_result(None)
