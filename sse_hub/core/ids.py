"""The id scheme: what differs between one id sequence and per-channel positions, in one seam.

A hub is built with one ``IdScheme``, chosen once with its broker (``web/app.py``): the
memory, Redis and one-slot Redis Cluster brokers number every message in one sequence
(``SequenceIds``, here); the sharded Redis Cluster broker numbers each channel on its own
(``core.positions.replay.PositionIds``). The scheme answers everything that depends on it:

- ``placement``: how a stream's subscriber takes messages (None: by one integer floor;
  else positions per channel, ``core.subscriber.Placement``);
- ``prepare`` and ``next_page``: the preamble and the replay's pages of a resume (or of
  ``?from=start``), and what a stream is owed of channels that ended: their ``end``
  events, or nothing at all (``prepare`` returns None: ``204``), judged by the scheme's
  own positions (an id at or past a channel's final message);
- ``dispatcher``: the callback the broker delivers received messages to;
- ``receipt_id``: the id a publish receipt carries (what a stream on exactly the
  message's channels shows for it);
- ``start_mercure``: where a Mercure stream's replay starts for its cursor, its first page
  and the cursor response header (``mercure/replay.py``: the feed read by sequence, or by
  position); ``next_page`` then reads the feed the same way, filtered;
- ``last_mercure_id``: the id of the feed's last update, a cursor that resumes right after
  it (``earliest`` before any): the subscriptions API's ``lastEventID``.

Invariant: the hub asks the scheme and never branches on which one it has.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from functools import partial
from typing import Protocol

from sse_hub.core import replay
from sse_hub.core.streams import Placement
from sse_hub.core.subscriber import Subscriber
from sse_hub.mercure import replay as mercure_replay
from sse_hub.mercure.ids import Cursor
from sse_hub.messages.contract import Broker, Deliver, History
from sse_hub.messages.mercure import FEED_CHANNEL, hub_event_id
from sse_hub.messages.message import Message

# An id above any the sequence will reach: a history read after it returns only last_id.
_PAST_EVERY_ID = 1 << 62


class Dispatching(replay.Hub, Protocol):
    """What a scheme's dispatcher needs of the hub (``core.hub.Hub``)."""

    @property
    def observe_fanout(self) -> Callable[[float], None] | None: ...
    def dispatch(self, message: Message) -> None: ...
    def targets(self, message: Message) -> Collection[Subscriber]: ...


class MercureReplaying(replay.Hub, Protocol):
    """What starting a Mercure replay needs of the hub (``core.hub.Hub``)."""

    @property
    def broker(self) -> Broker: ...


class IdScheme(Protocol):
    def placement(self, channels: tuple[str, ...]) -> Placement | None: ...

    async def prepare(self, hub: replay.Hub, subscriber: Subscriber, start: replay.StartAt) -> replay.Prepared: ...

    async def next_page(self, hub: replay.Hub, subscriber: Subscriber, told_through: int) -> History | None: ...

    def dispatcher(self, hub: Dispatching) -> Deliver: ...

    def receipt_id(self, message: Message) -> str: ...

    async def start_mercure(
        self, hub: MercureReplaying, subscriber: Subscriber, cursor: Cursor
    ) -> tuple[History, str]: ...

    async def last_mercure_id(self, broker: Broker) -> str: ...


class SequenceIds:
    """One cluster-wide sequence: a stream's position is one integer (``core/replay.py``)."""

    def placement(self, channels: tuple[str, ...]) -> None:
        return None  # the subscriber's floor decides

    async def prepare(self, hub: replay.Hub, subscriber: Subscriber, start: replay.StartAt) -> replay.Prepared:
        return await replay.prepare(hub, subscriber, start)

    async def next_page(self, hub: replay.Hub, subscriber: Subscriber, told_through: int) -> History | None:
        return await replay.next_page(hub, subscriber, told_through)

    def dispatcher(self, hub: Dispatching) -> Deliver:
        return hub.dispatch

    def receipt_id(self, message: Message) -> str:
        return str(message.id)

    async def start_mercure(self, hub: MercureReplaying, subscriber: Subscriber, cursor: Cursor) -> tuple[History, str]:
        """The feed by the hub's sequence: the stream's floor is the cursor's update."""
        history, after, header = await mercure_replay.start(hub.broker, cursor, partial(hub.replay_page, subscriber))
        if after is not None:
            subscriber.resume_after(after)
        return history, header

    async def last_mercure_id(self, broker: Broker) -> str:
        """``#<n>`` of the hub's last message: a cursor for the feed even when ``n`` was no
        Mercure update (the feed's replay starts after it all the same)."""
        last = (await broker.history((FEED_CHANNEL,), _PAST_EVERY_ID, limit=1)).last_id
        return hub_event_id(last) if last > 0 else "earliest"


SEQUENCE_IDS = SequenceIds()
