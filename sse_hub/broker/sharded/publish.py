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
from sse_hub.broker.sharded.publish_script import FINISHED, META_EXTRA_TTL_SECONDS, PUBLISH_SCRIPT
from sse_hub.broker.sharded.replicas import ScriptCall
from sse_hub.errors import ChannelFinished
from sse_hub.messages.message import DRAFT_FIELDS, ChannelPosition, Draft, Message


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
        indexed = draft.mercure.event_id if draft.mercure is not None and size > 0 else None
        args += [len(part.channels), 1 if draft.final else 0, prior_json if prior else "", tail, indexed or ""]
        for channel in part.channels:
            script_keys += [keys.meta(channel), keys.stream(channel)]
            args += [json.dumps(channel), keys.shard_channel(channel)]
        if indexed:
            script_keys.append(keys.publisher_ids(part.channels[0]))
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
