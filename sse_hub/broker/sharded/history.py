"""Reading positions, final marks and history on the sharded broker.

Invariants:

1. Reads go through the cluster client's pipeline, which sends each command to the
   master owning its slot (one round trip per master, concurrently).
2. A channel's meta is read before its stream, on the same master: the stream holds at
   least what the meta counts (entries may be newer; they are returned too).
3. ``read_after`` never reports a channel complete when it returned less than what the
   stream holds past the position (it asks ``limit + 1`` entries per channel), and names
   every channel whose history past the position is partly gone (``gaps``: trimmed,
   expired, or an epoch change).
4. A part stored under several requested channels is returned once; parts are merged by
   their partition's order ``o`` (``keys``: microseconds of the master's clock, strictly
   increasing per partition), then the order of ``after``'s channels; per channel in seq
   order. So parts of one partition come in the order they were published; across
   partitions, in the order of the masters' clocks, which is no promise.
   Parts keep every field of their payload, ``final`` included.
5. A final mark is read with the epoch of the same meta hash: the position of the final
   message in the channel's current epoch. A meta that expired or started again (a new
   epoch) has no mark: the channel is then one that never ended (``read_finals``).
6. ``indexed_position`` answers only for an update the history still holds and that
   carries the id asked for, in the channel's current epoch (the index is dropped with an
   epoch, ``publish_script``); None otherwise, and the caller scans
   (``PerChannelBroker.find_publisher_position``).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Collection, Mapping, Sequence

from pydantic import ValidationError
from redis.asyncio import RedisCluster

from sse_hub.broker.redis.scripts import describe
from sse_hub.broker.sharded.keys import ShardKeys
from sse_hub.messages.message import Message, message_from_payload
from sse_hub.messages.positions import NOWHERE, ChannelPage, Position

logger = logging.getLogger(__name__)

Entry = tuple[bytes, dict[bytes, bytes]]
# (partition order, channel order, seq, message): how parts are merged.
Stored = tuple[int, int, int, Message]


def _position(reply: Sequence[bytes | None]) -> Position:
    seq, epoch = reply
    if seq is None or epoch is None:
        return NOWHERE
    return (int(seq), epoch.decode())


async def read_positions(cluster: RedisCluster, keys: ShardKeys, channels: Collection[str]) -> dict[str, Position]:
    """Each channel's current position (NOWHERE when it has none). Raises RedisError/OSError."""
    return await _read_positions(cluster, keys, channels, "s")


async def read_finals(cluster: RedisCluster, keys: ShardKeys, channels: Collection[str]) -> dict[str, Position]:
    """The channels that have ended, each with the position of its final message (the
    mark ``f`` and the epoch ``e`` of its meta, ``keys``). Raises RedisError/OSError."""
    marks = await _read_positions(cluster, keys, channels, "f")
    return {channel: mark for channel, mark in marks.items() if mark != NOWHERE}


async def _read_positions(
    cluster: RedisCluster, keys: ShardKeys, channels: Collection[str], seq_field: str
) -> dict[str, Position]:
    """Per channel, (its meta's ``seq_field``, its epoch), or NOWHERE when either is unset."""
    names = list(dict.fromkeys(channels))
    if not names:
        return {}
    async with cluster.pipeline() as pipe:
        for channel in names:
            pipe.hmget(keys.meta(channel), [seq_field, "e"])
        replies = await pipe.execute()
    return {channel: _position(reply) for channel, reply in zip(names, replies, strict=True)}


async def _read(
    cluster: RedisCluster, keys: ShardKeys, ranges: Mapping[str, str], count: int
) -> dict[str, tuple[Position, list[Entry]]]:
    """Per channel: its meta, then its stream from ``ranges[channel]`` (an XRANGE start)."""
    async with cluster.pipeline() as pipe:
        for channel, start in ranges.items():
            pipe.hmget(keys.meta(channel), ["s", "e"])
            pipe.xrange(keys.stream(channel), min=start, max="+", count=count)
        replies = await pipe.execute()
    return {channel: (_position(replies[2 * at]), list(replies[2 * at + 1])) for at, channel in enumerate(ranges)}


def _start(position: Position) -> str:
    return "-" if position == NOWHERE else f"({position[0]}-0"


