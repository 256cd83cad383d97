"""Presence and the client directory: which instances are live, which clients each holds.

Invariants:

1. ``client_connected``/``client_disconnected`` never await (the hub calls them on the
   connect path); the upkeep task writes what piled up, in one pipeline.
2. Bounded: at most ``max_pending`` changes wait while Redis is unreachable. Past that the
   directory is marked stale and the changes are dropped; a stale directory is rewritten
   whole (from the set of local clients) at the next write, as after every reconnect.
3. Every key has a TTL of three refresh periods, refreshed by the upkeep task, so an
   instance that dies leaves the cluster by itself. Liveness is judged by Redis's clock.
4. ``locate`` (and so ``client_exists``) answers from the local set first, then asks
   Redis (one script call); a question Redis cannot answer is ``BrokerUnavailable``,
   asked at all only while the broker is connected.
5. Every presence refresh also reads the wire version each live instance announces
   (``keyspace``; none announced: version 1; anyone listening on the pub/sub channel of
   version 0: an instance of version 0), in the same script call. While a live instance
   of an older wire version that neither release lists as compatible is there,
   ``refusal`` says why, and the broker is not ready, refuses streams and publishes, and
   ends the streams it had (``refused``): the other release keeps serving (the newer one
   refuses, ``keyspace``). One log line per instance that comes, and one when the refusal
   ends. ``older_peers`` says whether a live instance speaks an older version that this
   one works beside (it may need the older format: ``keyspace``), and ``older_peers_changed``
   hears when that changes, from the refresh that saw it.
6. Presence (``channel_presence``, ``find_client``) is the ``roster``'s: client records
   written with the client set, in the same pipeline, and read like ``locate`` (one
   script call, 503 when Redis cannot answer); Mercure subscribers too (``mercure_roster``).
   ``written()`` waits for a later write to succeed (``written``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NoReturn

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from sse_hub.broker.redis.errors import unavailable
from sse_hub.broker.redis.keyspace import Keyspace
from sse_hub.broker.redis.peers import PeerVersions
from sse_hub.broker.redis.roster import MAX_PAGE, Roster
from sse_hub.broker.redis.scripts import LOCATE_SCRIPT, PRESENCE_SCRIPT, SUMMARIES_SCRIPT, InstanceSummary, describe
from sse_hub.broker.redis.tasks import raise_if_cancelled
from sse_hub.broker.redis.wire import OURS, SUMMARY_HEAD_BYTES, WireVersion, announced_wire, announcement
from sse_hub.broker.redis.written import Written
from sse_hub.errors import BrokerUnavailable
from sse_hub.messages.contract import (
    ChannelPresence,
    ClientDirectory,
    ClientRecord,
    ConnectedClient,
    MercureSubscriber,
    MercureSubscribers,
    Summary,
)

__all__ = ["OURS", "Describe", "Directory", "WireVersion", "announced_wire"]

logger = logging.getLogger(__name__)

# How this instance describes itself to the cluster (the app's ``/stats`` head).
Describe = Callable[[], Summary]

REFRESH_SECONDS = 2.0
PRESENCE_TTL_MS = int(3 * REFRESH_SECONDS * 1000)
DIRECTORY_CHUNK = 1000
# Directory changes kept while they cannot be written; past it, a full rewrite is due.
MAX_PENDING_CHANGES = 10_000


class Directory(ClientDirectory):
    def __init__(
        self,
        redis: Redis,
        keyspace: Keyspace,
        instance_id: str,
        *,
        store: str,
        connected: Callable[[], bool],
        refused: Callable[[], None],
        describe: Describe | None = None,
        older_peers_changed: Callable[[bool], None] | None = None,
    ) -> None:
        """``store``: what errors call the store ("Redis"); ``connected()``: whether the
        broker is connected now (invariant 4); ``refused()``: called when this instance
        starts refusing to serve (invariant 5); ``describe()``: this instance now, for its
        summary (None: a minimal one); ``older_peers_changed(present)``: invariant 5."""
        self._redis = redis
        self._keys = keyspace
        self.instance_id = instance_id
        self._summary_key = f"{keyspace.summary_prefix}{instance_id}"
        self._clients_key = f"{keyspace.clients_prefix}{instance_id}"
        self._presence_script = redis.register_script(PRESENCE_SCRIPT)
        self._summaries_script = redis.register_script(SUMMARIES_SCRIPT)
        self._locate_script = redis.register_script(LOCATE_SCRIPT)
        self.roster = Roster(redis, keyspace, instance_id)
        self._started_at = time.time()
        self.clients: set[str] = set()
        self.changes: dict[str, bool] = {}
        self.max_pending = MAX_PENDING_CHANGES
        self.stale = True
        self._presence_stale = True
        self._wake = asyncio.Event()
        self._written = Written()
        self._store = store
        self._connected = connected
        self._describe = describe
        self.peers = PeerVersions(instance_id, keyspace.legacy_topic, refused, older_peers_changed)

    # -- local changes ----------------------------------------------------------------

    def client_connected(self, client_id: str, client: ConnectedClient | None = None) -> None:
        self.clients.add(client_id)
        self.roster.connected(client_id, client)
        self._change(client_id, True)

    def client_disconnected(self, client_id: str) -> None:
        self.clients.discard(client_id)
        self.roster.disconnected(client_id, pending=not self.stale)
        self._change(client_id, False)

    def mercure_subscribed(self, client_id: str, subscriber: MercureSubscriber | None) -> None:
        self.roster.mercure.set(client_id, subscriber)
        self._wake.set()

    async def written(self) -> None:
        self._wake.set()  # the upkeep runs after this task yields, with the waiter set
        await self._written.wait()

    def _change(self, client_id: str, present: bool) -> None:
        if not self.stale:
            self.changes[client_id] = present
            if len(self.changes) > self.max_pending:
                self.stale = True
                self.changes.clear()
                self.roster.forget_departures()
        self._wake.set()

    def mark_stale(self) -> None:
        """Redis may have lost everything (a reconnect): rewrite it all at the next write."""
        self.stale = self._presence_stale = True
        self.changes.clear()
        self.roster.forget_departures()
        self._wake.set()

    # -- writes -----------------------------------------------------------------------

    async def write(self) -> None:
        """Write the changes since the last write, or the whole set when it may be lost."""
        await self._written.around(self._write)

    async def _write(self) -> None:
        if self.stale:
            self.stale = False
            self.changes.clear()
            members = list(self.clients)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._clients_key)
                for start in range(0, len(members), DIRECTORY_CHUNK):
                    pipe.sadd(self._clients_key, *members[start : start + DIRECTORY_CHUNK])
                pipe.pexpire(self._clients_key, PRESENCE_TTL_MS)
                self.roster.rewrite(pipe, PRESENCE_TTL_MS)
                await pipe.execute()
            return
        changes, self.changes = self.changes, {}
        added = [client_id for client_id, present in changes.items() if present]
        removed = [client_id for client_id, present in changes.items() if not present]
        async with self._redis.pipeline(transaction=False) as pipe:
            if added:
                pipe.sadd(self._clients_key, *added)
            if removed:
                pipe.srem(self._clients_key, *removed)
            pipe.pexpire(self._clients_key, PRESENCE_TTL_MS)
            self.roster.write(pipe, added, removed, PRESENCE_TTL_MS)
            await pipe.execute()

    async def refresh_presence(self) -> None:
        self._presence_stale = False
        describe = self._describe
        summary = {**announcement(), **(describe() if describe is not None else self._minimal_summary())}
        heads = await self._presence_script(
            keys=[self._keys.instances, self._summary_key, self._clients_key],
            args=[
                self.instance_id,
                json.dumps(summary, separators=(",", ":"), default=str),
                PRESENCE_TTL_MS,
                self._keys.summary_prefix,
                SUMMARY_HEAD_BYTES,
                self._keys.legacy_topic,
            ],
        )
        self.peers.judge(int(heads[0]), heads[1:])
        await self.roster.refresh(self._redis, PRESENCE_TTL_MS)

    @property
    def refusal(self) -> str | None:
        """Why this instance refuses to serve (invariant 5), or None."""
        return self.peers.refusal

    @property
    def older_peers(self) -> bool:
        """A live instance speaks an older wire version that this one works beside."""
        return self.peers.older_peers

    def refuse_if_incompatible(self) -> None:
        """Raise ``BrokerUnavailable`` while this instance refuses to serve (invariant 5)."""
        self.peers.refuse_if_incompatible()

    async def leave(self) -> None:
        """Remove this instance from the cluster at once (a clean stop)."""
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(1):
                await self._redis.delete(self._summary_key, self._clients_key)
                await self._redis.zrem(self._keys.instances, self.instance_id)

    def _minimal_summary(self) -> Summary:
        started_at = datetime.fromtimestamp(self._started_at, tz=UTC).isoformat(timespec="milliseconds")
        return {
            "instance": self.instance_id,
            "started_at": started_at.replace("+00:00", "Z"),
            "total_clients": len(self.clients),
            "channels": {},
        }

    async def upkeep(self) -> NoReturn:
        """The upkeep task: write directory changes as they come (batched: whatever piled
        up while the previous write was in flight) and refresh presence periodically."""
        loop = asyncio.get_running_loop()
        refresh_at = loop.time() + REFRESH_SECONDS
        while True:
            raise_if_cancelled()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(refresh_at):
                    await self._wake.wait()
            self._wake.clear()
            if not self._connected():
                refresh_at = loop.time() + REFRESH_SECONDS
                continue
            try:
                if self.stale or self.changes or self.roster.mercure.changed or self._written.wanted:
                    await self.write()
                if self._presence_stale or loop.time() >= refresh_at:
                    refresh_at = loop.time() + REFRESH_SECONDS
                    await self.refresh_presence()
            except (RedisError, OSError) as exc:
                self.stale = True
                logger.debug("redis upkeep failed: %s", exc)
            except Exception:  # task boundary: describe is the app's code
                self.stale = True
                logger.exception("redis upkeep failed")

    # -- reads ------------------------------------------------------------------------

    async def client_exists(self, client_id: str) -> bool:
        if client_id in self.clients:
            return True
        self._refuse_if_disconnected()
        with unavailable(f"cannot look the client up in {self._store}"):
            return await self.locate(client_id) is not None

    async def cluster_summaries(self) -> list[Summary] | None:
        self._refuse_if_disconnected()
        with unavailable(f"cannot read the cluster from {self._store}"):
            return await self.summaries()

    async def channel_presence(self, channel: str, after: str | None, limit: int) -> ChannelPresence:
        self._refuse_if_disconnected()
        with unavailable(f"cannot read presence from {self._store}"):
            return await self.roster.channel(channel, after, limit)

    async def find_client(self, client_id: str) -> ClientRecord | None:
        self._refuse_if_disconnected()
        with unavailable(f"cannot look the client up in {self._store}"):
            return await self.roster.find(client_id)

    async def mercure_subscribers(self, after: str | None, limit: int) -> MercureSubscribers:
        self._refuse_if_disconnected()
        with unavailable(f"cannot read Mercure subscribers from {self._store}"):
            return await self.roster.mercure.page(after, min(limit, MAX_PAGE))

    async def find_mercure_subscriber(self, client_id: str) -> MercureSubscriber | None:
        self._refuse_if_disconnected()
        with unavailable(f"cannot read Mercure subscribers from {self._store}"):
            return await self.roster.mercure.find(client_id)

    def _refuse_if_disconnected(self) -> None:
        if not self._connected():
            raise BrokerUnavailable(f"{self._store} is not connected")

    async def locate(self, client_id: str) -> str | None:
        """The live instance holding ``client_id``, or None. Raises RedisError/OSError."""
        if client_id in self.clients:
            return self.instance_id
        found = await self._locate_script(keys=[self._keys.instances], args=[self._keys.clients_prefix, client_id])
        return found.decode() if isinstance(found, bytes) else None

    async def summaries(self) -> list[Summary]:
        """Every live instance's summary, by instance id. Raises RedisError/OSError."""
        stored = await self._summaries_script(keys=[self._keys.instances], args=[self._keys.summary_prefix])
        summaries = []
        for raw in stored:
            if raw is None:
                continue
            try:
                summaries.append(InstanceSummary.model_validate_json(raw).model_dump())
            except ValidationError as exc:
                logger.warning("skipping a malformed instance summary in Redis: %s", describe(exc))
        return sorted(summaries, key=lambda summary: str(summary["instance"]))
