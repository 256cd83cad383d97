"""Reading history for a resume: a page of retained messages, and what was lost.

History is bounded by count (``XADD ... MAXLEN ~ size + 1``) and by age (each publish sets
``history.ttl_seconds`` on the streams it writes). Invariants of a read:

1. Eviction by count is seen exactly: Redis keeps at least ``size + 1`` entries, so reading
   the newest ``size + 1`` entries after an id tells whether a newer one fell out of the
   newest ``size`` (XINFO's ``max-deleted-entry-id`` counts XDEL only, not trimming).
2. Eviction by age leaves no trace, so it is judged by time. A stream that is missing, or
   was created again after an expiry (it starts with a marker entry at that bound), may
   have held any id up to the one that was current ``ttl_seconds`` ago. That id is read,
   rounded up, from the ``P:clock`` checkpoints (the sequence at most once per second), or
   is the current sequence when no checkpoint is recent enough. ``expired`` is reported
   when ``after_id`` is below it. Needless resets are possible, for ids older than the ttl;
   silent loss is not.
3. One script call reads everything (``HISTORY_SCRIPT``, read-only), and only the page
   asked for crosses to the hub.
4. Every read raises this instance's id floor to the sequence it saw.
5. A resume from an id below the sequence's origin (``P:origin``) is expired: Redis lost
   the messages of the sequence before it.
6. A channel that ended is forgotten after ``history.finished_ttl_seconds``, which may be
   shorter than ``ttl_seconds``: the bound of invariant 2 is then read that much further
   back (the shorter of the two ttls, ``publisher.bound_offset_ms``).
7. ``finished`` reads the newest entry of each channel's stream: it holds the final mark
   when the channel has ended (``scripts``, invariant 6); a forgotten channel has none.
8. ``find_publisher_id`` asks the feed's publisher-id index first, which answers only for
   an update the history still retains (``scripts``, invariant 7), and scans the history
   (``Broker.find_publisher_id``, counted in ``publisher_id_scans``) when it does not: an
   unknown id, the earliest update with an id trimmed while a later one is retained, or an
   update published by an instance that writes no index.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from redis.asyncio import Redis

from sse_hub.broker.redis.entries import entry_id, is_final, is_marker, merge_runs, parse_entries, script_entries
from sse_hub.broker.redis.errors import unavailable
from sse_hub.broker.redis.keyspace import Keyspace
from sse_hub.broker.redis.publisher import IdFloor, bound_offset_ms
from sse_hub.broker.redis.scripts import HISTORY_SCRIPT
from sse_hub.config.settings import HistoryConfig
from sse_hub.messages.contract import Broker, History
from sse_hub.messages.mercure import FEED_CHANNEL

# KEYS: the publisher-id index, the history stream. ARGV: the publisher id, history.size.
# Returns the sequence of the update the index names, as a string, if the history still
# retains it (fewer than history.size entries after it, as the history reads count), else
# nil (``scripts``, invariant 7).
PUBLISHER_ID_SCRIPT = """#!lua flags=no-writes
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return false end
local id = string.format('%d', tonumber(score))
local size = tonumber(ARGV[2])
if size < 1 or not redis.call('XRANGE', KEYS[2], id .. '-0', id .. '-0')[1] then return false end
if #redis.call('XRANGE', KEYS[2], '(' .. id .. '-0', '+', 'COUNT', size) >= size then return false end
return id
"""


class HistoryReader:
    def __init__(
        self,
        redis: Redis,
        keyspace: Keyspace,
        floor: IdFloor,
        history: HistoryConfig,
    ) -> None:
        self._redis = redis
        self._keys = keyspace
        self._floor = floor
        self._history_size = history.size
        self._bound_offset_ms = bound_offset_ms(history)
        self._history_script = redis.register_script(HISTORY_SCRIPT)
        self._publisher_id_script = redis.register_script(PUBLISHER_ID_SCRIPT)
        #: Lookups of a publisher id that the index did not answer (invariant 8).
        self.publisher_id_scans = 0

    async def find_publisher_id(self, broker: Broker, channel: str, event_id: str) -> int | None:
        """``Broker.find_publisher_id`` for ``broker`` (invariant 8)."""
        if channel == FEED_CHANNEL:
            with unavailable("cannot read the publisher-id index from Redis"):
                found = await self._publisher_id_script(
                    keys=[self._keys.publisher_ids(channel), self._keys.history(channel)],
                    args=[event_id, self._history_size],
                )
            if found is not None:
                return int(found)
        self.publisher_id_scans += 1
        return await Broker.find_publisher_id(broker, channel, event_id)

    async def finished(self, channels: Collection[str]) -> dict[str, int]:
        """``Broker.finished`` (invariant 7): raises BrokerUnavailable when Redis cannot answer."""
        names = list(dict.fromkeys(channels))
        with unavailable("cannot read from Redis whether channels have ended"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.xrevrange(self._keys.history(name), count=1)
                tops = await pipe.execute()
        return {name: entry_id(top[0]) for name, top in zip(names, tops, strict=True) if top and is_final(top[0])}

    async def read(self, channels: Iterable[str], after_id: int, limit: int | None = None) -> History:
        """``Broker.history``: raises BrokerUnavailable when Redis cannot answer."""
        window = self._history_size + 1
        names = list(dict.fromkeys(channels))
        # Two entries more than the page: the one past the window, and a stream's marker.
        keep = 0 if limit is None else limit + 2
        with unavailable("cannot read history from Redis"):
            reply = await self._history_script(
                keys=[self._keys.seq, self._keys.clock, self._keys.origin, *map(self._keys.history, names)],
                args=[f"({after_id}-0", window, self._bound_offset_ms, keep],
            )
        sequence, dropped_bound, origin, *streams = reply
        # A stream missing or created again may have lost ids up to the bound.
        evicted_through = int(dropped_bound)
        complete = True
        runs = []
        for total, raw in streams:
            entries = script_entries(raw)
            # A full window: some message newer than after_id is not among the newest `size`.
            if total == window:
                total -= 1
                evicted_through = max(evicted_through, entry_id(entries.pop()))
            if entries and is_marker(entries[-1]):
                # Created again after an expiry, after after_id: ids up to it may be lost.
                evicted_through = max(evicted_through, entry_id(entries[-1]))
            # The newer entries left in Redis are newer than every one read (they follow in
            # the next page): the page's first `limit` merged messages have no gap.
            complete = complete and total == len(entries)
            runs.append(parse_entries(reversed(entries)))
        evicted_through = since_origin(evicted_through, int(origin), after_id)
        self._floor.seen(int(sequence))
        messages = merge_runs(runs)
        if limit is not None and len(messages) > limit:
            messages, complete = messages[:limit], False
        expired = evicted_through > after_id
        # Nothing published since the origin: the sequence holds no id yet.
        last_id = self._floor.value if self._floor.value > int(origin) else 0
        return History(messages, expired, last_id, complete=complete, evicted_through=evicted_through)


def since_origin(evicted_through: int, origin: int, after_id: int) -> int:
    """``evicted_through`` seen from the sequence that began at ``origin``: an id below it
    may name a message that Redis lost with the sequence before (so everything up to the
    origin counts as evicted), while a resume from 0 holds no id of any sequence and is
    owed nothing from before the origin."""
    if after_id > 0:
        return max(evicted_through, origin)
    return evicted_through if evicted_through > origin else 0
