"""Publishing through Redis: publishes of one loop iteration go out as one script call.

Invariants:

1. Every waiting publisher is resolved, whatever happens: the group's future gets the messages,
   or ``BrokerUnavailable`` on any exception (a Redis error, a bug, cancellation at
   shutdown). A publisher never hangs.
2. A draft that cannot be encoded fails its own ``publish`` call before it joins a group,
   so it never takes other publishers' messages down with it.
3. All or nothing per group (see ``scripts``): an error reply from Redis means nothing of
   the group was stored or published; only a lost reply leaves it unknown.
4. Ids never go backwards: every call carries the highest id this instance has seen
   (``IdFloor``), and the script raises the sequence to it first.
5. At most one group is in flight. Publishes that arrive meanwhile gather in the open
   group, sent as soon as the one in flight is answered: under load a group holds what
   came in during one round trip, so Redis runs fewer, larger scripts and instances
   receive more messages per read (and write more of them per socket write).
6. ``unanswered`` is the newest group not yet answered (open or in flight; None when
   every group is answered): its ``messages`` resolve after those of every earlier group,
   with the ids Redis gave (the broker uses them to tell when this instance's own messages
   are back from the subscription).
7. Script calls go out on the publisher's own connection (``script_connection``), one at
   a time. Each publish call waits on a future of its own, so a caller that leaves
   (cancelled) takes nothing from the others of its group.
8. A publish call that names a channel that has ended gets ``ChannelFinished`` with
   nothing of it applied, and the other calls of its group go through (``scripts``,
   invariant 6): the script tells each call's outcome apart. ``messages`` holds the
   messages of the calls that went through.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from sse_hub.broker.redis.keyspace import Keyspace
from sse_hub.broker.redis.script_connection import ScriptConnection
from sse_hub.broker.redis.scripts import CLOCK_MARGIN_MS, PUBLISH_SCRIPT, SHARD_CHANNEL_PUBLISH_SCRIPT
from sse_hub.broker.redis.tasks import cancel_and_wait
from sse_hub.config.settings import HistoryConfig
from sse_hub.errors import BrokerUnavailable, ChannelFinished
from sse_hub.messages.mercure import FEED_CHANNEL
from sse_hub.messages.message import Draft, Message, payload_tail

logger = logging.getLogger(__name__)

# Drafts per group-committed script call; a larger burst starts a second group.
MAX_GROUP_DRAFTS = 2000
# Checkpoints of P:clock are kept this much longer than the history ttl (ms).
CLOCK_KEEP_EXTRA_MS = 60_000


class IdFloor:
    """The highest id this instance has seen (published, received or read)."""

    __slots__ = ("value",)

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def seen(self, message_id: int) -> None:
        if message_id > self.value:
            self.value = message_id


@dataclass(slots=True)
class _Group:
    """Drafts from concurrent publish calls, sent in one script call; ``messages``
    resolves with those that went out, numbered, in order (or BrokerUnavailable for all
    of them), and each waiter with its caller's slice of them (or ChannelFinished)."""

    messages: asyncio.Future[list[Message]]
    drafts: list[Draft] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    args: list[bytes | str | int] = field(default_factory=list)
    waiters: list[tuple[asyncio.Future[list[Message]], int, int]] = field(default_factory=list)
    indexes: bool = False  # some draft's publisher id goes into the feed's index


