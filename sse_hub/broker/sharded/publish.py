"""Publishing on the sharded broker: split drafts by partition, one script call per
partition per round, and the Lua script that numbers, stores and ``SPUBLISH``es.

A draft's channels are split into *parts*, one per partition (channel order kept; the
partitions in the order their first channel appears). Parts go out in *rounds*: part k of
a draft goes in a round after part k-1 returned, and its payload's ``prior`` holds the
positions the earlier parts got. Parts of one round in one partition share one script
call, in batch order. Invariants:

1. A part is all or nothing: one script call on one slot (keys and shard channels, see
   ``keys``), checked before it writes. A publish whose channels share one partition
   (``{tag}`` names) is therefore atomic; across partitions a failure of a later round
   raises ``BrokerUnavailable`` after the earlier rounds were applied (the publisher is
   told 503; those parts were stored and delivered).
2. Per channel, messages are numbered in batch order: a draft's part never goes in an
   earlier round than a part of an earlier draft in the same partition (``plan_rounds``).
   Per partition, every part stored gets an order ``o`` above every earlier one of the
   partition (``keys``): the order the master ran the calls and the parts in a call, which
   is the order its ``SPUBLISH``es went out and the order ``history.read_after`` replays.
3. No hidden retries: the cluster client has none for connection errors, so a part is
   never applied twice by the broker (a lost reply may still have been applied). MOVED is
   followed by redis-py: Redis refused the script before it ran.
4. The payload is what ``message_from_payload`` parses: ``{"id":<seq of the part's first
   channel>,"pos":[[c,seq,epoch],...],"prior":[...],`` then the draft's fields with
   ``channels`` = the part's channels (``"final":true`` included for a final draft).
5. Final messages. A final part sets the final mark (``f``, see ``keys``) of each of its
   channels in the script call that stores it, and gives mark and history the finished
   TTL: no instance can see the message without the mark. The script refuses a call in
   which some part names a marked channel, or a channel a final part earlier in the call
   ends (``FINISHED``, nothing of the call written): ``ChannelFinished``. That check is
   the authority, but it holds one call only; so that a batch holding an ended channel is
   refused whole, nothing goes out before (a) a draft naming a channel that a final draft
   earlier in the batch ends is refused (``refuse_after_final``) and (b) when the batch
   takes more than one script call, the marks of all its channels are read
   (``history.read_finals``, one round trip per master). The race left: a final published
   by someone else between that read and a later call of the batch (or in another
   partition of the same round) refuses that call only; the calls before it stay applied
   and the publisher gets 409 ``channel_finished`` for a batch partly published, as a 503
   after a failed later round (invariant 1). A batch of one script call has no such race.
6. A mark lives in the channel's meta hash: an epoch change (the meta was lost, see
   ``keys``) loses it, and the channel is then one that never ended; so is a failover to a
   replica that had not received the final write (Redis's asynchronous replication).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from redis.asyncio import RedisCluster
from redis.exceptions import ResponseError

from sse_hub.broker.redis.errors import unavailable
from sse_hub.broker.sharded.history import read_finals
from sse_hub.broker.sharded.keys import ShardKeys
from sse_hub.broker.sharded.partitions import partition
from sse_hub.broker.sharded.replicas import ScriptCall
from sse_hub.errors import ChannelFinished
from sse_hub.messages.message import DRAFT_FIELDS, ChannelPosition, Draft, Message

# Meta hashes outlive their stream by a day, so a counter is still there when its
# history expired, and a resume is told "expired", not "epoch changed".
META_EXTRA_TTL_SECONDS = 86_400
# How the script refuses a part on an ended channel: an error reply, then the JSON name.
FINISHED = "FINISHED "

# KEYS: per part, per channel: meta, stream; last, the partition's order (``keys``).
# ARGV: history size (0: no stream), history ttl s, meta ttl s, finished ttl s, number of
# parts; then per part: channel count, final (1 or 0), the prior JSON (`,"prior":[...]` or
# empty), the payload tail (the draft's JSON fields after `{`), then per channel its JSON
# name and its shard channel.
# Returns per part, per channel: seq, epoch; or the error `FINISHED <JSON name>` when a
# part names a channel that has ended (marked, or made final by an earlier part of the
# call), and then nothing of the call was written.
PUBLISH_SCRIPT = """#!lua
-- Phase 1: check the types and the final marks; an error here leaves Redis as it was.
local ended, a, k = {}, 6, 1
for _ = 1, tonumber(ARGV[5]) do
  local n = tonumber(ARGV[a])
  for j = 0, n - 1 do
    local meta, stream = KEYS[k + 2 * j], KEYS[k + 2 * j + 1]
    local meta_type = redis.call('TYPE', meta)['ok']
    local stream_type = redis.call('TYPE', stream)['ok']
    if (meta_type ~= 'none' and meta_type ~= 'hash') or (stream_type ~= 'none' and stream_type ~= 'stream') then
      return redis.error_reply('WRONGTYPE ' .. meta .. ' or ' .. stream .. ' has the wrong type')
    end
    if ended[meta] or redis.call('HEXISTS', meta, 'f') == 1 then
      return redis.error_reply('FINISHED ' .. ARGV[a + 4 + 2 * j])
    end
  end
  if ARGV[a + 1] == '1' then
    for j = 0, n - 1 do
      ended[KEYS[k + 2 * j]] = true
    end
  end
  a = a + 4 + 2 * n
  k = k + 2 * n
