"""Opening and replaying a stream on one id sequence (memory, redis, one-slot cluster).

1. The hub attached the stream's channels: from then on every message published to them
   reaches this instance, and the stream holds it until its replay is written.
2. No ``Last-Event-ID``: the preamble only. An id that is not a number, or newer than
   anything published, starts with ``reset`` (``unknown_id``) and sets no floor, or live
   ids up to it would be lost.
3. Otherwise the stream's floor is that id (whatever a lagging listener delivers later at
   or below it is not sent again), and the first page of history after it follows; when
   a message after it is no longer kept, the stream starts with ``reset``
   (``history_expired``).

Invariant: a later page that finds messages evicted since the first page ends the stream
(``next_page`` returns None), so the client reconnects and is told, never silently short.
The sharded broker's counterpart, with per-channel places, is ``core.places.replay``.
"""

from __future__ import annotations

from typing import Protocol

from sse_hub.core.counters import Counters
from sse_hub.core.subscriber import Subscriber
from sse_hub.messages.contract import History
from sse_hub.messages.message import parse_event_id

NO_REPLAY = History(messages=(), expired=False, last_id=0)


class Hub(Protocol):
    """What opening a stream needs of the hub (``sse_hub.core.hub.Hub``)."""

    @property
    def counters(self) -> Counters: ...
    @property
    def replay_page_size(self) -> int: ...
    def open_preamble(self, subscriber: Subscriber) -> list[bytes]: ...
    def reset_chunk(self, reason: str, last_event_id: str) -> bytes: ...
    async def replay_page(self, subscriber: Subscriber, after_id: int) -> History: ...


async def prepare(hub: Hub, subscriber: Subscriber, last_event_id: str | None) -> tuple[list[bytes], History]:
    """Steps 2-3 of the module docstring: the preamble (maybe with a reset) and the first page."""
    preamble = hub.open_preamble(subscriber)
    if not last_event_id:
        return preamble, NO_REPLAY
    hub.counters.replays += 1
    after_id = parse_event_id(last_event_id)
    if after_id is None:
        preamble.append(hub.reset_chunk("unknown_id", last_event_id))
        return preamble, NO_REPLAY
    history = await hub.replay_page(subscriber, after_id)
    if after_id > history.last_id:
        preamble.append(hub.reset_chunk("unknown_id", last_event_id))
        return preamble, history
    subscriber.resume_after(after_id)
    if history.expired:
        preamble.append(hub.reset_chunk("history_expired", last_event_id))
    return preamble, history


async def next_page(hub: Hub, subscriber: Subscriber, told_through: int) -> History | None:
    """The page after what the stream has queued, or None when history it is owed was
    trimmed since its first page (``told_through``: the evictions that page reported)."""
    page = await hub.replay_page(subscriber, subscriber.replay_cursor)
    if page.evicted_through > max(told_through, subscriber.replay_cursor):
        return None
    return page
