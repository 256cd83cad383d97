"""Redis broker: the instances of a cluster number, store and exchange messages through one Redis.

The parts, one job each (key layout in ``keyspace``):

- ``publisher``: group-committed publishes, one Lua script call in flight at a time,
  on a connection of its own (``script_connection``);
- ``listener``: the subscriber connection and the per-channel subscriptions (routing by
  interest, with a linger); ``mercure_routing``: the same for Mercure topics;
- ``directory``: presence and the cluster-wide client directory (a ``ClientDirectory``);
- ``tickets``: one-time stream tickets with a cap (a ``TicketStore``);
- ``history``: reading a resume's pages, and telling what was lost (count or age);
- ``recovery``: reconnecting, and reading what was missed for the channels served;
- ``arrivals``: when this instance's own publishes are back from the subscription;
- ``scripts``: the Lua scripts and the helpers that read their replies.

Invariants of the whole:

1. ``publish`` is all or nothing (``scripts``): a message is stored before its publisher
   learns its id; a call naming an ended channel gets ``ChannelFinished`` (409), any
   failure ``BrokerUnavailable`` (503), with nothing of the call applied, except a lost
   reply, after which the group may have been applied.
2. Ids never go backwards, even when Redis comes back empty: every script call first
   raises the sequence to the highest id this instance has seen (``IdFloor``), and a Redis
   that restarted (or lost its data) gets a sequence that starts above the clock
   (``scripts``, invariant 5). When that happens, or when more was missed while
   disconnected than can be recovered, the hub is told (``lost``) and its streams resume
   from history, where the loss shows as ``reset``.
3. ``deliver`` is called from the listener task only, in id order, each id at most once
   (a message on several subscribed channels arrives once per channel; after a reconnect
   the subscription and the recovered history overlap). It gets the messages of attached
   (and lingering) channels, global messages and this instance's inbox, nothing else.
   Mercure updates: ``mercure_routing``; routing names have no history, so a recovery
   reads the feed's instead (``history_channel``).
4. ``messages_received`` counts every payload read from the subscription, before any
   check: with routing by interest it stays flat for channels nobody streams here.
5. History is bounded by count and by age; a resume into dropped history is reported,
   never silently short (``history``).
6. ``arriving`` resolves once the messages of this instance's unanswered publishes that
   come back to it through the subscription were delivered (at once when none will, or
   when the group failed or the connection was lost); the caller may cancel it.
7. The broker owns its tasks (listener, subscriptions, upkeep, publish groups); ``stop``
   cancels and awaits them. It logs one line per connection state change, never one per
   message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Iterable, Sequence

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from sse_hub.broker.redis.arrivals import Arrivals
from sse_hub.broker.redis.directory import Describe, Directory
from sse_hub.broker.redis.errors import redacted, unavailable
from sse_hub.broker.redis.history import HistoryReader
from sse_hub.broker.redis.keyspace import Keyspace
from sse_hub.broker.redis.listener import LINGER_SECONDS, Listener
from sse_hub.broker.redis.mercure_routing import MercureRouting
from sse_hub.broker.redis.origin import OriginCheck
from sse_hub.broker.redis.publisher import IdFloor, Publisher
from sse_hub.broker.redis.recovery import backoff_delays, read_missed
from sse_hub.broker.redis.script_connection import connection_pool
from sse_hub.broker.redis.scripts import describe
from sse_hub.broker.redis.tasks import cancel_and_wait, raise_if_cancelled
from sse_hub.broker.redis.tickets import Tickets
from sse_hub.config.settings import Settings
from sse_hub.errors import BrokerUnavailable, UnknownClient
from sse_hub.messages.contract import Broker, Deliver, History, Lost, nothing_lost
from sse_hub.messages.mercure import history_channel
from sse_hub.messages.message import Draft, Message, message_from_payload

__all__ = ["POOL_CONNECTIONS", "RedisBroker", "redacted"]

logger = logging.getLogger(__name__)

# Pool connections (history pages, the directory, tickets), beside the subscriber's and publisher's.
POOL_CONNECTIONS = 16


class RedisBroker(Broker):
    """See the module docstring. ``describe``: this instance, for its presence summary
    (``directory``); ``linger_seconds``: how long a channel nobody streams any more stays
    subscribed (tests shorten it)."""

    store = "Redis"

    def __init__(
        self,
        settings: Settings,
        instance_id: str,
        *,
        describe: Describe | None = None,
        linger_seconds: float = LINGER_SECONDS,
        keyspace: Keyspace | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.reconnects = 0
        self.messages_received = 0
        self._url = settings.broker.redis_url
        self._keys = keys = keyspace or Keyspace(settings.broker.prefix)
        self._redis: Redis = Redis.from_pool(connection_pool(self._url, instance_id, POOL_CONNECTIONS))
        self._floor = IdFloor()
        self.publisher = Publisher(self._redis, keys, self._floor, settings.history)
        self.listener = Listener(self._redis, keys, keys.inbox(instance_id), self._receive_payload, linger_seconds)
        self.mercure = MercureRouting(self.listener, keys, lambda: self._lost())
        self.directory = Directory(
            self._redis,
            keys,
            instance_id,
            store=self.store,
            connected=lambda: self._connected,
            refused=lambda: self._lost(),
            describe=describe,
            older_peers_changed=lambda present: self.mercure.older_peers_changed(present),
        )
        self.tickets = Tickets(self._redis, keys, settings.limits.max_tickets)
        self._history = HistoryReader(self._redis, keys, self._floor, settings.history)
        self._origin_check = OriginCheck(self._redis, keys)
        self._origin: str | None = None
        self._deliver: Deliver | None = None
        self._lost: Lost = nothing_lost
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = False
        self._announced = False
        self._delivered_id = 0
        self._arrivals = Arrivals(self.mercure.comes_back, lambda: self._delivered_id, lambda: self._connected)

    # -- lifecycle --------------------------------------------------------------------

    async def start(self, deliver: Deliver, lost: Lost = nothing_lost) -> None:
        self._deliver = deliver
        self._lost = lost
        with unavailable(f"cannot use Redis at {redacted(self._url)}", cause=True):
            await self._locate()
            await self._check_origin()
            # Read the sequence before subscribing: what arrives then has a larger id.
            self._delivered_id = int(await self._redis.get(self._keys.seq) or 0)
            self._floor.seen(self._delivered_id)
            for payload in await self.listener.connect():
                self._receive_payload(payload)
            await self.directory.write()
            await self.directory.refresh_presence()
            self._announced = True
        self._set_connected(True)
        self._tasks = [
            asyncio.create_task(self._listen(), name="sse-hub-redis-listener"),
            asyncio.create_task(self.listener.maintain(), name="sse-hub-redis-subscriptions"),
            asyncio.create_task(self.directory.upkeep(), name="sse-hub-redis-upkeep"),
        ]
        logger.info("redis broker connected url=%s instance=%s", redacted(self._url), self.instance_id)

    async def stop(self) -> None:
        self._set_connected(False)
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
        await self.publisher.stop()
        if self._announced:
            self._announced = False
            await self.directory.leave()
        await self.listener.close()
        await self._redis.aclose()
        self._deliver = None

    @property
    def connected(self) -> bool:
        """Usable: connected, and no live instance of an incompatible wire version."""
        return self._connected and self.directory.refusal is None

    def _set_connected(self, connected: bool) -> None:
        self._connected = self.listener.live = connected
        if not connected:
            self._arrivals.lost()

    def _refuse_if_disconnected(self) -> None:
        if not self._connected:
            raise BrokerUnavailable("Redis is not connected")

    async def _locate(self) -> None:
        """Point the connection pool at the Redis that holds our keys, before (re)connecting:
        nothing to do for one Redis (Redis Cluster overrides it). Raises RedisError/OSError."""

    # -- interest ---------------------------------------------------------------------

    async def attach(self, channels: Collection[str]) -> None:
        # The holds first, also when refusing: every attach is matched by one detach
        # (the contract), which must not give back another stream's hold.
        await self.mercure.attach(channels)
        self.directory.refuse_if_incompatible()

    def detach(self, channels: Collection[str]) -> None:
        self.listener.detach(channels)

    # -- publish and read -------------------------------------------------------------

    async def publish(self, drafts: Sequence[Draft]) -> list[Message]:
        """Publishes of one loop iteration share one script call (``publisher``). A message
        goes to its channels' pub/sub channels (a Mercure update: ``mercure_routing``), a
        direct one (or a kick) to its client's instance's inbox (``UnknownClient``: none)."""
        if not drafts:
            return []
        self._refuse_if_disconnected()
        self.directory.refuse_if_incompatible()
        topics = [await self._topics(draft) for draft in drafts]
        return await self.publisher.publish(drafts, topics)

    async def _topics(self, draft: Draft) -> list[str]:
        if draft.mercure is not None:
            return self.mercure.topics(draft.mercure.topics)
        if draft.client_id is None:
            return [self._keys.topic(channel) for channel in draft.channels]
        with unavailable("cannot look the client up in Redis"):
            instance = await self.directory.locate(draft.client_id)
        if instance is None:
            raise UnknownClient(f"no client {draft.client_id!r} is connected", {"client_id": draft.client_id})
        return [self._keys.inbox(instance)]

    async def history(self, channels: Iterable[str], after_id: int, limit: int | None = None) -> History:
        self._refuse_if_disconnected()
        return await self._history.read(channels, after_id, limit)

    async def find_publisher_id(self, channel: str, event_id: str) -> int | None:
        self._refuse_if_disconnected()
        return await self._history.find_publisher_id(self, channel, event_id)

    @property
    def publisher_id_scans(self) -> int:
        """Publisher-id lookups that the index did not answer (``history``, invariant 8)."""
        return self._history.publisher_id_scans

    async def finished(self, channels: Collection[str]) -> dict[str, int]:
        self._refuse_if_disconnected()
        return await self._history.finished(channels)

    # -- own messages on their way back ------------------------------------------------

    def arriving(self) -> asyncio.Future[None] | None:
        """See invariant 6 (``arrivals``): None when every publish was answered."""
        answer = self.publisher.unanswered
        return None if answer is None else self._arrivals.after(answer)

    # -- receive ----------------------------------------------------------------------

    def _receive_payload(self, payload: bytes) -> None:
        self.messages_received += 1
        try:
            message = message_from_payload(payload)
        except ValidationError as exc:
            logger.warning("skipping a malformed message from Redis: %s", describe(exc))
            return
        self._hand_over(message)

    def _hand_over(self, message: Message) -> None:
        """Deliver a received message unless its id was delivered already."""
        if message.id <= self._delivered_id:
            return
        self._delivered_id = message.id
        self._floor.seen(message.id)
        deliver = self._deliver
        if deliver is None:
            return
        try:
            deliver(message)
        except Exception:  # the hub's code: one failed fan-out must not stop the listener
            logger.exception("delivering message id=%d failed", message.id)
        self._arrivals.delivered(message.id)

    async def _listen(self) -> None:
        """The listener task: read the subscription; when it fails, reconnect and go on."""
        while True:
            raise_if_cancelled()
            try:
                await self.listener.receive()
            except (RedisError, OSError) as exc:
                reason = str(exc) or type(exc).__name__
            except Exception:  # task boundary: a bug must not end delivery for good
                logger.exception("redis listener failed")
                reason = "listener error"
            self._set_connected(False)
            logger.warning("redis connection lost (%s); publishing is unavailable, reconnecting", reason)
            await self.listener.close()
            await self._reconnect()

    async def _reconnect(self) -> None:
        """Resubscribe with backoff; then raise the sequence to our floor (Redis may be
        back empty) and recover what was missed meanwhile on the channels served."""
        lost_at = time.monotonic()
        # Compared with the origin this instance knew before the loss, not with the one a
        # failed attempt read: a move seen once ends the streams even if that attempt fails.
        known = self._origin
        attempts = 0
        for delay in backoff_delays():
            raise_if_cancelled()
            attempts += 1
            await asyncio.sleep(delay)
            try:
                await self._locate()
                early = await self.listener.connect()
                await self.publisher.reset()
                await self._check_origin()
                restarted = known is not None and self._origin != known
                await self.publisher.raise_floor()
                channels = {"*", *map(history_channel, self.listener.subscribed)}
                recovered = (
                    None if restarted else await read_missed(self._redis, self._keys, channels, self._delivered_id)
                )
                break
            except (RedisError, OSError) as exc:
                logger.debug("redis reconnect attempt=%d failed: %s", attempts, exc)
                await self.listener.close()
        if recovered is None:
            # What was missed is gone or too much to hand over: the streams resume from
            # history instead, which tells each one what it lost.
            logger.warning(
                "redis: messages may have been missed while disconnected (%s); ending the streams"
                " so that they resume from history",
                f"Redis restarted without every write, ids go on from {self._origin!r}"
                if restarted
                else "too many to recover",
            )
            self._lost()
            recovered = []
        for message in recovered:
            self._hand_over(message)
        for payload in early:
            self._receive_payload(payload)
        self._set_connected(True)
        self.reconnects += 1
        self.directory.mark_stale()
        logger.info(
            "redis connection restored after %.1fs attempts=%d recovered_messages=%d",
            time.monotonic() - lost_at,
            attempts,
            len(recovered),
        )

    async def _check_origin(self) -> None:
        """``origin.check``: where the sequence began, started again when Redis may have lost
        writes (``self._origin``). Raises RedisError/OSError."""
        self._origin = await self._origin_check.check(self._floor.value, self._origin)
