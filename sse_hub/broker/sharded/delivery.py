"""Handing received parts to the hub: each position once, per channel in seq order.

Invariants:

1. ``deliver`` gets a part only when one of its positions on a received channel is new to
   this instance (``seen``: the last (seq, epoch) delivered per channel). A part on two
   received channels arrives twice, and recovery overlaps the live subscription: the
   repeats are dropped here. Direct messages and kicks (no positions) always go through.
2. While a channel is being recovered (``recovering``), live parts that touch it are
   held back (``held``) and handed over, in arrival order, after the recovered ones:
   otherwise a live seq 10 delivered before recovered seqs 8 and 9 would make them
   look seen. Held parts are in history (stored before published), so when a recovery
   keeps failing they may be dropped (past ``MAX_HELD``) and read again by the next one.
3. ``messages_received`` counts every payload read, before any check; a malformed one is
   logged and skipped, never raised into the reader.
4. A live part whose seq is more than one past the last delivered on its channel, in the
   same epoch, shows a gap on the live path (a subscription that missed parts, as around
   a failover): the channel is held back as in invariant 2 and handed to the repair
   (``gapped``, ``wake``), which reads the missing parts from history before the held
   ones go out. A gap that history cannot fill either (the parts were lost with a master)
   is ``lost()``, as below.
5. A channel whose epoch changed (its counter started again: the master that held it
   lost its data, or a replica without the last writes took over) may have lost parts
   this instance never received: ``lost()`` is called before the new epoch's first part
   is handed over, so the hub ends its streams and they resume with ``reset``. Except
   after a final part (``ended``): an ended channel is forgotten after
   ``history.finished_ttl_seconds`` and may then start again, so a new epoch whose first
   part delivered here is seq 1 lost nothing.
6. Parts keep every field of their payload, ``final`` included.
7. ``delivered(message)`` follows every part handed to the hub (the broker's arrivals:
   when its own publishes are back here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable

from pydantic import ValidationError

from sse_hub.broker.redis.scripts import describe
from sse_hub.messages.contract import Deliver
from sse_hub.messages.message import Message, message_from_payload
from sse_hub.messages.positions import Position

logger = logging.getLogger(__name__)

MAX_HELD = 100_000


def _nothing(_message: Message) -> None:
    return None


class Delivery:
    def __init__(
        self,
        received: Callable[[], Collection[str]],
        lost: Callable[[], None],
        wake: Callable[[], None],
        delivered: Callable[[Message], None] = _nothing,
    ) -> None:
        """``received()``: the channels this instance receives now; ``lost()``: parts were
        lost (invariants 4 and 5); ``wake()``: a gap needs the repair (invariant 4);
        ``delivered(message)``: a part went to the hub (invariant 7)."""
        self._received = received
        self._lost = lost
        self._wake = wake
        self._delivered = delivered
        #: Channels whose live parts showed a gap, for the repair's next round.
        self.gapped: set[str] = set()
        self.deliver: Deliver | None = None
        self.seen: dict[str, Position] = {}
        #: Received channels whose last part delivered was final (invariant 5).
        self.ended: set[str] = set()
        self.recovering: set[str] = set()
        self.held: list[Message] = []
        self.messages_received = 0

    def receive(self, payload: bytes) -> None:
        self.messages_received += 1
        try:
            message = message_from_payload(payload)
        except ValidationError as exc:
            logger.warning("skipping a malformed message from Redis Cluster: %s", describe(exc))
            return
        recovering = self.recovering
        if recovering and any(channel in recovering for channel, _, _ in message.pos):
            self.held.append(message)
            return
        gaps = self._gaps(message)
        if gaps:
            recovering.update(gaps)
            self.gapped |= gaps
            self.held.append(message)
            self._wake()
            return
        self.hand_over(message)

    def _gaps(self, message: Message) -> set[str]:
        """The received channels on which ``message`` lies more than one past the last part
        delivered, in the same epoch (invariant 4)."""
        received, seen = self._received(), self.seen
        gaps = set()
        for channel, seq, epoch in message.pos:
            held = seen.get(channel)
            if held is not None and epoch == held[1] and seq > held[0] + 1 and channel in received:
                gaps.add(channel)
        return gaps

    def hand_over(self, message: Message) -> None:
        if message.pos and not self._fresh(message):
            return
        deliver = self.deliver
        if deliver is None:
            return
        try:
            deliver(message)
        except Exception:  # the hub's code: one failed fan-out must not stop the reader
            logger.exception("delivering a message failed")
        self._delivered(message)

    def _fresh(self, message: Message) -> bool:
        received, seen = self._received(), self.seen
        fresh = False
        for channel, seq, epoch in message.pos:
            if channel not in received:
                continue
            held = seen.get(channel)
            if held is None or seq > held[0] or epoch != held[1]:
                if held is not None and epoch != held[1]:
                    self._started_again(channel, seq, epoch, held)
                seen[channel] = (seq, epoch)
                if message.final:
                    self.ended.add(channel)
                else:
                    self.ended.discard(channel)
                fresh = True
        return fresh

    def _started_again(self, channel: str, seq: int, epoch: str, held: Position) -> None:
        """A new epoch on ``channel`` (invariant 5): ``lost()``, unless the channel ended
        and this is the first part of its new life."""
        if channel in self.ended and seq == 1:
            logger.debug("redis cluster: ended channel %s was forgotten and starts again", channel)
            return
        logger.warning(
            "redis cluster: channel %s started again (epoch %s, was %s): parts may be lost;"
            " ending the streams so that they resume from history",
            channel,
            epoch,
            held[1],
        )
        self._lost()

    def recovered(self, channels: Iterable[str], messages: Iterable[Message]) -> None:
        """Hand over what recovery read for ``channels``, then the parts held meanwhile."""
        for message in messages:
            self.hand_over(message)
        self.recovering.difference_update(channels)
        held, self.held = self.held, []
        for message in held:
            if any(channel in self.recovering for channel, _, _ in message.pos):
                self.held.append(message)
                continue
            if self._gaps(message):
                logger.warning(
                    "redis cluster: parts before seq %s are missing from history too; ending the streams"
                    " so that they resume from history",
                    [seq for _, seq, _ in message.pos],
                )
                self._lost()
            self.hand_over(message)

    def recovery_failed(self) -> None:
        if len(self.held) > MAX_HELD:
            logger.warning("redis cluster: dropping %d held messages; the next recovery reads them", len(self.held))
            self.held.clear()

    def forget(self, channels: Iterable[str]) -> None:
        """Channels no longer received: their next subscription starts afresh."""
        for channel in channels:
            self.seen.pop(channel, None)
            self.ended.discard(channel)
