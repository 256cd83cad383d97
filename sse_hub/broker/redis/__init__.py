"""Redis broker: the instances of a cluster number, store and exchange messages through one Redis.

Keys, with ``P`` = ``broker.prefix`` (standalone Redis >= 6.2, not Redis Cluster):

- ``P:seq``: the cluster-wide id sequence (``INCR``).
- ``P:history:{channel}``: one stream per channel (global messages under ``*``), entry id
  ``{message id}-0``, one field ``m`` holding the payload (``Message.to_payload``).
- ``P:messages``: the pub/sub channel every instance listens to. One channel for all
  messages: every instance needs every global message anyway, a single subscription keeps
  the cluster-wide id order, and a new stream never waits for a SUBSCRIBE round trip.
- ``P:ticket:{sha256 of the ticket}``: a stream ticket's channel patterns (JSON, TTL);
  ``GETDEL`` redeems it, so it works once on whichever instance sees it first.
- ``P:instances``: sorted set of live instance ids scored by the Redis time (ms) at which
  they expire; ``P:instance:{id}``: that instance's summary (JSON); ``P:clients:{id}``: the
  client ids connected to it (set). All refreshed every ``REFRESH_SECONDS`` with a TTL of
  three periods, so an instance that dies leaves the cluster by itself.

Invariants:

1. ``publish`` is one Lua script: for each message, INCR, XADD to each channel's stream and
   PUBLISH happen atomically, so every instance receives the messages in id order and a
   message is stored before its publisher learns its id. Any Redis error is
   ``BrokerUnavailable``: nothing unstored is ever acknowledged.
2. Ids never go backwards, even when Redis comes back empty: the script first raises the
   sequence to the highest id this instance has seen (published, received or read).
3. ``deliver`` is called from the listener task only, in id order, each id at most once
   (after a reconnect the subscription and the recovered history overlap).
4. Streams are trimmed with ``MAXLEN ~ size + 1``: Redis keeps at least that many
   entries, so reading the newest ``size + 1`` entries after an id tells exactly whether a
   message newer than it fell out of the newest ``size`` (XINFO's ``max-deleted-entry-id``
   counts XDEL only, not trimming).
5. The broker owns its two tasks (listener, upkeep); ``stop`` cancels and awaits them. It
   logs one line per connection state change, never one per message.

The Lua scripts, and the helpers that build their arguments and parse what Redis returns,
are in ``sse_hub.broker.redis_scripts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NoReturn
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from sse_hub.broker import Broker, Deliver, History
from sse_hub.broker.redis_scripts import (
    CLIENT_EXISTS_SCRIPT,
    PRESENCE_SCRIPT,
    PUBLISH_SCRIPT,
    SUMMARIES_SCRIPT,
    InstanceSummary,
    describe,
    merge_runs,
    parse_entries,
    payload_tail,
)
from sse_hub.config import Settings
from sse_hub.errors import BrokerUnavailable
from sse_hub.models import Draft, Message, message_from_payload

logger = logging.getLogger(__name__)

Summary = dict[str, object]

REFRESH_SECONDS = 2.0
PRESENCE_TTL_MS = int(3 * REFRESH_SECONDS * 1000)
COMMAND_TIMEOUT_SECONDS = 3.0
# A subscription silent this long gets a PING; no answer within another period means the
# connection is dead (a peer behind a vanished route sends no FIN).
HEALTH_CHECK_SECONDS = 5.0
BACKOFF_FIRST_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 5.0
# After a reconnect, messages missed while unsubscribed are recovered from history unless
# there are more than this (then SCANning every stream is not worth it).
MAX_RECOVERED_MESSAGES = 10_000
DIRECTORY_CHUNK = 1000


TICKET_PATTERNS: TypeAdapter[tuple[str, ...]] = TypeAdapter(tuple[str, ...])


# Drafts per group-committed script call; a larger burst starts a second group.
MAX_GROUP_DRAFTS = 2000


@dataclass(slots=True)
class _PublishGroup:
    """Drafts from concurrent publish calls, sent in one script call; ``ids`` resolves
    with their ids in order (or BrokerUnavailable for all of them)."""

    ids: asyncio.Future[list[int]]
    drafts: list[Draft] = field(default_factory=list)


class RedisBroker(Broker):
    """See the module docstring. ``summary_source`` is set by the app to describe this
    instance in ``/stats?scope=cluster``; until then a minimal summary is published."""

    def __init__(self, settings: Settings, instance_id: str) -> None:
        config = settings.broker
        self.instance_id = instance_id
        self.reconnects = 0
        self._url = config.redis_url
        self._history_size = settings.history.size
        # history.size 0 keeps one entry per stream, exactly: enough to know what was lost.
        self._trim = ("=", 1) if self._history_size == 0 else ("~", self._history_size + 1)
        prefix = config.prefix
        self._seq_key = f"{prefix}:seq"
        self._history_prefix = f"{prefix}:history:"
        self._topic = f"{prefix}:messages"
        self._instances_key = f"{prefix}:instances"
        self._summary_prefix = f"{prefix}:instance:"
        self._summary_key = f"{self._summary_prefix}{instance_id}"
        self._clients_prefix = f"{prefix}:clients:"
        self._clients_key = f"{self._clients_prefix}{instance_id}"
        self._ticket_prefix = f"{prefix}:ticket:"
        self._started_at = time.time()
        # No hidden retries: a publish must fail fast (503) rather than be sent twice.
        # RESP2: the subscriber connection reads subscription messages as plain replies
        # (redis-py 8 defaults to RESP3, where they are out-of-band pushes).
        self._redis: Redis = Redis.from_url(
            self._url,
            protocol=2,
            retry=Retry(NoBackoff(), 0),
            socket_timeout=COMMAND_TIMEOUT_SECONDS,
            socket_connect_timeout=COMMAND_TIMEOUT_SECONDS,
            client_name=f"sse-hub:{instance_id}",
        )
        self._publish_script = self._redis.register_script(PUBLISH_SCRIPT)
        self._presence_script = self._redis.register_script(PRESENCE_SCRIPT)
        self._summaries_script = self._redis.register_script(SUMMARIES_SCRIPT)
        self._client_exists_script = self._redis.register_script(CLIENT_EXISTS_SCRIPT)
        self._deliver: Deliver | None = None
        self._subscriber: AbstractConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._open_batch: _PublishGroup | None = None
        self._publishing: set[asyncio.Task[None]] = set()
        self._connected = False
        self._announced = False
        self._delivered_id = 0
        self._seen_id = 0
        self._clients: set[str] = set()
        self._directory_changes: dict[str, bool] = {}
        self._directory_stale = True
        self._presence_stale = True
        self._wake = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        try:
            # Read the sequence before subscribing: whatever then arrives on the
            # subscription was published later, so it has a larger id.
            self._delivered_id = self._seen_id = int(await self._redis.get(self._seq_key) or 0)
            await self._subscribe()
            await self._write_directory()
            await self._refresh_presence()
            self._announced = True
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"cannot use Redis at {redacted(self._url)}: {exc}") from exc
        self._connected = True
        self._tasks = [
            asyncio.create_task(self._listen(), name="sse-hub-redis-listener"),
            asyncio.create_task(self._upkeep(), name="sse-hub-redis-upkeep"),
        ]
        logger.info("redis broker connected url=%s instance=%s", redacted(self._url), self.instance_id)

    async def stop(self) -> None:
        self._connected = False
        tasks, self._tasks = [*self._tasks, *self._publishing], []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._announced:
            self._announced = False
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(1):
                    await self._redis.delete(self._summary_key, self._clients_key)
                    await self._redis.zrem(self._instances_key, self.instance_id)
        await self._close_subscriber()
        await self._redis.aclose()
        self._deliver = None

    @property
    def connected(self) -> bool:
        return self._connected

    # -- publish and read -------------------------------------------------------------

    async def publish(self, drafts: Sequence[Draft]) -> list[Message]:
        """Publishes arriving in the same loop iteration share one script call (group
        commit): one round trip instead of one each, and Redis writes their PUBLISHes to
        every instance back to back, so the instances fan them out together, one socket
        write per subscriber for the lot (bench: S1 on Redis, docs/performance.md)."""
        if not drafts:
            return []
        if not self._connected:
            raise BrokerUnavailable("Redis is not connected")
        batch = self._open_batch
        if batch is None or len(batch.drafts) >= MAX_GROUP_DRAFTS:
            batch = self._open_batch = _PublishGroup(asyncio.get_running_loop().create_future())
            asyncio.get_running_loop().call_soon(self._send_group, batch)
        start = len(batch.drafts)
        batch.drafts.extend(drafts)
        ids = await asyncio.shield(batch.ids)
        return [draft.numbered(message_id) for draft, message_id in zip(drafts, ids[start:], strict=False)]

    def _send_group(self, batch: _PublishGroup) -> None:
        if self._open_batch is batch:
            self._open_batch = None
        task = asyncio.create_task(self._run_group(batch), name="sse-hub-redis-publish")
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _run_group(self, batch: _PublishGroup) -> None:
        keys = [self._seq_key]
        args: list[bytes | str | int] = [self._seen_id, *self._trim, self._topic]
        for draft in batch.drafts:
            keys.extend(self._history_prefix + channel for channel in draft.channels)
            args += (payload_tail(draft), len(draft.channels))
        try:
            raw_ids = await self._publish_script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            batch.ids.set_exception(BrokerUnavailable("Redis did not take the message"))
            batch.ids.exception()  # retrieved: a group whose callers all left logs nothing
            logger.debug("publish group failed: %s", exc)
            return
        except asyncio.CancelledError:
            batch.ids.set_exception(BrokerUnavailable("the broker is stopping"))
            batch.ids.exception()
            raise
        ids = [int(raw) for raw in raw_ids]
        self._seen(ids[-1])
        batch.ids.set_result(ids)

    async def history(self, channels: Iterable[str], after_id: int) -> History:
        if not self._connected:
            raise BrokerUnavailable("Redis is not connected")
        window = self._history_size + 1
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(self._seq_key)
                for channel in dict.fromkeys(channels):
                    pipe.xrevrange(self._history_prefix + channel, max="+", min=f"({after_id}-0", count=window)
                sequence, *streams = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable("cannot read history from Redis") from exc
        expired = False
        runs = []
        for entries in streams:
            # A full window: some message newer than after_id is not among the newest `size`.
            if len(entries) == window:
                expired = True
                del entries[-1]
            runs.append(parse_entries(reversed(entries)))
        self._seen(int(sequence or 0))
        return History(messages=merge_runs(runs), expired=expired, last_id=self._seen_id)

    async def client_exists(self, client_id: str) -> bool:
        if client_id in self._clients:
            return True
        if not self._connected:
            raise BrokerUnavailable("Redis is not connected")
        try:
            found = await self._client_exists_script(keys=[self._instances_key], args=[self._clients_prefix, client_id])
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable("cannot look the client up in Redis") from exc
        return bool(found)

    async def cluster_summaries(self) -> list[dict[str, object]] | None:
        if not self._connected:
            raise BrokerUnavailable("Redis is not connected")
        try:
            stored = await self._summaries_script(keys=[self._instances_key], args=[self._summary_prefix])
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable("cannot read the cluster from Redis") from exc
        summaries = []
        for raw in stored:
            if raw is None:
                continue
            try:
                summaries.append(InstanceSummary.model_validate_json(raw).model_dump())
            except ValidationError as exc:
                logger.warning("skipping a malformed instance summary in Redis: %s", describe(exc))
        return sorted(summaries, key=lambda summary: str(summary["instance"]))

    async def issue_ticket(self, ticket: str, patterns: tuple[str, ...], ttl_seconds: int) -> None:
        try:
            await self._redis.set(self._ticket_key(ticket), json.dumps(patterns), ex=max(1, ttl_seconds))
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable("cannot store the ticket in Redis") from exc

    async def redeem_ticket(self, ticket: str) -> tuple[str, ...] | None:
        try:
            stored = await self._redis.getdel(self._ticket_key(ticket))
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable("cannot read the ticket from Redis") from exc
        if stored is None:
            return None
        try:
            return TICKET_PATTERNS.validate_json(stored)
        except ValidationError as exc:
            logger.warning("refusing a malformed ticket in Redis: %s", describe(exc))
            return None

    def _ticket_key(self, ticket: str) -> str:
        # Hashed: the key space (SCAN, MONITOR, slowlog) never shows a usable ticket.
        return self._ticket_prefix + hashlib.sha256(ticket.encode()).hexdigest()

    def _seen(self, message_id: int) -> None:
        if message_id > self._seen_id:
            self._seen_id = message_id

    # -- client directory -------------------------------------------------------------

    def client_connected(self, client_id: str) -> None:
        self._clients.add(client_id)
        self._directory_changes[client_id] = True
        self._wake.set()

    def client_disconnected(self, client_id: str) -> None:
        self._clients.discard(client_id)
        self._directory_changes[client_id] = False
        self._wake.set()

    async def _write_directory(self) -> None:
        """Write the changes since the last write, or the whole set when it may be lost
        (first start, after a failure or a reconnect: Redis may have come back empty)."""
        if self._directory_stale:
            self._directory_stale = False
            self._directory_changes.clear()
            members = list(self._clients)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._clients_key)
                for start in range(0, len(members), DIRECTORY_CHUNK):
                    pipe.sadd(self._clients_key, *members[start : start + DIRECTORY_CHUNK])
                pipe.pexpire(self._clients_key, PRESENCE_TTL_MS)
                await pipe.execute()
            return
        changes, self._directory_changes = self._directory_changes, {}
        added = [client_id for client_id, present in changes.items() if present]
        removed = [client_id for client_id, present in changes.items() if not present]
        async with self._redis.pipeline(transaction=False) as pipe:
            if added:
                pipe.sadd(self._clients_key, *added)
            if removed:
                pipe.srem(self._clients_key, *removed)
            pipe.pexpire(self._clients_key, PRESENCE_TTL_MS)
            await pipe.execute()

    async def _refresh_presence(self) -> None:
        self._presence_stale = False
        summary = self.summary_source() if self.summary_source is not None else self._minimal_summary()
        await self._presence_script(
            keys=[self._instances_key, self._summary_key, self._clients_key],
            args=[self.instance_id, json.dumps(summary, separators=(",", ":"), default=str), PRESENCE_TTL_MS],
        )

    def _minimal_summary(self) -> Summary:
        started_at = datetime.fromtimestamp(self._started_at, tz=UTC).isoformat(timespec="milliseconds")
        return {
            "instance": self.instance_id,
            "started_at": started_at.replace("+00:00", "Z"),
            "total_clients": len(self._clients),
            "channels": {},
        }

    async def _upkeep(self) -> None:
        """The upkeep task: write directory changes as they come (batched: whatever piled
        up while the previous write was in flight) and refresh presence periodically."""
        loop = asyncio.get_running_loop()
        refresh_at = loop.time() + REFRESH_SECONDS
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(refresh_at):
                    await self._wake.wait()
            self._wake.clear()
            if not self._connected:
                refresh_at = loop.time() + REFRESH_SECONDS
                continue
            try:
                if self._directory_stale or self._directory_changes:
                    await self._write_directory()
                if self._presence_stale or loop.time() >= refresh_at:
                    refresh_at = loop.time() + REFRESH_SECONDS
                    await self._refresh_presence()
            except (RedisError, OSError) as exc:
                self._directory_stale = True
                logger.debug("redis upkeep failed: %s", exc)
            except Exception:  # task boundary: summary_source is the hub's code
                self._directory_stale = True
                logger.exception("redis upkeep failed")

    # -- receive ----------------------------------------------------------------------

    async def _subscribe(self) -> None:
        """Open the subscriber connection; returns once Redis confirmed the subscription."""
        pool = self._redis.connection_pool
        # No socket timeout: the connection idles between messages; _receive checks it.
        connection = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": None})
        self._subscriber = connection
        async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
            await connection.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            await connection.send_command("SUBSCRIBE", self._topic)
            reply = await connection.read_response()
        if not (isinstance(reply, list) and reply and reply[0] == b"subscribe"):
            raise RedisConnectionError(f"unexpected answer to SUBSCRIBE: {reply!r}")

    async def _close_subscriber(self) -> None:
        connection, self._subscriber = self._subscriber, None
        if connection is not None:
            with contextlib.suppress(RedisError, OSError):
                await connection.disconnect()

    async def _listen(self) -> None:
        """The listener task: read the subscription; when it fails, reconnect and go on."""
        while True:
            try:
                await self._receive()
            except (RedisError, OSError) as exc:
                reason = str(exc) or type(exc).__name__
            except Exception:  # task boundary: a bug must not end delivery for good
                logger.exception("redis listener failed")
                reason = "listener error"
            self._connected = False
            logger.warning("redis connection lost (%s); publishing is unavailable, reconnecting", reason)
            await self._close_subscriber()
            await self._reconnect()

    async def _receive(self) -> NoReturn:
        """Read the subscription. Each health period is one timeout scope around many
        reads (a timer per read would cost as much as parsing the message); a period with
        no reply gets a PING, and a second one means the connection is dead."""
        connection = self._subscriber
        if connection is None:
            raise RedisConnectionError("not subscribed")
        replies = checked = 0
        pinged = False
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEALTH_CHECK_SECONDS):
                    while True:
                        # Keep the connection when the timeout cancels a read: the parser
                        # has consumed nothing it did not return.
                        reply = await connection.read_response(disconnect_on_error=False)
                        replies += 1
                        if reply[0] == b"message":
                            self._receive_payload(reply[2])
            if replies != checked:
                checked, pinged = replies, False
            elif pinged:
                raise RedisConnectionError(f"no answer to PING within {HEALTH_CHECK_SECONDS}s")
            else:
                await connection.send_command("PING")
                pinged = True

    def _receive_payload(self, payload: bytes) -> None:
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
        self._seen(message.id)
        deliver = self._deliver
        if deliver is None:
            return
        try:
            deliver(message)
        except Exception:  # the hub's code: one failed fan-out must not stop the listener
            logger.exception("delivering message id=%d failed", message.id)

    async def _reconnect(self) -> None:
        """Resubscribe with capped, jittered exponential backoff; then raise the sequence to
        our floor (Redis may be back empty) and recover what was missed meanwhile."""
        lost_at = time.monotonic()
        delay = BACKOFF_FIRST_SECONDS
        attempts = 0
        while True:
            attempts += 1
            # Jitter keeps a restarted Redis from being hit by every instance at once.
            await asyncio.sleep(random.uniform(delay / 2, delay))
            try:
                await self._subscribe()
                await self._raise_floor()
                recovered = await self._recover_missed()
                break
            except (RedisError, OSError) as exc:
                logger.debug("redis reconnect attempt=%d failed: %s", attempts, exc)
                await self._close_subscriber()
                delay = min(delay * 2, BACKOFF_MAX_SECONDS)
        self._connected = True
        self.reconnects += 1
        self._directory_stale = self._presence_stale = True
        self._wake.set()
        logger.info(
            "redis connection restored after %.1fs attempts=%d recovered_messages=%d",
            time.monotonic() - lost_at,
            attempts,
            recovered,
        )

    async def _raise_floor(self) -> None:
        """Publish an empty batch: the script raises the sequence to our floor, so other
        instances cannot reuse ids we have seen, even before we publish again."""
        await self._publish_script(keys=[self._seq_key], args=[self._seen_id, *self._trim, self._topic])

    async def _recover_missed(self) -> int:
        """Deliver the stored messages published while we were not subscribed (direct
        messages are not stored: those are lost to this instance's clients)."""
        last_id = int(await self._redis.get(self._seq_key) or 0)
        missed = last_id - self._delivered_id
        if missed <= 0:
            return 0
        if missed > MAX_RECOVERED_MESSAGES:
            logger.warning("redis: %d messages were published while disconnected; not recovering them", missed)
            return 0
        keys = [key async for key in self._redis.scan_iter(match=glob_escape(self._history_prefix) + "*", count=1000)]
        runs: list[list[Message]] = []
        for start in range(0, len(keys), DIRECTORY_CHUNK):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys[start : start + DIRECTORY_CHUNK]:
                    pipe.xrange(key, min=f"({self._delivered_id}-0", max=f"{last_id}-0", count=missed)
                runs.extend(parse_entries(entries) for entries in await pipe.execute())
        recovered = merge_runs(runs)
        for message in recovered:
            self._hand_over(message)
        return len(recovered)


def glob_escape(text: str) -> str:
    """Escape SCAN MATCH glob characters, so a prefix like ``a*`` matches only itself."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
