"""The id scheme of per-channel positions (``PositionIds``, the sharded broker's): opening and
replaying a stream, dispatching received parts, receipt ids.

The same steps as ``core/replay.py`` for one sequence, with positions instead of a floor
(``sse_hub/core/positions/event_ids.py``):

1. attach the stream's channels (the hub did), then read where each channel is now: the
   stream starts there, so it gets every part published after ``connected``;
2. a ``Last-Event-ID`` that is not an id of this stream's channels, or is ahead of a
   channel in the same epoch, starts with ``reset`` (``unknown_id``) from now;
3. otherwise the stream moves to the id's positions (``?from=start``: nowhere in every
   channel) and replays each channel after its position; a channel whose history no longer
   reaches back there (trimmed, expired, or its counter started again) starts with
   ``reset`` (``history_expired``), and the stream skips to what is retained;
4. channels that have ended (``PerChannelBroker.finished_at``) are owed their ``end`` after
   the replay; a stream whose channels all ended, with no position or one at or past each
   final message (same epoch, seq at or above), gets nothing at all (None: ``204``).

A Mercure stream (on the feed channel, ``hub.replay_filter`` keeps what it may see) has a
position in the feed only: ``start_mercure`` moves it to its cursor's position
(``mercure/replay.py``, ``start_at_position``) and ``next_page`` reads the feed after it,
filtered; the update keeps its own id on the wire (``core/positions/subscriber.py``).

Invariant: a later page that finds a new gap ends the stream (``None`` from
``next_page``), so the client reconnects and is told, never silently short.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import cast

from sse_hub.core.ids import Dispatching
from sse_hub.core.positions.event_ids import StreamPosition, receipt_id
from sse_hub.core.positions.subscriber import ChannelPlacement, Encoded
from sse_hub.core.replay import Hub, Prepared, StartAt, owe_ends
from sse_hub.core.subscriber import Subscriber
from sse_hub.mercure import replay as mercure_replay
from sse_hub.mercure.ids import Cursor
from sse_hub.messages.contract import Broker, Deliver, History
from sse_hub.messages.mercure import FEED_CHANNEL, hub_event_id
from sse_hub.messages.message import GLOBAL_CHANNEL, Message
from sse_hub.messages.positions import NOWHERE, ChannelPage, PerChannelBroker, Position


class PositionIds:
    """Per-channel positions: each channel numbers its own messages (``IdScheme``)."""

    def __init__(self, broker: PerChannelBroker) -> None:
        self._broker = broker

    def placement(self, channels: tuple[str, ...]) -> ChannelPlacement:
        return ChannelPlacement(channels)

    async def prepare(self, hub: Hub, subscriber: Subscriber, start: StartAt) -> Prepared:
        return await prepare(hub, self._broker, subscriber, start)

    async def next_page(self, hub: Hub, subscriber: Subscriber, told_through: int) -> History | None:
        accepts = hub.replay_filter(subscriber)
        if accepts is None:
            return await next_page(hub, self._broker, subscriber)
        at = placement_of(subscriber).positions.snapshot()[FEED_CHANNEL]
        page = await mercure_replay.read_position_page(self._broker, accepts, at, hub.replay_page_size)
        return None if page.gaps else _page(page.messages, page.complete)

    async def start_mercure(self, hub: Hub, subscriber: Subscriber, cursor: Cursor) -> tuple[History, str]:
        """The feed by position: the stream moves to its cursor's position in the feed."""
        accepts = hub.replay_filter(subscriber) or _nothing
        limit = hub.replay_page_size
        page, after, header = await mercure_replay.start_at_position(self._broker, cursor, accepts, limit)
        if after is not None:
            placement_of(subscriber).positions.move_to({FEED_CHANNEL: after})
        return _page(page.messages, page.complete), header

    async def last_mercure_id(self, broker: Broker) -> str:
        """``#<seq>.<epoch>``: the feed's current position (``earliest`` before any update)."""
        seq, epoch = (await self._broker.positions((FEED_CHANNEL,))).get(FEED_CHANNEL, NOWHERE)
        return hub_event_id(seq, epoch) if seq > 0 else "earliest"

    def dispatcher(self, hub: Dispatching) -> Deliver:
        def dispatch_part(message: Message) -> None:
            """Each stream decides by its positions, and streams that show the same id share
            one encoding (``core/positions/subscriber.py``)."""
            if message.kick:
                hub.dispatch(message)
                return
            observe = hub.observe_fanout
            if observe is not None and message.published_at:
                observe(time.time() - message.published_at)
            encoded: Encoded = {}
            exclude = message.exclude_client_id
            for subscriber in hub.targets(message):
                if subscriber.client_id != exclude:
                    placement_of(subscriber).offer(subscriber, message, encoded)
                elif message.final:
                    # The excluded stream still owes its ends (as ``Fanout.dispatch`` on one sequence).
                    placement_of(subscriber).offer(subscriber, message, encoded, excluded=True)

        return dispatch_part

    def receipt_id(self, message: Message) -> str:
        return receipt_id(message)


