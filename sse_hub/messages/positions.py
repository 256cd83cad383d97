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
- ``publish(drafts)`` returns one message per draft for the receipt: ``channels`` all of
  the draft's channels, ``pos`` the positions of all its parts. Each partition's part is
  all or nothing; across partitions, parts go out in order and a failure of a later part
  raises ``BrokerUnavailable`` after the earlier ones were applied (documented).
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sse_hub.messages.contract import Broker, History
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
