"""The hub: validates capacity, opens streams, publishes through the broker, fans out, counts.

Invariants:

1. Exactly one writer per socket (``Subscriber.flush``).
2. Fan-out (``dispatch``, ``core/fanout.py``) is synchronous and never awaits; it encodes
   each message once (``Message.chunk``: SSE frame and HTTP chunk framing) and hands the
   same bytes to every subscriber; a final message's ``end`` events too, once per message.
3. Every per-subscriber buffer is bounded; overflow closes that subscriber as ``slow``.
4. A subscriber is registered before its response headers go out and released once
   (``Hub.release``): by the stream handler's ``finally`` when the stream ends before it
   is live, else by the ``StreamProtocol`` that holds its connection, when it closes.
5. Every background task has an owner that cancels and awaits it (``start``/``stop``).
6. Control flow never depends on the log level.
7. Mercure subscribers are in the registry (limits, heartbeats, drain, stats) and in
   ``self.mercure`` (their selectors and grant); the fan-out keeps Mercure updates and
   plain messages apart (``core/fanout.py``, invariant 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections.abc import Callable, Collection, Sequence
from functools import partial
from typing import TYPE_CHECKING

from sse_hub.config.settings import Settings
from sse_hub.core.counters import Counters
from sse_hub.core.fanout import Fanout
from sse_hub.core.flusher import Flusher
from sse_hub.core.ids import SEQUENCE_IDS, IdScheme
from sse_hub.core.mercure_index import mercure_index
from sse_hub.core.registry import Registry
from sse_hub.core.replay import NO_REPLAY, Prepared, StartAt
from sse_hub.core.streams import CloseReason
from sse_hub.core.subscriber import Subscriber
from sse_hub.errors import (
    BrokerUnavailable,
    TooManyConnections,
    TooManyConnectionsFromIp,
    UnknownClient,
)
from sse_hub.mercure import replay as mercure_replay
from sse_hub.messages import sse
from sse_hub.messages.contract import Backend, History
from sse_hub.messages.mercure import FEED_CHANNEL
from sse_hub.messages.message import GLOBAL_CHANNEL, Draft, Message

if TYPE_CHECKING:
    from sse_hub.mercure.grants import MercureGrant
    from sse_hub.mercure.ids import Cursor
    from sse_hub.mercure.selectors import SelectorSet

logger = logging.getLogger(__name__)


class Hub:
    """``backend``: the broker and the client directory (``messages/contract.py``);
    ``ids``: one id sequence or per-channel positions, chosen with the broker
    (``core/ids.py``); ``registry`` and ``started_at``: this instance's subscribers and
    when it started (the app shares them with what describes the instance to the
    cluster); ``observe_fanout``: called once per
    dispatched message with the seconds since it was published (metrics)."""

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        instance_id: str,
        ids: IdScheme = SEQUENCE_IDS,
        *,
        registry: Registry | None = None,
        started_at: float | None = None,
        observe_fanout: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.broker = broker = backend.broker
        self.directory = backend.directory
        self.ids = ids
        self.registry = Registry() if registry is None else registry
        self.mercure = mercure_index(settings.mercure.enabled)
        self.counters = Counters(self.registry)
        self.instance_id = instance_id
        self.started_at = time.time() if started_at is None else started_at
        self._flusher = Flusher(broker.arriving, lambda: len(self.registry))
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._closing = False
        self.observe_fanout = observe_fanout
        #: Who a message is for, and handing it to them (``core/fanout.py``).
        self.fanout = Fanout(self.registry, self.mercure, observe_fanout)
        self.dispatch = self.fanout.dispatch
        self.targets = self.fanout.targets

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        await self.broker.start(self.ids.dispatcher(self), self.resync)
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="sse-hub-heartbeat")

    def begin_drain(self) -> None:
        """Shutdown, first moment: refuse new streams from now on (``/readyz`` turns 503
        too); open streams go on until ``close_streams``."""
        self._closing = True

    @property
    def draining(self) -> bool:
        return self._closing

    @property
    def connected(self) -> bool:
        """The broker can publish right now (``/readyz``)."""
        return self.broker.connected

    async def close_streams(self) -> None:
        """Shutdown, first step: tell every stream to reconnect a little later (jittered,
        so a restarted cluster is not hit by every client at once) and end it cleanly."""
        self._closing = True
        self._end_streams("shutdown")

    def resync(self) -> None:
        """The broker may have missed messages it cannot recover (``Broker.start``): end
        every stream, as at shutdown, so that each resumes from history and is told there
        what it lost (``reset``), never left silently short."""
        self._end_streams("resync")

    def _end_streams(self, reason: CloseReason) -> None:
        retry_ms = max(self.settings.sse.retry_ms, 1000)
        for subscriber in self.registry:
            subscriber.send_control(sse.chunk(sse.encode_retry(int(retry_ms * random.uniform(1, 3)))))
            subscriber.close(reason)

    async def stop(self) -> None:
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.broker.stop()

    async def _heartbeat(self) -> None:
        # Tick three times per heartbeat period and ping streams idle for two ticks, so no
        # stream stays silent longer than heartbeat_seconds, and a transport that closed
        # unnoticed is released within a third of it.
        interval = self.settings.sse.heartbeat_seconds / 3
        stall_seconds = self.settings.limits.stall_seconds
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            ping_before = now - 2 * interval
            stalled_before = now - stall_seconds
            for subscriber in self.registry:
                subscriber.tick(now, ping_before, stalled_before)

    # -- subscribe --------------------------------------------------------------------

    def open(self, channels: tuple[str, ...], ip: str, user_agent: str) -> Subscriber:
        """Register a new subscriber (holding live messages until ``go_live``)."""
        self.check_capacity(ip)
        limits = self.settings.limits
        subscriber = Subscriber(
            f"c_{secrets.token_urlsafe(12)}",
            channels,
            ip,
            user_agent,
            self._flusher,
            limits.client_buffer_bytes,
            self._closed,
            self.ids.placement(channels),
        )
        self.registry.add(subscriber)
        self.counters.connects += 1
        self.directory.client_connected(subscriber.client_id, subscriber)
        logger.info("connect", extra={"client": subscriber.client_id, "ip": ip, "channels": ",".join(channels)})
        return subscriber

    def check_capacity(self, ip: str) -> None:
        """Raise 503/429 when a new stream from ``ip`` would be over a limit."""
        limits = self.settings.limits
        if self._closing or self._heartbeat_task is None:  # shutting down, or not started
            raise TooManyConnections("the hub is shutting down")
        if len(self.registry) >= limits.max_connections:
            raise TooManyConnections("the hub is at its connection limit")
        if self.registry.count_for_ip(ip) >= limits.max_connections_per_ip:
            raise TooManyConnectionsFromIp("too many connections from this address")

    @property
    def replay_page_size(self) -> int:
        """Messages read from history at a time for a replay: a page of the largest
        messages fits the client buffer, so a client that stops reading pins no more."""
        limits = self.settings.limits
        return max(1, limits.client_buffer_bytes // limits.max_message_bytes)

    async def prepare_replay(self, subscriber: Subscriber, start: StartAt) -> Prepared:
        """The stream's preamble (retry, ``connected``, maybe ``reset``) and the first page
        of its replay, as the hub's id scheme reads them (``core/ids.py``); None when the
        stream would get nothing at all (its channels ended)."""
        # Receive the stream's channels first: once attach returns, everything published
        # to them reaches this instance, so nothing after `connected` is missed (the
        # broker's attach contract; release detaches, also when attach raised).
        await self.broker.attach(subscriber.channels)
        return await self.ids.prepare(self, subscriber, start)

    def open_preamble(self, subscriber: Subscriber) -> list[bytes]:
        """``retry`` and the ``connected`` event, in one chunk: the stream's first bytes
        set the reconnection delay before anything else can go wrong."""
        connected = json.dumps(
            {"client_id": subscriber.client_id, "channels": list(subscriber.channels)},
            separators=(",", ":"),
        )
        retry = b"retry: %d\n" % self.settings.sse.retry_ms
        return [sse.chunk(retry + sse.encode_event(connected, "connected"))]

    async def next_replay_page(self, subscriber: Subscriber, told_through: int) -> History | None:
        """The page after what the stream has queued, or None when history it is owed was
        trimmed since its first page (``told_through``: what that page reported)."""
        return await self.ids.next_page(self, subscriber, told_through)

    async def replay_page(self, subscriber: Subscriber, after_id: int) -> History:
        """The next page of a stream's replay: its channels' and global messages after
        ``after_id`` (a Mercure stream's: the updates of the feed it may see)."""
        if subscriber in self.mercure:
            return await mercure_replay.read_page(
                self.broker, partial(self._mercure_accepts, subscriber), after_id, self.replay_page_size
            )
        channels = (*subscriber.channels, GLOBAL_CHANNEL)
        return await self.broker.history(channels, after_id, limit=self.replay_page_size)

    async def finished(self, channels: Collection[str]) -> dict[str, int]:
        return await self.broker.finished(channels)

    def reset_chunk(self, reason: str, last_event_id: str | None) -> bytes:
        self.counters.resets += 1
        data = json.dumps({"reason": reason, "last_event_id": last_event_id}, separators=(",", ":"))
        return sse.chunk(sse.encode_event(data, "reset"))

    # -- Mercure subscribers ------------------------------------------------------------

    def open_mercure(
        self, subscription: SelectorSet, grant: MercureGrant | None, ip: str, user_agent: str
    ) -> Subscriber:
        """Register a Mercure subscriber (in the registry and the Mercure index); only the
        Mercure endpoint calls it, which exists when Mercure is on."""
        subscriber = self.open((FEED_CHANNEL,), ip, user_agent)
        self.mercure.add(subscriber, subscription, grant)
        return subscriber

    async def prepare_mercure_replay(
        self, subscriber: Subscriber, cursor: Cursor | None
    ) -> tuple[list[bytes], History, str | None]:
        """The preamble, the first replay page and the cursor response header's value
        (None: no cursor was sent). Attaches first, as ``prepare_replay`` does: what carries
        every update the subscription may match (``MercureIndex.interest``: the routing
        names of its exact topics, or the shared feed); ``release`` detaches the same."""
        await self.broker.attach(self.mercure.interest(subscriber))
        preamble = [sse.chunk(b"retry: %d\n\n" % self.settings.sse.retry_ms)]
        if cursor is None:
            return preamble, NO_REPLAY, None
        self.counters.replays += 1
        history, header = await self.ids.start_mercure(self, subscriber, cursor)
        return preamble, history, header

    def replay_filter(self, subscriber: Subscriber) -> Callable[[Message], bool] | None:
        """What a stream's replay keeps of what it reads: a Mercure stream's updates that its
        selectors and current token accept; None for a channel stream (everything)."""
        return partial(self._mercure_accepts, subscriber) if subscriber in self.mercure else None

    def _mercure_accepts(self, subscriber: Subscriber, message: Message) -> bool:
        meta = message.mercure
        return meta is not None and self.mercure.accepts(subscriber, meta.topics, meta.private)

    def release(self, subscriber: Subscriber) -> None:
        """Forget a subscriber; called once per subscriber (invariant 4)."""
        subscriber.close("disconnected")
        attached = self.mercure.interest(subscriber) if subscriber in self.mercure else subscriber.channels
        self.mercure.remove(subscriber)
        if self.registry.get(subscriber.client_id) is subscriber:
            self.registry.remove(subscriber)
            self.counters.delivered_to_departed += subscriber.messages_sent
        self.directory.client_disconnected(subscriber.client_id)
        self.broker.detach(attached)

    def _closed(self, subscriber: Subscriber, reason: CloseReason) -> None:
        counters = self.counters
        counters.disconnects[reason] = counters.disconnects.get(reason, 0) + 1
        if reason == "slow":
            counters.slow_disconnects += 1
        logger.info(
            "disconnect",
            extra={
                "client": subscriber.client_id,
                "reason": reason,
                "messages": subscriber.messages_sent,
                "bytes": subscriber.bytes_sent,
            },
        )

    async def kick(self, client_id: str) -> None:
        """Disconnect a client wherever it is connected: here at once, else through the
        broker as a ``kick`` control message to the instance that holds it."""
        subscriber = self.registry.get(client_id)
        if subscriber is not None:
            subscriber.close("kicked")
            return
        if not await self.directory.client_exists(client_id):
            raise UnknownClient(f"no client {client_id!r} is connected")
        await self.broker.publish([Draft(event="message", data="", channels=(), client_id=client_id, kick=True)])

    # -- publish and fan-out ----------------------------------------------------------

    async def publish(self, drafts: Sequence[Draft]) -> list[Message]:
        """Check direct targets, then hand the whole batch to the broker (all or nothing)."""
        for draft in drafts:
            if draft.client_id is not None and self.registry.get(draft.client_id) is None:
                if not await self.directory.client_exists(draft.client_id):
                    raise UnknownClient(f"no client {draft.client_id!r} is connected", {"client_id": draft.client_id})
        try:
            messages = await self.broker.publish(drafts)
        except BrokerUnavailable:
            self.counters.publish_errors += 1
            raise
        self.counters.messages_published += len(messages)
        return messages

    def publish_now(self, drafts: Sequence[Draft]) -> list[Message] | None:
        """``publish`` without awaiting, or None when it would have to await: the broker
        must (``Broker.publish_now``), or a direct target is not here and only the
        directory can say whether it is elsewhere."""
        registry = self.registry
        if any(draft.client_id is not None and registry.get(draft.client_id) is None for draft in drafts):
            return None
        try:
            messages = self.broker.publish_now(drafts)
        except BrokerUnavailable:
            self.counters.publish_errors += 1
            raise
        if messages is not None:
            self.counters.messages_published += len(messages)
        return messages