def placement_of(subscriber: Subscriber) -> ChannelPlacement:
    """The placement ``PositionIds.new_subscriber`` gave every subscriber of this scheme."""
    return cast(ChannelPlacement, subscriber.placement)


async def prepare(hub: Hub, broker: PerChannelBroker, subscriber: Subscriber, start: StartAt) -> Prepared:
    """Steps 1-4 of the module docstring, after the preamble ``hub.open_preamble`` built."""
    preamble = hub.open_preamble(subscriber)
    current = await broker.positions((*subscriber.channels, GLOBAL_CHANNEL))
    ended = await broker.finished_at(subscriber.channels)
    positions = StreamPosition(subscriber.channels, current)
    placement_of(subscriber).start_at(positions)
    last_event_id = start.last_event_id
    if not last_event_id and not start.from_start:
        return (preamble, _page(())) if owe_ends(subscriber, ended, past_all=True) else None
    hub.counters.replays += 1
    if last_event_id:
        resumed = positions.parse(last_event_id, current)
    else:
        resumed = dict.fromkeys(positions.snapshot(), NOWHERE)
    if resumed is None or _ahead(resumed, current):
        if not owe_ends(subscriber, ended, past_all=True):
            return None
        preamble.append(hub.reset_chunk("unknown_id", last_event_id))
        return preamble, _page(())
    if not owe_ends(subscriber, ended, past_all=all(_past(resumed.get(c, NOWHERE), at) for c, at in ended.items())):
        return None
    positions.move_to(resumed)
    page = await broker.history_after(positions.snapshot(), hub.replay_page_size)
    if page.gaps:
        preamble.append(hub.reset_chunk("history_expired", last_event_id))
        positions.move_to(_past_gaps(page))
    return preamble, _page(page.messages, page.complete)


async def next_page(hub: Hub, broker: PerChannelBroker, subscriber: Subscriber) -> History | None:
    """The replay's next page, or None when history was trimmed while it was read."""
    page = await broker.history_after(placement_of(subscriber).positions.snapshot(), hub.replay_page_size)
    if page.gaps:
        return None
    return _page(page.messages, page.complete)


def _nothing(message: Message) -> bool:
    return False  # a stream that is not a Mercure one replays no update


def _past(position: Position, final: Position) -> bool:
    """A position at or past a channel's final message: same epoch, seq at or above."""
    return position[1] == final[1] and position[0] >= final[0]


def _ahead(resumed: dict[str, Position], current: dict[str, Position]) -> bool:
    """An id past where a channel is, in the channel's epoch: not one this cluster gave."""
    for channel, (seq, epoch) in resumed.items():
        now_seq, now_epoch = current.get(channel, (0, ""))
        if seq > now_seq and epoch == now_epoch:
            return True
    return False


def _past_gaps(page: ChannelPage) -> dict[str, Position]:
    """StreamPosition just before what each gapped channel still holds, in its current epoch."""
    return {channel: (seq, page.current.get(channel, (0, ""))[1]) for channel, seq in page.gaps.items()}


def _page(messages: Sequence[Message], complete: bool = True) -> History:
    # The route feeds a History; on this path only its messages and completeness count.
    return History(messages=messages, expired=False, last_id=0, complete=complete)
