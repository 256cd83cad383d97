"""Opening and replaying a stream on one id sequence (memory, redis, one-slot cluster).

1. The hub attached the stream's channels: from then on every message published to them
   reaches this instance, and the stream holds it until its replay is written.
2. No ``Last-Event-ID`` and no ``?from=start``: the preamble only. An id that is not a
   number, or newer than anything published, starts with ``reset`` (``unknown_id``) and
   sets no floor, or live ids up to it would be lost.
3. Otherwise the stream's floor is that id (``?from=start``: 0, every retained message;
   whatever a lagging listener delivers later at or below it is not sent again), and the
   first page of history after it follows; when a message after it is no longer kept,
   the stream starts with ``reset`` (``history_expired``).
4. Channels that have ended (``Broker.finished``, read after the attach) are owed their
   ``end`` after the replay (``core/ending.py``). A stream that would get nothing at all,
   every channel ended and its position (none, or an id) at or past every final message,
   is not opened: ``prepare`` returns None and the route answers ``204``.

Invariant: a later page that finds messages evicted since the first page ends the stream
(``next_page`` returns None), so the client reconnects and is told, never silently short.
The sharded broker's counterpart, with per-channel positions, is ``core.positions.replay``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from sse_hub.core.counters import Counters
from sse_hub.core.subscriber import Subscriber
from sse_hub.messages.contract import History
from sse_hub.messages.message import Message, parse_event_id

NO_REPLAY = History(messages=(), expired=False, last_id=0)


@dataclass(frozen=True, slots=True)
class StartAt:
    """Where a stream asks to begin: after ``last_event_id`` when there is one (header or
    query), else from the start of history (``from_start``: ``?from=start``), else now."""

    last_event_id: str | None = None
    from_start: bool = False


FROM_NOW = StartAt()
# What a stream opens with: its preamble and the first page of its replay; None when it
# would get nothing at all (its channels ended: 204).
Prepared = tuple[list[bytes], History] | None


class Hub(Protocol):
    """What opening a stream needs of the hub (``sse_hub.core.hub.Hub``)."""

    @property
    def counters(self) -> Counters: ...
    @property
    def replay_page_size(self) -> int: ...
    def open_preamble(self, subscriber: Subscriber) -> list[bytes]: ...
    def reset_chunk(self, reason: str, last_event_id: str | None) -> bytes: ...
    async def replay_page(self, subscriber: Subscriber, after_id: int) -> History: ...
    async def finished(self, channels: Collection[str]) -> dict[str, int]: ...
    def replay_filter(self, subscriber: Subscriber) -> Callable[[Message], bool] | None: ...


async def prepare(hub: Hub, subscriber: Subscriber, start: StartAt) -> Prepared:
    """Steps 2-4 of the module docstring: the preamble (maybe with a reset) and the first page."""
    ended = await hub.finished(subscriber.channels)
    preamble = hub.open_preamble(subscriber)
    last_event_id = start.last_event_id
    if not last_event_id and not start.from_start:
        return (preamble, NO_REPLAY) if owe_ends(subscriber, ended, past_all=True) else None
    hub.counters.replays += 1
    after_id = parse_event_id(last_event_id) if last_event_id else 0
    if after_id is None:
        if not owe_ends(subscriber, ended, past_all=True):
            return None
        preamble.append(hub.reset_chunk("unknown_id", last_event_id))
        return preamble, NO_REPLAY
    history = await hub.replay_page(subscriber, after_id)
    if not owe_ends(subscriber, ended, past_all=all(final <= after_id for final in ended.values())):
        return None
    if after_id > history.last_id:
        preamble.append(hub.reset_chunk("unknown_id", last_event_id))
        return preamble, history
    subscriber.resume_after(after_id)
    if history.expired:
        preamble.append(hub.reset_chunk("history_expired", last_event_id))
    return preamble, history


def owe_ends(subscriber: Subscriber, ended: Mapping[str, object], past_all: bool) -> bool:
    """Owe the stream the ``end`` of its channels in ``ended`` (step 4), or False when it
    would get nothing at all: every channel ended and ``past_all``, its position is at or
    past every final message (True when it has no position)."""
    if len(ended) == len(subscriber.channels) and past_all:
        return False
    if ended:
        subscriber.ending.owed = tuple(ended)
    return True


async def next_page(hub: Hub, subscriber: Subscriber, told_through: int) -> History | None:
    """The page after what the stream has queued, or None when history it is owed was
    trimmed since its first page (``told_through``: the evictions that page reported)."""
    page = await hub.replay_page(subscriber, subscriber.replay_cursor)
    if page.evicted_through > max(told_through, subscriber.replay_cursor):
        return None
    return page
