"""Reading the Mercure history for a resuming subscriber: the feed channel, filtered, paged.

Every Mercure update is stored in one channel, ``routing.FEED_CHANNEL``, so the hub-wide
cursor Mercure wants is the hub's own sequence read from that one history. A replay keeps
only what the subscriber may see now (``accepts``: its selectors and its current token,
so a private update is re-authorized in replay as 1.0 wants).

Paging: ``read_page`` reads the feed a page at a time and returns the first page that
kept something, or the last one; a page that kept nothing is skipped here, so the
stream's replay cursor (the last id it queued) always moves forward.

A publisher-supplied id used as a cursor is resolved by ``resolve_publisher_id``: the
earliest retained update that used the id wins (1.0: "a duplicated id resolves to the
earliest"). The broker answers (``Broker.find_publisher_id``): the memory broker from an
index kept with the feed's history, a Redis broker from an index kept in Redis, else by
scanning the retained feed in pages; docs/mercure.md says what each costs.

Invariants: every loop is bounded by the retained history (each page starts after the
last id of the one before, ids only grow); nothing here writes to the broker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sse_hub.mercure.ids import Cursor, CursorKind, response_cursor, resume_after
from sse_hub.messages.contract import Broker, History
from sse_hub.messages.mercure import FEED_CHANNEL
from sse_hub.messages.message import Message

FEED = (FEED_CHANNEL,)


async def start(
    broker: Broker, cursor: Cursor, read: Callable[[int], Awaitable[History]]
) -> tuple[History, int | None, str]:
    """Where a resuming subscriber's replay starts: its first page (``read``: the
    subscriber's ``read_page``), the sequence it continues after (None: from the oldest
    retained update) and the cursor response header's value (``ids.response_cursor``)."""
    resolved = None
    if cursor.kind is CursorKind.PUBLISHER:
        resolved = await resolve_publisher_id(broker, cursor.value)
    begin = cursor.sequence if cursor.kind is CursorKind.HUB else resolved
    history = await read(begin or 0)
    after = resume_after(cursor, resolved, history.last_id)
    if after is None and begin:
        history = await read(0)  # an unknown id, or one from the future
    header = response_cursor(cursor, after, expired=history.expired, history_empty=history.last_id == 0)
    return history, after, header


async def read_page(broker: Broker, accepts: Callable[[Message], bool], after_id: int, limit: int) -> History:
    """The next retained updates after ``after_id`` that ``accepts`` keeps (see above)."""
    cursor = after_id
    while True:
        page = await broker.history(FEED, cursor, limit=limit)
        kept = [message for message in page.messages if message.mercure is not None and accepts(message)]
        if kept or page.complete or not page.messages:
            return History(
                messages=kept,
                expired=page.evicted_through > after_id,
                last_id=page.last_id,
                complete=page.complete,
                evicted_through=page.evicted_through,
            )
        cursor = page.messages[-1].id


async def resolve_publisher_id(broker: Broker, event_id: str) -> int | None:
    """The sequence of the earliest retained update published with ``event_id``."""
    return await broker.find_publisher_id(FEED_CHANNEL, event_id)