class Publisher:
    """Group commit of publishes. ``script`` runs the publish script (public so a test can
    replace it with a failing one)."""

    def __init__(
        self,
        redis: Redis,
        keyspace: Keyspace,
        floor: IdFloor,
        history: HistoryConfig,
    ) -> None:
        """``history``: the bounds the script applies (size, ttls)."""
        self._keys = keyspace
        self._floor = floor
        self._connection = ScriptConnection(
            redis, SHARD_CHANNEL_PUBLISH_SCRIPT if keyspace.shard_channels else PUBLISH_SCRIPT, "publisher"
        )
        # What a group calls; ``_connection`` stays the one to reset when a test swaps it.
        self.script = self._connection
        # history.size 0 keeps one entry per stream, exactly: enough to know what was lost.
        trim = ("=", 1) if history.size == 0 else ("~", history.size + 1)
        ttl_ms = history.ttl_seconds * 1000
        self._settings_args: list[bytes | str | int] = [
            *trim,
            ttl_ms,
            ttl_ms + CLOCK_KEEP_EXTRA_MS,
            bound_offset_ms(history),
            history.finished_ttl_seconds * 1000,
        ]
        self._open: _Group | None = None
        self._queued: deque[_Group] = deque()  # groups waiting for the one in flight
        self._running: set[asyncio.Task[None]] = set()
        self._sending: _Group | None = None

    async def publish(self, drafts: Sequence[Draft], topics: Sequence[Sequence[str]]) -> list[Message]:
        """Number, store and publish ``drafts``; ``topics[i]`` are the pub/sub channels of
        ``drafts[i]``. Joins the open group: the one that goes out when the group in
        flight is answered (or at the end of this loop iteration when none is)."""
        keys: list[str] = []
        args: list[bytes | str | int] = [len(drafts)]
        indexes = False
        for draft, draft_topics in zip(drafts, topics, strict=True):
            keys.extend(self._keys.history(channel) for channel in draft.channels)
            flag = b"1" if draft.final else b"0"
            if draft.mercure is not None and draft.mercure.event_id is not None:
                flag, indexes = b"i" + draft.mercure.event_id.encode(), True  # ``scripts``, invariant 7
            args += (payload_tail(draft), flag, len(draft.channels), len(draft_topics), *draft_topics)
        loop = asyncio.get_running_loop()
        group = self._open
        if group is None or len(group.drafts) >= MAX_GROUP_DRAFTS:
            group = self._open = _Group(loop.create_future())
            self._queued.append(group)
            if not self._running:  # its first step comes once this turn's publishes joined the group
                self._running.add(loop.create_task(self._send(), name="sse-hub-redis-publish"))
        mine: asyncio.Future[list[Message]] = loop.create_future()
        group.waiters.append((mine, len(group.drafts), len(drafts)))
        group.drafts += drafts
        group.keys += keys
        group.args += args
        group.indexes = group.indexes or indexes
        return await mine

    async def raise_floor(self) -> None:
        """An empty group: raises the sequence to our floor, so other instances cannot reuse
        ids we have seen, even before we publish again."""
        await self.script(
            keys=[self._keys.seq, self._keys.clock, self._keys.origin], args=[self._floor.value, *self._settings_args]
        )

    @property
    def unanswered(self) -> asyncio.Future[list[Message]] | None:
        """The numbered messages of the newest group, once Redis answers it (invariant 6)."""
        group = self._queued[-1] if self._queued else self._sending
        return None if group is None else group.messages

    async def stop(self) -> None:
        queued, self._queued = list(self._queued), deque()
        self._open = None
        for group in queued:
            self._fail(group, "the broker is stopping")
        await cancel_and_wait(list(self._running))
        await self.reset()

    async def reset(self) -> None:
        """Drop the publisher's connection: the broker lost Redis (or moved to another
        master); the next call connects afresh."""
        await self._connection.reset()

    async def _send(self) -> None:
        """Send the queued groups one at a time, oldest first (invariant 5): a group that is
        answered sends the next in the same step, with no turn of the loop in between
        (each turn may carry a flush round: docs/performance-log.md, "The front path
        without a task")."""
        try:
            while self._queued:
                group = self._queued.popleft()
                if self._open is group:
                    self._open = None
                self._sending = group
                await self._run(group)
        finally:
            self._sending = None
            self._running.clear()  # in this step: a publish after it starts a new sender

    async def _run(self, group: _Group) -> None:
        try:
            index = [self._keys.publisher_ids(FEED_CHANNEL)] if group.indexes else []
            reply = await self.script(
                keys=[self._keys.seq, self._keys.clock, self._keys.origin, *group.keys, *index],
                args=[self._floor.value, *self._settings_args, b"1" if index else b"0", *group.args],
            )
            outcomes = self._outcomes(group, reply)
        except asyncio.CancelledError:
            self._fail(group, "the broker is stopping")
            raise
        except (RedisError, OSError) as exc:
            logger.debug("publish group failed: %s", exc)
            self._fail(group, "Redis did not take the message")
        except Exception:  # task boundary: a waiting publisher must hear of any failure
            logger.exception("publish group failed")
            self._fail(group, "the broker failed to publish")
        else:
            messages = [message for outcome in outcomes if isinstance(outcome, list) for message in outcome]
            if messages:
                self._floor.seen(messages[-1].id)
            group.messages.set_result(messages)
            for (waiter, _, _), outcome in zip(group.waiters, outcomes, strict=True):
                if waiter.done():
                    continue
                if isinstance(outcome, list):
                    waiter.set_result(outcome)
                else:
                    waiter.set_exception(outcome)
        finally:
            self._fail(group, "the broker failed to publish")  # BaseException: still resolved

    def _outcomes(self, group: _Group, reply: list[list[bytes] | bytes]) -> list[list[Message] | ChannelFinished]:
        """Each call's messages numbered, or the refusal of a call that named an ended
        channel (the script's reply holds that channel's history key)."""
        if len(reply) != len(group.waiters):
            raise RuntimeError(f"the publish script answered {len(reply)} of {len(group.waiters)} publish calls")
        outcomes: list[list[Message] | ChannelFinished] = []
        for (_, start, count), verdict in zip(group.waiters, reply, strict=True):
            drafts = group.drafts[start : start + count]
            if isinstance(verdict, bytes):
                outcomes.append(ChannelFinished(verdict.decode().removeprefix(self._keys.history(""))))
            else:
                outcomes.append([draft.numbered(int(raw)) for draft, raw in zip(drafts, verdict, strict=True)])
        return outcomes

    @staticmethod
    def _fail(group: _Group, reason: str) -> None:
        if not group.messages.done():
            group.messages.set_exception(BrokerUnavailable(reason))
            group.messages.exception()  # retrieved: the broker's own future logs nothing
        for waiter, _, _ in group.waiters:
            if not waiter.done():
                waiter.set_exception(BrokerUnavailable(reason))


def bound_offset_ms(history: HistoryConfig) -> int:
    """How far back the id that a vanished history may have held is looked up (``history``
    invariant 2): the shorter of the two ttls, since a channel that ended is forgotten
    after ``finished_ttl_seconds``, possibly before ``ttl_seconds`` pass."""
    return min(history.ttl_seconds, history.finished_ttl_seconds) * 1000 - CLOCK_MARGIN_MS
