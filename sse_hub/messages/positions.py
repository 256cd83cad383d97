"""What the hub needs of a broker whose ids are per-channel positions (``redis-cluster``).

A sharded broker keeps no cluster-wide sequence: each channel counts its own messages
(``seq`` from 1, with an ``epoch`` that changes when the counter had to start again), so a
message's position is one ``ChannelPosition`` per channel (``message.Message.pos``), and a
stream's position is one ``Position`` per channel it holds (``sse_hub/core/positions/event_ids.py``).

On top of the ``Broker`` contract (whose integer ``history`` it does not serve):

- ``deliver(message)`` gets each *part* of a publish: the message restricted to the
  channels of one partition, with ``pos`` (its position in each of those channels) and
  ``prior`` (the positions of the parts of the same publish that went out before it, in
  other partitions). Per channel, parts arrive in ``seq`` order, each at most once. Direct
  messages and kicks have no ``pos`` and ``id`` 0.
- ``positions(channels)``: each channel's current position, read after ``attach``; a
  channel with no message yet (or whose counter expired) is ``NOWHERE``.
- ``history_after(after, limit)``: the retained parts of the channels of ``after`` whose
  seq is above ``after[channel]`` (all of a channel's retained parts when the epoch
  differs, or the position is ``NOWHERE``), merged across channels by publish time (Redis
  ms, then channel order), at most ``limit`` of them (``complete`` False when more
  remain), plus ``gaps``: per channel, the highest seq above ``after[channel]`` that is no
  longer retained (trimmed by count, expired, or an epoch change), and ``current``.
- ``finished_at(channels)``: of ``channels``, those that have ended (a final message),
  each with the position of its final message (an empty dict when none has); the sharded
  counterpart of ``Broker.finished``. Parts of a final message carry ``final``.
- ``find_publisher_position(channel, event_id)``: the position in ``channel`` of the
  earliest retained message whose publisher gave it the id ``event_id`` (a Mercure
  update's own id), or None. Default: a scan of the channel's history with
  ``history_after``, in pages of ``PUBLISHER_ID_SCAN_PAGE`` (what is retained is read at
  most once). ``find_publisher_id`` answers with that message's ``id``, its seq in the
  first of its channels (the contract's integer; the position also names the epoch).
- ``publish(drafts)`` returns one message per draft for the receipt: ``channels`` all of
  the draft's channels, ``pos`` the positions of all its parts. Each partition's part is
  all or nothing; across partitions, parts go out in order and a failure of a later part
  raises ``BrokerUnavailable`` after the earlier ones were applied (documented).
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sse_hub.messages.contract import PUBLISHER_ID_SCAN_PAGE, Broker, History
from sse_hub.messages.message import Message

# A stream's position in one channel: (seq, epoch) of the last message it has, or NOWHERE.
Position = tuple[int, str]
NOWHERE: Position = (0, "")


@dataclass(frozen=True, slots=True)
class ChannelPage:
    """One page of a sharded replay (see the module docstring)."""

    messages: Sequence[Message]
    complete: bool
    gaps: Mapping[str, int] = field(default_factory=dict)
    current: Mapping[str, Position] = field(default_factory=dict)


class PerChannelBroker(Broker):
    """A broker that numbers each channel on its own (module docstring)."""

    @abc.abstractmethod
    async def positions(self, channels: Collection[str]) -> dict[str, Position]: ...

    @abc.abstractmethod
    async def history_after(self, after: Mapping[str, Position], limit: int) -> ChannelPage: ...

    async def finished_at(self, channels: Collection[str]) -> dict[str, Position]:
        """The channels of ``channels`` that have ended, with their final message's position
        (default: none has, until the broker implements it)."""
        return {}

    async def history(self, channels: Iterable[str], after_id: int, limit: int | None = None) -> History:
        raise TypeError("a sharded broker has no cluster-wide ids: use history_after")

    async def find_publisher_position(self, channel: str, event_id: str) -> Position | None:
        """Where in ``channel`` the earliest retained message published with ``event_id``
        sits (module docstring)."""
        after = NOWHERE
        while True:
            page = await self.history_after({channel: after}, PUBLISHER_ID_SCAN_PAGE)
            for message in page.messages:
                if message.mercure is not None and message.mercure.event_id == event_id:
                    return position_in(message, channel)
            if page.complete or not page.messages:
                return None
            after = position_in(page.messages[-1], channel)

    async def find_publisher_id(self, channel: str, event_id: str) -> int | None:
        position = await self.find_publisher_position(channel, event_id)
        return None if position is None else position[0]


def position_in(message: Message, channel: str) -> Position:
    """``message``'s position in ``channel`` (NOWHERE when it has none there)."""
    for name, seq, epoch in message.pos:
        if name == channel:
            return (seq, epoch)
    return NOWHERE
