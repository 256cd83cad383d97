"""This instance's own publishes on their way back through the shard channel links.

The sharded counterpart of ``broker/redis/arrivals.py``. There one sequence orders every
message, so "delivered up to id N" says it all; here each channel is numbered on its own
and publishes run concurrently on different masters, so an arrival waits for a set of
positions: the (seq, epoch) each answered publish got on each channel this instance
receives. ``Broker.arriving`` hands out such arrivals so that the flush can wait for its
own messages and write them together with what is already waiting (``core/flusher.py``
invariant 4).

Invariants:

1. An arrival covers every publish unanswered when it was made. It resolves once each of
   them was answered and, for each of its channel parts on a channel this instance
   receives (``received()``), that position or a later one of the channel was delivered
   here (``delivered``); a failed publish, a direct message and a channel received
   elsewhere wait for nothing.
2. ``lost`` resolves every waiting arrival: a link lost or a slot moved means parts may
   come back late or never (the repair reads them from history), and the flush must not
   wait on that. An arrival may resolve early; the caller may cancel it.
3. Bounded: a cancelled arrival (the flush gave up waiting) is dropped at the next
   delivery, answer or new arrival; an answer is forgotten once it resolves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field

from sse_hub.messages.message import Message
from sse_hub.messages.positions import Position


@dataclass(slots=True)
class _Arrival:
    """One arrival: the answers it still waits for and the positions not yet delivered."""

    future: asyncio.Future[None]
    answers: int
    needed: dict[str, Position] = field(default_factory=dict)

    def settle_if_complete(self) -> bool:
        """Resolve when nothing is left to wait for; True when it is done either way."""
        if self.future.done():
            return True
        if self.answers == 0 and not self.needed:
            self.future.set_result(None)
            return True
        return False


class Arrivals:
    """``received()``: the channels this instance receives now; ``seen``: the last position
    delivered per channel (``Delivery.seen``, read, never written here)."""

    __slots__ = ("_received", "_seen", "_unanswered", "_waiting")

    def __init__(self, received: Callable[[], Collection[str]], seen: Mapping[str, Position]) -> None:
        self._received = received
        self._seen = seen
        # Unanswered publishes -> the arrivals that wait for their answer.
        self._unanswered: dict[asyncio.Future[list[Message]], list[_Arrival]] = {}
        self._waiting: list[_Arrival] = []

    async def tracked(self, publish: Awaitable[list[Message]]) -> list[Message]:
        """``await publish``, unanswered until it returns or fails."""
        answer: asyncio.Future[list[Message]] = asyncio.get_running_loop().create_future()
        self._unanswered[answer] = []
        answer.add_done_callback(self._answered)
        try:
            messages = await publish
        except BaseException:
            answer.cancel()
            raise
        answer.set_result(messages)
        return messages

    def arriving(self) -> asyncio.Future[None] | None:
        """An arrival for every unanswered publish (invariant 1), or None when none is."""
        if not self._unanswered:
            return None
        arrival = _Arrival(asyncio.get_running_loop().create_future(), len(self._unanswered))
        for arrivals in self._unanswered.values():
            arrivals.append(arrival)
        self._waiting = [waiting for waiting in self._waiting if not waiting.future.done()]
        self._waiting.append(arrival)
        return arrival.future

    def delivered(self, message: Message) -> None:
        """``message`` was handed to the hub: settle the arrivals waiting for its positions."""
        if not self._waiting:
            return
        still: list[_Arrival] = []
        for arrival in self._waiting:
            needed = arrival.needed
            for channel, seq, epoch in message.pos:
                wanted = needed.get(channel)
                # Another epoch: the channel started again, what was wanted will not come.
                if wanted is not None and (seq >= wanted[0] or epoch != wanted[1]):
                    del needed[channel]
            if not arrival.settle_if_complete():
                still.append(arrival)
        self._waiting = still

    def lost(self) -> None:
        """Invariant 2: resolve every waiting arrival."""
        waiting, self._waiting = self._waiting, []
        for arrival in waiting:
            if not arrival.future.done():
                arrival.future.set_result(None)

    def _answered(self, answer: asyncio.Future[list[Message]]) -> None:
        arrivals = [arrival for arrival in self._unanswered.pop(answer, ()) if not arrival.future.done()]
        if not arrivals:
            return
        owed = self._owed(answer)
        for arrival in arrivals:
            arrival.answers -= 1
            for channel, position in owed.items():
                wanted = arrival.needed.get(channel)
                if wanted is None or wanted[1] != position[1] or wanted[0] < position[0]:
                    arrival.needed[channel] = position
            if arrival.settle_if_complete() and arrival in self._waiting:
                self._waiting.remove(arrival)

    def _owed(self, answer: asyncio.Future[list[Message]]) -> dict[str, Position]:
        """The positions of ``answer``'s messages that come back here and were not yet
        delivered (channel -> the latest such position)."""
        if answer.cancelled() or answer.exception() is not None:
            return {}
        received, seen = self._received(), self._seen
        owed: dict[str, Position] = {}
        for message in answer.result():
            for channel, seq, epoch in message.pos:
                if channel not in received:
                    continue
                last = seen.get(channel)
                if last is not None and last[1] == epoch and last[0] >= seq:
                    continue
                owed[channel] = (seq, epoch)
        return owed
