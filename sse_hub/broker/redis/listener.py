"""The subscriber connection: which pub/sub channels this instance receives, and reading them.

Routing by interest: the instance subscribes to ``P:ch:{channel}`` for the channels its
streams hold (``attach``), always to ``P:ch:*`` (global messages) and its inbox
(``P:inbox:{instance}``: direct messages, kicks). A channel whose last stream left
(``detach``) stays subscribed for ``linger_seconds``, so reconnect churn does not thrash
subscriptions, then is unsubscribed.

Invariants:

1. ``attach`` returns only once Redis confirmed the subscription of every channel it names
   (or raises ``BrokerUnavailable``): whatever is published to them afterwards reaches
   ``receive``. Counts are taken before its first await, so each call is matched by one
   ``detach``, also when it raised.
2. One connection carries every subscription, so payloads arrive in publish (id) order;
   a message on several subscribed channels arrives once per channel, back to back (the
   broker drops the repeats by id).
3. Commands on the connection are sent by one task at a time (``_send_lock``); replies are
   read by the listener task only. UNSUBSCRIBE and SUBSCRIBE of one flush go out in that
   order, so a channel re-attached while it was leaving ends up subscribed.
4. ``subscribed`` holds every channel whose last command was SUBSCRIBE; after a reconnect
   ``connect`` subscribes all of them again before anything is read.
5. Bounded: ``subscribed`` holds the channels of open streams plus those lingering, and
   each sweep unsubscribes every channel lingering longer than ``linger_seconds``.
6. The commands and reply kinds come from the keyspace (classic or shard channels). An
   unsubscribe of a pinned channel, which this instance never asks for, means Redis Cluster
   moved the slot away (it pushes ``sunsubscribe``): ``receive`` raises as for a lost
   connection, so the broker reconnects to the new owner and recovers from history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Collection
from typing import NoReturn

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from sse_hub.broker.redis.interest import Interest
from sse_hub.broker.redis.keyspace import Keyspace
from sse_hub.broker.redis.script_connection import COMMAND_TIMEOUT_SECONDS, own_connection
from sse_hub.broker.redis.tasks import raise_if_cancelled
from sse_hub.errors import BrokerUnavailable
from sse_hub.messages.message import GLOBAL_CHANNEL

logger = logging.getLogger(__name__)

# A subscription silent this long gets a PING; no answer within another period means the
# connection is dead (a peer behind a vanished route sends no FIN).
HEALTH_CHECK_SECONDS = 5.0
# Subscriptions of channels nobody streams any more are kept this long (reconnect churn).
LINGER_SECONDS = 30.0


class Listener:
    def __init__(
        self, redis: Redis, keyspace: Keyspace, inbox: str, receive: Callable[[bytes], None], linger_seconds: float
    ) -> None:
        self._redis = redis
        self._keys = keyspace
        self._pinned = (keyspace.topic(GLOBAL_CHANNEL), inbox)
        self._receive = receive
        self.linger_seconds = linger_seconds
        #: Whether attach may wait for confirmations (set by the broker once recovered).
        self.live = False
        self.subscribed: set[str] = set()
        self._interest = Interest()
        self._message_kind, self._subscribed_kind = keyspace.message_kind, keyspace.subscribed_kind
        self._pending: dict[str, asyncio.Future[None]] = {}  # channel -> its SUBSCRIBE's confirmation
        self._confirmations: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._joining: list[str] = []
        self._leaving: list[str] = []
        self._connection: AbstractConnection | None = None
        self._send_lock = asyncio.Lock()
        self._wake = asyncio.Event()

    # -- interest -----------------------------------------------------------------------

    async def attach(self, channels: Collection[str]) -> None:
        waits = self.hold(channels)
        if not self.live:
            raise BrokerUnavailable("Redis is not connected")
        if not waits:
            return
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
                await asyncio.gather(*map(asyncio.shield, waits))
        except TimeoutError as exc:
            raise BrokerUnavailable("Redis did not confirm the subscription") from exc

    def hold(self, channels: Collection[str]) -> list[asyncio.Future[None]]:
        """``attach`` without the wait: count one hold of each of ``channels`` and ask for
        the subscriptions missing; returns the confirmations still to come. Matched by one
        ``detach``, like ``attach``."""
        waits: list[asyncio.Future[None]] = []
        for channel in channels:
            if channel == GLOBAL_CHANNEL:
                continue  # always subscribed
            self._interest.hold(channel)
            if channel not in self.subscribed:
                self.subscribed.add(channel)
                if self._connection is not None:
                    waits.append(self._request(channel))
            elif (pending := self._pending.get(channel)) is not None:
                waits.append(pending)
        return waits

    def detach(self, channels: Collection[str]) -> None:
        self._interest.release(channels, asyncio.get_running_loop().time())
        if self.linger_seconds <= 0:
            self._wake.set()

    def receives(self, channels: Collection[str]) -> bool:
        """Whether a message to ``channels`` published now would reach ``receive``."""
        return any(channel == GLOBAL_CHANNEL or channel in self.subscribed for channel in channels)

    def attached(self, channel: str) -> int:
        """How many streams hold ``channel`` (tests and stats)."""
        return self._interest.holders(channel)

    @property
    def lingering(self) -> int:
        """How many channels no stream holds are still subscribed, waiting out the linger."""
        return self._interest.lingering

    def _request(self, channel: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[channel] = future
        self._confirmations.setdefault(self._keys.topic(channel).encode(), deque()).append(future)
        self._joining.append(channel)
        self._wake.set()
        return future

    # -- the connection -------------------------------------------------------------------

    async def connect(self) -> list[bytes]:
        """Open the connection and subscribe every wanted channel in one command; returns
        once Redis confirmed them all, with any payload that arrived meanwhile."""
        # No socket timeout: the connection idles between messages; receive checks it.
        connection = own_connection(self._redis.connection_pool)
        channels = set(self.subscribed)
        topics = [*self._pinned, *(self._keys.topic(channel) for channel in channels)]
        early: list[bytes] = []
        subscribed_kind, message_kind = self._keys.subscribed_kind, self._keys.message_kind
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS + len(topics) / 10_000):
                await connection.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                await connection.send_command(self._keys.subscribe, *topics, check_health=False)
                confirmed = 0
                while confirmed < len(topics):
                    reply = await connection.read_response()
                    if not isinstance(reply, list) or not reply:
                        raise RedisConnectionError(f"unexpected answer to {self._keys.subscribe}: {reply!r}")
                    if reply[0] == subscribed_kind:
                        confirmed += 1
                    elif reply[0] == message_kind:
                        early.append(reply[2])
        except BaseException:
            with contextlib.suppress(RedisError, OSError):
                await connection.disconnect()
            raise
        self._connection = connection
        for channel in self.subscribed - channels:  # attached while connecting
            self._request(channel)
        return early

    async def close(self) -> None:
        """Drop the connection; every attach still waiting fails with BrokerUnavailable."""
        connection, self._connection = self._connection, None
        self.live = False
        for futures in self._confirmations.values():
            for future in futures:
                if not future.done():
                    future.set_exception(BrokerUnavailable("the Redis connection was lost"))
                    future.exception()
        self._confirmations.clear()
        self._pending.clear()
        self._joining.clear()
        self._leaving.clear()
        if connection is not None:
            with contextlib.suppress(RedisError, OSError):
                await connection.disconnect()

    async def receive(self) -> NoReturn:
        """Read the subscription (``read_replies``) until the connection fails."""
        connection = self._connection
        if connection is None:
            raise RedisConnectionError("not subscribed")
        await read_replies(connection, self._reply, self._send_lock)

    def _reply(self, reply: list[bytes]) -> None:
        kind = reply[0]
        if kind == self._message_kind:
            self._receive(reply[2])
        elif kind == self._subscribed_kind:
            self._confirmed(reply[1])
        else:
            self._check_unsubscribed(reply)

    def _check_unsubscribed(self, reply: list[bytes]) -> None:
        if reply[0] == self._keys.unsubscribed_kind and reply[1].decode() in self._pinned:
            raise RedisConnectionError(f"Redis unsubscribed {reply[1].decode()!r} (the slot moved)")

    def _confirmed(self, topic: bytes) -> None:
        futures = self._confirmations.get(topic)
        if not futures:
            return
        future = futures.popleft()
        if not futures:
            del self._confirmations[topic]
        if not future.done():
            future.set_result(None)
        channel = topic[len(self._keys.topic_prefix) :].decode()
        if self._pending.get(channel) is future:
            del self._pending[channel]

    # -- the subscription task -------------------------------------------------------------

    async def maintain(self) -> NoReturn:
        """Send the SUBSCRIBEs attach asked for, and UNSUBSCRIBE channels that lingered
        past ``linger_seconds``; sweeps a few times per linger period."""
        sweep_seconds = min(1.0, max(self.linger_seconds / 4, 0.01))
        while True:
            raise_if_cancelled()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sweep_seconds):
                    await self._wake.wait()
            self._wake.clear()
            try:
                self._expire(asyncio.get_running_loop().time())
                await self._flush()
            except Exception:  # task boundary: subscriptions must keep being sent
                logger.exception("redis subscription upkeep failed")

    def sweep(self, now: float) -> None:
        """Unsubscribe (on the subscription task) every channel lingering since before
        ``now - linger_seconds``, as ``maintain`` does on its own clock: lets a caller (the
        linger tests) pick the moment instead of waiting for it."""
        self._expire(now)
        self._wake.set()

    def _expire(self, now: float) -> None:
        for channel in self._interest.expired(now - self.linger_seconds):
            self.subscribed.discard(channel)
            self._pending.pop(channel, None)
            if self._connection is not None:
                self._leaving.append(channel)

    async def _flush(self) -> None:
        connection = self._connection
        joining, self._joining = self._joining, []
        leaving, self._leaving = self._leaving, []
        if connection is None or not (joining or leaving):
            return
        topic = self._keys.topic
        try:
            async with self._send_lock:
                if leaving:
                    await connection.send_command(self._keys.unsubscribe, *map(topic, leaving), check_health=False)
                if joining:
                    await connection.send_command(self._keys.subscribe, *map(topic, joining), check_health=False)
        except (RedisError, OSError) as exc:
            # The connection is broken: make the listener notice, reconnect and resubscribe.
            logger.debug("redis subscribe failed: %s", exc)
            with contextlib.suppress(RedisError, OSError):
                await connection.disconnect()


async def read_replies(
    connection: AbstractConnection, handle: Callable[[list[bytes]], None], send_lock: asyncio.Lock
) -> NoReturn:
    """Read a subscriber connection for good, handing every reply to ``handle``; raises
    when the connection fails. Each health period is one timeout scope around many reads
    (a timer per read would cost as much as parsing the message); a period with no reply
    gets a PING (sent under ``send_lock``), and a second one means the connection is dead
    (a peer behind a vanished route sends no FIN). Shared with the sharded broker's links."""
    replies = checked = 0
    pinged = False
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HEALTH_CHECK_SECONDS):
                while True:
                    # Keep the connection when the timeout cancels a read: the parser has
                    # consumed nothing it did not return.
                    reply = await connection.read_response(disconnect_on_error=False)
                    raise_if_cancelled()
                    replies += 1
                    handle(reply)
        if replies != checked:
            checked, pinged = replies, False
        elif pinged:
            raise RedisConnectionError(f"no answer to PING within {HEALTH_CHECK_SECONDS}s")
        else:
            async with send_lock:
                await connection.send_command("PING", check_health=False)
            pinged = True