async def read_after(cluster: RedisCluster, keys: ShardKeys, after: Mapping[str, Position], limit: int) -> ChannelPage:
    """The page of retained parts past ``after`` (see ``messages.positions``). Raises
    RedisError/OSError."""
    if not after:
        return ChannelPage(messages=(), complete=True)
    read = await _read(cluster, keys, {channel: _start(position) for channel, position in after.items()}, limit + 1)
    # A channel whose epoch changed since ``after``: everything it holds is new to the reader.
    changed = {c: "-" for c, (current, _) in read.items() if after[c] != NOWHERE and current[1] != after[c][1]}
    if changed:
        read.update(await _read(cluster, keys, changed, limit + 1))
    runs: list[list[Stored]] = []
    gaps: dict[str, int] = {}
    complete = True
    for order, (channel, (current, entries)) in enumerate(read.items()):
        complete = complete and len(entries) <= limit
        seqs = [_seq(entry) for entry in entries]
        gap = _gap(after[channel], current, seqs[0] if seqs else None, channel in changed)
        if gap is not None:
            gaps[channel] = gap
        runs.append(_parse(channel, order, entries))
    messages: list[Message] = []
    taken: set[tuple[tuple[str, int, str], ...]] = set()
    for *_, message in heapq.merge(*runs):
        if message.pos not in taken:
            taken.add(message.pos)
            messages.append(message)
    if len(messages) > limit:
        messages, complete = messages[:limit], False
    current_positions = {channel: current for channel, (current, _) in read.items()}
    return ChannelPage(messages=messages, complete=complete, gaps=gaps, current=current_positions)


def _gap(after: Position, current: Position, first: int | None, epoch_changed: bool) -> int | None:
    """The highest seq past ``after`` that is no longer retained, or None (module docstring)."""
    if epoch_changed:
        return first - 1 if first is not None else current[0]
    if first is not None:
        return first - 1 if first > after[0] + 1 else None
    return current[0] if current[0] > after[0] and current[1] == (after[1] or current[1]) else None


def _seq(entry: Entry) -> int:
    return int(entry[0].partition(b"-")[0])


def _parse(channel: str, order: int, entries: Sequence[Entry]) -> list[Stored]:
    parsed: list[Stored] = []
    for entry_id, fields in entries:
        try:
            message = message_from_payload(fields[b"m"])
            # Entries written before ``o`` existed: their Redis ms ``t``, in microseconds.
            placed = int(fields[b"o"]) if b"o" in fields else int(fields.get(b"t", b"0")) * 1000
            parsed.append((placed, order, _seq((entry_id, fields)), message))
        except (KeyError, ValueError, ValidationError) as exc:
            reason = describe(exc) if isinstance(exc, ValidationError | KeyError) else str(exc)
            logger.warning(
                "skipping malformed history entry %s of %s: %s", entry_id.decode(errors="replace"), channel, reason
            )
    return parsed


# KEYS: the publisher-id index, the stream, the meta of one channel. ARGV: the publisher
# id. Returns seq and epoch of the update the index names, if the stream still holds it
# and it carries that id: an entry an older release left across an epoch change (it
# writes no index, so drops none) names another update, and is no answer.
INDEXED_SCRIPT = """#!lua flags=no-writes
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return false end
local seq = string.format('%d', tonumber(score))
local entry = redis.call('XRANGE', KEYS[2], seq .. '-0', seq .. '-0')[1]
if not entry or entry[2][1] ~= 'm' then return false end
local ok, payload = pcall(cjson.decode, entry[2][2])
if not ok or type(payload.mercure) ~= 'table' or payload.mercure.event_id ~= ARGV[1] then return false end
local epoch = redis.call('HGET', KEYS[3], 'e')
if not epoch then return false end
return {seq, epoch}
"""


async def indexed_position(cluster: RedisCluster, keys: ShardKeys, channel: str, event_id: str) -> Position | None:
    """Where the index puts the earliest retained update of ``channel`` published with
    ``event_id`` (invariant 6), or None."""
    found = await cluster.eval(
        INDEXED_SCRIPT, 3, keys.publisher_ids(channel), keys.stream(channel), keys.meta(channel), event_id
    )
    if not found:
        return None
    seq, epoch = found
    return int(seq), epoch.decode() if isinstance(epoch, bytes) else str(epoch)