end
local size, ttl, meta_ttl, finished_ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local t = redis.call('TIME')
-- The partition's order: per part, Redis TIME in microseconds, raised past the last one the
-- partition gave, so strictly increasing in call order and close to the clock across
-- partitions. Written first (a wrong type leaves Redis as it was); it outlives every stream
-- of the partition. %d: a Lua number would be written as %.14g, losing digits.
local parts = tonumber(ARGV[5])
local last = tonumber(redis.call('GET', KEYS[#KEYS]) or '0')
local order = math.max(tonumber(t[1]) * 1000000 + tonumber(t[2]), last + 1) - 1
local keep_order = math.max(tonumber(meta_ttl), tonumber(finished_ttl))
redis.call('SET', KEYS[#KEYS], string.format('%d', order + parts), 'EX', keep_order)
local ms = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local fresh
local function new_epoch()
  if not fresh then
    -- Redis TIME in microseconds, mod 36^4, as 4 base36 digits.
    local n = ((tonumber(t[1]) % 1679616) * 1000000 + tonumber(t[2])) % 1679616
    local digits, text = '0123456789abcdefghijklmnopqrstuvwxyz', ''
    for _ = 1, 4 do
      local d = n % 36
      text = string.sub(digits, d + 1, d + 1) .. text
      n = math.floor(n / 36)
    end
    fresh = text
  end
  return fresh
end
local out = {}
a, k = 6, 1
for _ = 1, tonumber(ARGV[5]) do
  local n, final, prior, tail = tonumber(ARGV[a]), ARGV[a + 1] == '1', ARGV[a + 2], ARGV[a + 3]
  order = order + 1
  local placed = string.format('%d', order)
  local pos, seqs = {}, {}
  for j = 0, n - 1 do
    local meta, stream = KEYS[k + 2 * j], KEYS[k + 2 * j + 1]
    local seq = redis.call('HINCRBY', meta, 's', 1)
    local epoch = redis.call('HGET', meta, 'e')
    if seq == 1 or not epoch then
      -- A counter that starts again must not collide with entries of the old one.
      epoch = new_epoch()
      redis.call('HSET', meta, 'e', epoch)
      redis.call('DEL', stream)
    end
    seqs[j + 1] = string.format('%d', seq)
    pos[j + 1] = '[' .. ARGV[a + 4 + 2 * j] .. ',' .. seqs[j + 1] .. ',"' .. epoch .. '"]'
    out[#out + 1] = seq
    out[#out + 1] = epoch
  end
  local payload = '{"id":' .. seqs[1] .. ',"pos":[' .. table.concat(pos, ',') .. ']' .. prior .. ',' .. tail
  for j = 0, n - 1 do
    local meta, stream = KEYS[k + 2 * j], KEYS[k + 2 * j + 1]
    -- A final part marks its channels and gives them (mark and history) the finished TTL.
    local keep, keep_meta = ttl, meta_ttl
    if final then
      redis.call('HSET', meta, 'f', seqs[j + 1])
      keep, keep_meta = finished_ttl, finished_ttl
    end
    if size > 0 then
      redis.call('XADD', stream, 'MAXLEN', '~', size, seqs[j + 1] .. '-0', 'm', payload, 't', ms, 'o', placed)
      redis.call('EXPIRE', stream, keep)
    end
    redis.call('EXPIRE', meta, keep_meta)
  end
  for j = 0, n - 1 do
    redis.call('SPUBLISH', ARGV[a + 5 + 2 * j], payload)
  end
  a = a + 4 + 2 * n
  k = k + 2 * n
end
return out
"""


@dataclass(frozen=True, slots=True)
class Part:
    """The channels of one draft (``index`` in the batch) that share a partition."""

    index: int
    partition: int
    channels: tuple[str, ...]


def split(index: int, draft: Draft) -> list[Part]:
    """The draft's parts, by partition in order of first appearance, channel order kept."""
    groups: dict[int, list[str]] = {}
    for channel in draft.channels:
        groups.setdefault(partition(channel), []).append(channel)
    return [Part(index, number, tuple(channels)) for number, channels in groups.items()]


def plan_rounds(drafts: Sequence[Draft]) -> list[dict[int, list[Part]]]:
    """Rounds of parts, each round by partition (invariant 2)."""
    rounds: list[dict[int, list[Part]]] = []
    last_round: dict[int, int] = {}  # partition -> latest round an earlier draft used
    for index, draft in enumerate(drafts):
        previous = -1
        for part in split(index, draft):
            number = max(previous + 1, last_round.get(part.partition, 0))
            while len(rounds) <= number:
                rounds.append({})
            rounds[number].setdefault(part.partition, []).append(part)
            last_round[part.partition] = previous = number
    return rounds


def script_call(
    keys: ShardKeys,
    parts: Sequence[tuple[Part, Draft, Sequence[ChannelPosition]]],
    size: int,
    ttl_seconds: int,
    finished_ttl_seconds: int,
) -> tuple[list[str], list[str | int | bytes]]:
    """KEYS and ARGV of one script call: ``parts`` are (part, its draft, its prior)."""
    script_keys: list[str] = []
    meta_ttl = ttl_seconds + META_EXTRA_TTL_SECONDS
    args: list[str | int | bytes] = [size, ttl_seconds, meta_ttl, finished_ttl_seconds, len(parts)]
    for part, draft, prior in parts:
        tail = DRAFT_FIELDS.dump_json(dataclasses.replace(draft, channels=part.channels), exclude_none=True)[1:]
        prior_json = ',"prior":' + json.dumps([list(position) for position in prior], separators=(",", ":"))
        args += [len(part.channels), 1 if draft.final else 0, prior_json if prior else "", tail]
        for channel in part.channels:
            script_keys += [keys.meta(channel), keys.stream(channel)]
            args += [json.dumps(channel), keys.shard_channel(channel)]
    script_keys.append(keys.order(parts[0][0].channels[0]))
    return script_keys, args


def read_positions(parts: Sequence[Part], reply: Sequence[object]) -> list[list[ChannelPosition]]:
    """The script's reply as each part's positions."""
    positions: list[list[ChannelPosition]] = []
    at = 0
    for part in parts:
        own: list[ChannelPosition] = []
        for channel in part.channels:
            seq, epoch = reply[at], reply[at + 1]
            own.append((channel, int(str(seq)), epoch.decode() if isinstance(epoch, bytes) else str(epoch)))
            at += 2
        positions.append(own)
    return positions


class Publisher:
    """Runs the rounds of a batch of channel drafts (module docstring). ``script``:
    ``PUBLISH_SCRIPT`` as redis-py calls it, or waiting for replicas (``replicas``)."""

    def __init__(
        self,
        cluster: RedisCluster,
        keys: ShardKeys,
        history_size: int,
        ttl_seconds: int,
        finished_ttl_seconds: int,
        script: ScriptCall | None = None,
    ) -> None:
        self._cluster = cluster
        self._keys = keys
        self._size = history_size
        self._ttl = ttl_seconds
        self._finished_ttl = finished_ttl_seconds
        self._script: ScriptCall = script or cluster.register_script(PUBLISH_SCRIPT)

    async def publish(self, drafts: Sequence[Draft]) -> list[Message]:
        """One message per draft: all its channels and positions, in part order.
        ``ChannelFinished`` when a draft names an ended channel (invariant 5)."""
        refuse_after_final(drafts)
        rounds = plan_rounds(drafts)
        if sum(map(len, rounds)) > 1:
            await self._refuse_ended(drafts)
        placed: list[list[ChannelPosition]] = [[] for _ in drafts]
        for round_parts in rounds:
            calls = [self._call(parts, drafts, placed) for parts in round_parts.values()]
            results = await asyncio.gather(*calls, return_exceptions=True)
            failures = [result for result in results if isinstance(result, BaseException)]
            for parts, result in zip(round_parts.values(), results, strict=True):
                if not isinstance(result, BaseException):
                    for part, positions in zip(parts, result, strict=True):
                        placed[part.index] += positions
            if failures:
                refused = [finished for failure in failures if (finished := channel_finished(failure)) is not None]
                if refused:
                    raise refused[0] from failures[0]
                with unavailable("Redis Cluster did not take the message", cause=True):
                    raise failures[0]
        return [
            dataclasses.replace(draft.numbered(positions[0][1]), pos=tuple(positions))
            for draft, positions in zip(drafts, placed, strict=True)
        ]

    async def _refuse_ended(self, drafts: Sequence[Draft]) -> None:
        """``ChannelFinished`` for the first ended channel of the batch: the marks of every
        channel, read before the first part goes out (invariant 5)."""
        channels = [channel for draft in drafts for channel in draft.channels]
        with unavailable("cannot read the final marks from Redis Cluster", cause=True):
            marks = await read_finals(self._cluster, self._keys, channels)
        for channel in channels:
            if channel in marks:
                raise ChannelFinished(channel)

    async def _call(
        self, parts: Sequence[Part], drafts: Sequence[Draft], placed: Sequence[Sequence[ChannelPosition]]
    ) -> list[list[ChannelPosition]]:
        entries = [(part, drafts[part.index], tuple(placed[part.index])) for part in parts]
        script_keys, args = script_call(self._keys, entries, self._size, self._ttl, self._finished_ttl)
        reply = await self._script(keys=script_keys, args=args)
        return read_positions(parts, cast(Sequence[object], reply))


def refuse_after_final(drafts: Sequence[Draft]) -> None:
    """``ChannelFinished`` for a draft that names a channel a final draft before it in the
    same batch ends: checked before anything goes out, so the batch is refused whole."""
    ended: set[str] = set()
    for draft in drafts:
        for channel in draft.channels:
            if channel in ended:
                raise ChannelFinished(channel)
        if draft.final:
            ended.update(draft.channels)


def channel_finished(failure: BaseException) -> ChannelFinished | None:
    """The script's refusal (``FINISHED <JSON name>``) as ``ChannelFinished``, else None."""
    if isinstance(failure, ResponseError) and str(failure).startswith(FINISHED):
        return ChannelFinished(json.loads(str(failure).removeprefix(FINISHED)))
    return None
