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

On the sharded broker (``PerChannelBroker``) there is no hub sequence: the feed channel
numbers its own updates, and a stream's place in the feed is a position (seq, epoch).
``start_at_position`` and ``read_position_page`` are the same steps on positions: a hub id
``#<seq>.<epoch>`` names a position, a publisher id is resolved to one
(``PerChannelBroker.find_publisher_position``: a scan of the retained feed), and a position
ahead of the feed is unknown, one of another epoch is past a gap (either way: replay from
the oldest retained, ``earliest``).
The feed is one channel, hence one partition and one master: its positions are one total
order, the same on every instance.

Invariants: every loop is bounded by the retained history (each page starts after the
last id, or position, of the one before, and those only grow); nothing here writes to the
broker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sse_hub.mercure.ids import Cursor, CursorKind, response_cursor, resume_after
from sse_hub.messages.contract import Broker, History
from sse_hub.messages.mercure import EARLIEST, FEED_CHANNEL
from sse_hub.messages.message import Message
from sse_hub.messages.positions import NOWHERE, ChannelPage, PerChannelBroker, Position, position_in

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


# -- on per-channel positions (the sharded broker) -------------------------------------------


async def start_at_position(
    broker: PerChannelBroker, cursor: Cursor, accepts: Callable[[Message], bool], limit: int
) -> tuple[ChannelPage, Position | None, str]:
    """``start`` on positions: the first page, the feed position the stream continues after
    (None: from the oldest retained update) and the cursor response header's value."""
    after: Position | None = None
    if cursor.kind is CursorKind.HUB:
        after = cursor.position  # None for ``#<n>``: an id of one sequence is unknown here
    elif cursor.kind is CursorKind.PUBLISHER:
        after = await broker.find_publisher_position(FEED_CHANNEL, cursor.value)
    page = await read_position_page(broker, accepts, after or NOWHERE, limit)
    current = page.current.get(FEED_CHANNEL, NOWHERE)
    if after is not None and after[1] == current[1] and after[0] > current[0]:
        # From the future (another cluster, a wiped one). A position of another epoch needs
        # no check: the counter started again, so the page is all retained, with a gap.
        after = None
        page = await read_position_page(broker, accepts, NOWHERE, limit)
    header = EARLIEST if after is None or page.gaps else cursor.value
    return page, after, header


async def read_position_page(
    broker: PerChannelBroker, accepts: Callable[[Message], bool], after: Position, limit: int
) -> ChannelPage:
    """``read_page`` on positions: the next retained updates after ``after`` in the feed
    that ``accepts`` keeps; ``gaps`` names the feed when updates after ``after`` are gone."""
    at = after
    gaps: dict[str, int] = {}
    while True:
        page = await broker.history_after({FEED_CHANNEL: at}, limit)
        gaps.update(page.gaps)
        kept = [message for message in page.messages if message.mercure is not None and accepts(message)]
        if kept or page.complete or not page.messages:
            return ChannelPage(messages=kept, complete=page.complete, gaps=gaps, current=page.current)
        at = position_in(page.messages[-1], FEED_CHANNEL)
