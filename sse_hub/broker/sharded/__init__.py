"""Sharded Redis Cluster broker (``broker.backend: redis-cluster``, ``cluster_mode: sharded``):
each channel numbered on its own, in the slot of its partition, with sharded pub/sub.

The parts, one job each (names in ``keys``):

- ``partitions`` (+ ``partition_tags``, computed at import): channel -> partition -> slot;
- ``publish``: drafts split into parts by partition, rounds of script calls, the script;
- ``replicas``: with ``broker.min_replicas_acked``, each script call waits for replicas;
  else ``script_batches``: the script calls of a loop iteration, one write per master;
- ``history``: positions and replay pages (``history_after``), recovery reads;
- ``topology``: the slot map (``CLUSTER SLOTS``);
- ``link``: one subscriber connection per master and its reader task;
- ``subscriptions``: routing by interest, placement of shard channels on masters, linger;
- ``delivery``: each position once, in order, around recoveries;
- ``arrivals``: when this instance's own publishes are back (``arriving``);
- ``repair``: following slot moves and failovers (resubscribe, then recover);
- reused from the standalone broker: ``Directory`` (presence, client directory) and
  ``Tickets``, the backend's other two contracts, ``unavailable``,
  ``cancel_and_wait``, ``backoff_delays``, on ``Keyspace.for_cluster``.

Invariants of the whole:

1. Per channel, parts are numbered, stored and published by one script on one master, and
   read from one FIFO connection per master: ``deliver`` gets each channel's parts in seq
   order, each position at most once per instance (``delivery``).
2. A publish is all or nothing per partition; across partitions, parts go out in rounds
   and a failed round raises ``BrokerUnavailable`` after the earlier rounds were applied
   (``publish``). No command is retried by the client after a connection error.
   With ``broker.min_replicas_acked`` N > 0 a part counts as done only once N replicas
   acknowledged it (``WAIT``, ``replicas``); else the publish fails with 503 as above.
3. After a slot moved (a pushed ``sunsubscribe``), a lost subscriber connection (a
   failover), a failed publish, or every 10 s, the repair task (``repair``) re-reads the
   slot map, subscribes every misplaced channel on its new master, then reads each one's
   history after the last position delivered and hands it over before the live parts
   held meanwhile: no gap, as long as the history still holds it (a master that died
   before replicating loses what it had not replicated).
4. ``connected`` is False while no cluster node answers the slot map.
5. The broker owns its tasks (repair, linger sweep, directory upkeep, the links' readers);
   ``stop`` cancels and awaits them.
6. A final message marks its channels in the script call that stores it (``publish``
   invariants 5 and 6): ``finished_at`` reads the marks, a publish to a marked channel is
   refused with ``ChannelFinished``, and after ``history.finished_ttl_seconds`` mark and
   history expire together. The integer ``finished`` of the contract raises TypeError,
   as ``history`` does: there are no cluster-wide ids to answer with.
7. ``arriving`` resolves once every publish of this instance unanswered when it was called
   was answered and its parts on channels received here were delivered (at once for a
   failed publish or when a repair is woken: a link lost, a slot moved); the caller may
   cancel it (``arrivals``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection, Iterable, Iterator, Mapping, Sequence
from typing import NoReturn, cast

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sse_hub.broker.redis import redacted
from sse_hub.broker.redis.directory import Describe, Directory
from sse_hub.broker.redis.errors import unavailable
from sse_hub.broker.redis.script_connection import COMMAND_TIMEOUT_SECONDS
from sse_hub.broker.redis.tasks import cancel_and_wait, raise_if_cancelled
from sse_hub.broker.redis.tickets import Tickets
from sse_hub.broker.redis.topology import Topology
from sse_hub.broker.sharded.arrivals import Arrivals
from sse_hub.broker.sharded.delivery import Delivery
from sse_hub.broker.sharded.history import indexed_position, read_after, read_finals, read_positions
from sse_hub.broker.sharded.keys import ShardKeys
from sse_hub.broker.sharded.publish import Publisher
from sse_hub.broker.sharded.publish_script import PUBLISH_SCRIPT
from sse_hub.broker.sharded.repair import Repair
from sse_hub.broker.sharded.replicas import AckedScript
from sse_hub.broker.sharded.script_batches import ScriptBatches
from sse_hub.broker.sharded.subscriptions import LINGER_SECONDS, Subscriptions
from sse_hub.config.settings import Settings
from sse_hub.errors import BrokerUnavailable, UnknownClient
from sse_hub.messages.contract import Deliver, Lost, nothing_lost
from sse_hub.messages.mercure import history_channel
from sse_hub.messages.message import Draft, Message
from sse_hub.messages.positions import ChannelPage, PerChannelBroker, Position

__all__ = ["READS_IN_FLIGHT", "ShardedClusterBroker"]

logger = logging.getLogger(__name__)

# History and position reads sent at once; more wait for a turn (at most the command
# timeout). redis-py's cluster client opens a connection per concurrent command up to 100
# per node and then refuses the command: a burst of streams resuming at once (after a
# deploy) must queue, not fail with 503, and must not take 100 connections per master.
READS_IN_FLIGHT = 16


class ShardedClusterBroker(PerChannelBroker):
    """See the module docstring. ``describe``: this instance, for its presence summary;
    ``linger_seconds``: how long a channel nobody streams any more stays subscribed (tests
    shorten it)."""

    store = "Redis Cluster"

    def __init__(
        self,
        settings: Settings,
        instance_id: str,
        *,
        describe: Describe | None = None,
        linger_seconds: float = LINGER_SECONDS,
    ) -> None:
        self.instance_id = instance_id
        self._url = settings.broker.redis_url
        self._reads = asyncio.Semaphore(READS_IN_FLIGHT)
        self.keys = keys = ShardKeys(settings.broker.prefix)
        self.publisher_id_scans = 0  # lookups the index could not answer (tests)
        # No hidden retries: a publish must fail fast (503) rather than be applied twice.
        # RESP2, as the standalone broker (subscriptions are plain replies).
        self._cluster: RedisCluster = RedisCluster.from_url(
            self._url,
            protocol=2,
            retry=Retry(NoBackoff(), 0),
            socket_timeout=COMMAND_TIMEOUT_SECONDS,
            socket_connect_timeout=COMMAND_TIMEOUT_SECONDS,
            client_name=f"sse-hub:{instance_id}",
        )
        url = parse_url(self._url)
        link_kwargs: dict[str, object] = {
            "username": url.get("username"),
            "password": url.get("password"),
            "protocol": 2,
            "socket_connect_timeout": COMMAND_TIMEOUT_SECONDS,
            "socket_timeout": COMMAND_TIMEOUT_SECONDS,
            "client_name": f"sse-hub-sub:{instance_id}",
        }
        self.topology = Topology((str(url.get("host", "localhost")), int(str(url.get("port", 6379)))), link_kwargs)
        self.delivery = Delivery(
            lambda: self.subscriptions.names,
            lambda: self._lost(),
            lambda: self._wake_repair(),
            lambda message: self.arrivals.delivered(message),
        )
        self.arrivals = Arrivals(lambda: self.subscriptions.names, self.delivery.seen)
        self.subscriptions = Subscriptions(
            keys, self.topology, link_kwargs, instance_id, self.delivery.receive, self._wake_repair, linger_seconds
        )
        history = settings.history
        # broker.min_replicas_acked: each script call waits for replicas (``replicas``).
        replicas = settings.broker.min_replicas_acked
        # Else script calls are group-committed per master on own connections (``script_batches``).
        own = {**link_kwargs, "socket_timeout": None, "client_name": f"sse-hub:{instance_id}/publisher"}
        fallback = self._cluster.register_script(PUBLISH_SCRIPT)
        self.batches = ScriptBatches(self.topology, own, PUBLISH_SCRIPT, fallback, self._wake_repair)
        script = AckedScript(self._cluster, self.topology, PUBLISH_SCRIPT, replicas) if replicas else self.batches
        self.publisher = Publisher(
            self._cluster, keys, history.size, history.ttl_seconds, history.finished_ttl_seconds, script
        )
        # Directory and Tickets take a Redis; the cluster client has the same methods, and
        # every key they use is under {prefix}: one slot (their scripts stay legal).
        redis = cast(Redis, self._cluster)
        directory_keys = keys.directory()
        self.directory = Directory(
            redis,
            directory_keys,
            instance_id,
            store=self.store,
            connected=lambda: self._started and self.repair.connected,
            refused=lambda: self._lost(),
            describe=describe,
        )
        self.tickets = Tickets(redis, directory_keys, settings.limits.max_tickets)
        self._tasks: list[asyncio.Task[None]] = []
        self._lost: Lost = nothing_lost
        self._started = False
        self._announced = False
        self.repair = Repair(self._cluster, keys, self.topology, self.subscriptions, self.delivery)

    @property
    def messages_received(self) -> int:  # a counter kept by delivery
        return self.delivery.messages_received

    @messages_received.setter
    def messages_received(self, value: int) -> None:
        self.delivery.messages_received = value

    # -- lifecycle --------------------------------------------------------------------

    async def start(self, deliver: Deliver, lost: Lost = nothing_lost) -> None:
        self.delivery.deliver = deliver
        self._lost = lost
        with unavailable(f"cannot use Redis Cluster at {redacted(self._url)}", cause=True):
            await self.topology.refresh()
            await self.subscriptions.position(self.subscriptions.pinned)
            await self.directory.write()
            await self.directory.refresh_presence()
            self._announced = True
        self._started = self.repair.connected = True
        linger = self.subscriptions.linger_seconds
        self._tasks = [
            asyncio.create_task(self.repair.run(), name="sse-hub-sharded-repair"),
            asyncio.create_task(self._sweep_loop(min(1.0, max(linger / 4, 0.01))), name="sse-hub-sharded-linger"),
            asyncio.create_task(self.directory.upkeep(), name="sse-hub-sharded-upkeep"),
        ]
        logger.info(
            "redis cluster broker (sharded) connected url=%s instance=%s", redacted(self._url), self.instance_id
        )

    async def stop(self) -> None:
        self._started = False
        self.arrivals.lost()
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
        if self._announced:
            self._announced = False
            await self.directory.leave()
        await self.subscriptions.close()
        await self.batches.close()
        await self._cluster.aclose()
        self.delivery.deliver = None

    @property
    def connected(self) -> bool:
        """Usable: started, reachable, and no live instance of an incompatible wire version."""
        return self._started and self.repair.connected and self.directory.refusal is None

    @property
    def reconnects(self) -> int:
        """Repair rounds that moved or recovered channels."""
        return self.repair.rounds

    @reconnects.setter
    def reconnects(self, value: int) -> None:
        self.repair.rounds = value

    def _wake_repair(self) -> None:
        self.arrivals.lost()  # invariant 7: what is lost comes back through the repair
        self.repair.wake()

    @contextlib.contextmanager
    def _unavailable(self, what: str) -> Iterator[None]:
        """``unavailable(what, cause=True)``, and a repair round on any ``BrokerUnavailable``:
        a slot may have moved (MOVED), or a master may be gone."""
        try:
            with unavailable(what, cause=True):
                yield
        except BrokerUnavailable:
            self._wake_repair()
            raise

    # -- interest ---------------------------------------------------------------------

    async def attach(self, channels: Collection[str]) -> None:
        # The holds first, also when refusing (as RedisBroker.attach).
        await self.subscriptions.attach(_routed(channels))
        self.directory.refuse_if_incompatible()

    def detach(self, channels: Collection[str]) -> None:
        self.subscriptions.detach(_routed(channels))

    async def _sweep_loop(self, period: float) -> NoReturn:
        loop = asyncio.get_running_loop()
        while True:
            raise_if_cancelled()
            await asyncio.sleep(period)
            try:
                self.delivery.forget(await self.subscriptions.sweep(loop.time()))
            except Exception:  # task boundary: subscriptions must keep being swept
                logger.exception("redis cluster: linger sweep failed")

    # -- publish and read -------------------------------------------------------------

    async def publish(self, drafts: Sequence[Draft]) -> list[Message]:
        """Channel drafts go out in rounds (``publish``); direct messages and kicks to the
        inbox of the instance holding their client, not stored, id 0 (``UnknownClient``
        before anything of the batch is sent when no instance holds one)."""
        if not drafts:
            return []
        self.directory.refuse_if_incompatible()
        if not self.connected:
            raise BrokerUnavailable("Redis Cluster is not reachable")
        with self._unavailable("Redis Cluster did not take the message"):
            inboxes = {index: await self._inbox(draft) for index, draft in enumerate(drafts) if draft.client_id}
            channel_drafts = [draft for index, draft in enumerate(drafts) if index not in inboxes]
            published = iter(await self.arrivals.tracked(self.publisher.publish(channel_drafts)))
            messages: list[Message] = []
            for index, draft in enumerate(drafts):
                if index in inboxes:
                    message = draft.numbered(0)
                    await self._cluster.spublish(inboxes[index], message.to_payload())
                    messages.append(message)
                else:
                    messages.append(next(published))
        return messages

    def arriving(self) -> asyncio.Future[None] | None:
        """Invariant 7: None when every publish was answered."""
        return self.arrivals.arriving()

    async def _inbox(self, draft: Draft) -> str:
        client_id = draft.client_id or ""
        instance = await self.directory.locate(client_id)
        if instance is None:
            raise UnknownClient(f"no client {client_id!r} is connected", {"client_id": client_id})
        return self.keys.inbox(instance)

    async def positions(self, channels: Collection[str]) -> dict[str, Position]:
        with self._unavailable("cannot read positions from Redis Cluster"):
            async with self._read_turn():
                return await read_positions(self._cluster, self.keys, channels)

    async def history_after(self, after: Mapping[str, Position], limit: int) -> ChannelPage:
        with self._unavailable("cannot read history from Redis Cluster"):
            async with self._read_turn():
                return await read_after(self._cluster, self.keys, after, limit)

    async def find_publisher_position(self, channel: str, event_id: str) -> Position | None:
        """The channel's publisher-id index first (``history``, invariant 6), else the scan."""
        with self._unavailable("cannot read the publisher-id index from Redis Cluster"):
            found = await indexed_position(self._cluster, self.keys, channel, event_id)
        if found is None:
            self.publisher_id_scans += 1
            found = await super().find_publisher_position(channel, event_id)
        return found

    async def finished_at(self, channels: Iterable[str]) -> dict[str, Position]:
        """Of ``channels``, those that have ended, each with its final message's (seq, epoch)."""
        with self._unavailable("cannot read final marks from Redis Cluster"):
            async with self._read_turn():
                return await read_finals(self._cluster, self.keys, list(channels))

    async def finished(self, channels: Collection[str]) -> dict[str, int]:
        raise TypeError("a sharded broker has no cluster-wide ids: use finished_at")

    @contextlib.asynccontextmanager
    async def _read_turn(self) -> AsyncIterator[None]:
        """One of ``READS_IN_FLIGHT``; TimeoutError (an OSError) after the command timeout."""
        async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
            await self._reads.acquire()
        try:
            yield
        finally:
            self._reads.release()


def _routed(channels: Collection[str]) -> Collection[str]:
    """What this broker subscribes for ``channels``: Mercure's routing names (single Redis,
    ``broker/redis/mercure_routing``) mean the feed, whose shard channel carries them all."""
    return dict.fromkeys(map(history_channel, channels)).keys()
