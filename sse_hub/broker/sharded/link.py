"""One subscriber connection to one master, and the task that reads it.

Invariants:

1. Commands are sent one write at a time, in call order (``_send_lock``); replies are read by the
   link's own reader task only. Each SSUBSCRIBE's future is registered before the command
   is sent, and resolved by the confirmation (in the order Redis confirms one channel).
2. A ``sunsubscribe`` this link did not ask for (``_leaving``) means the slot moved away:
   ``moved(shard_channel)`` is called, the link stays up for its other channels.
3. When the connection fails (error, or no answer to a PING within a health period:
   ``listener.read_replies``, shared with the standalone listener) the reader ends:
   every waiting subscribe fails with ``BrokerUnavailable`` and ``lost`` is called once
   with the link. ``close`` ends it without calling ``lost``.
4. ``receive`` (the broker's) is called for every payload, in the order the master sent
   them: one FIFO connection per master keeps each channel's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Collection, Mapping

from redis.asyncio.connection import Connection
from redis.exceptions import RedisError

from sse_hub.broker.redis.listener import read_replies
from sse_hub.broker.redis.script_connection import COMMAND_TIMEOUT_SECONDS
from sse_hub.broker.redis.tasks import cancel_and_wait
from sse_hub.broker.redis.topology import Node
from sse_hub.errors import BrokerUnavailable

logger = logging.getLogger(__name__)


class Link:
    def __init__(
        self,
        node: Node,
        connection_kwargs: Mapping[str, object],
        receive: Callable[[bytes], None],
        moved: Callable[[Link, str], None],
        lost: Callable[[Link], None],
    ) -> None:
        self.node = node
        # No socket timeout: the connection idles between messages; the reader checks it.
        kwargs = {**connection_kwargs, "host": node[0], "port": node[1], "socket_timeout": None}
        self._connection = Connection(**kwargs)  # type: ignore[arg-type]
        self._receive = receive
        self._moved = moved
        self._lost = lost
        #: Shard channels subscribed here (asked for or confirmed).
        self.channels: set[str] = set()
        self._confirmations: dict[bytes, deque[asyncio.Future[None]]] = {}
        self._leaving: dict[bytes, int] = {}
        self._send_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    async def open(self) -> None:
        async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
            await self._connection.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        self._task = asyncio.create_task(self._read(), name=f"sse-hub-sharded-link-{self.node[0]}:{self.node[1]}")

    async def subscribe(self, shard_channels: Collection[str]) -> list[asyncio.Future[None]]:
        """Send one SSUBSCRIBE per shard channel (one write); the futures resolve on the
        confirmations (or fail with ``BrokerUnavailable`` when the link is lost)."""
        if self.closed:
            raise BrokerUnavailable("the Redis Cluster subscriber connection was lost")
        loop = asyncio.get_running_loop()
        futures = []
        for channel in shard_channels:
            future: asyncio.Future[None] = loop.create_future()
            self._confirmations.setdefault(channel.encode(), deque()).append(future)
            futures.append(future)
            self.channels.add(channel)
        await self._write([("SSUBSCRIBE", channel) for channel in shard_channels])
        return futures

    async def unsubscribe(self, shard_channels: Collection[str]) -> None:
        for channel in shard_channels:
            self.channels.discard(channel)
            key = channel.encode()
            self._leaving[key] = self._leaving.get(key, 0) + 1
        await self._write([("SUNSUBSCRIBE", channel) for channel in shard_channels])

    async def _write(self, commands: list[tuple[str, str]]) -> None:
        """Send ``commands`` in one write; a failure leaves it to the reader (invariant 3)."""
        if not commands or self.closed:
            return
        try:
            async with self._send_lock:
                packed = self._connection.pack_commands(commands)
                await self._connection.send_packed_command(packed, check_health=False)
        except (RedisError, OSError) as exc:
            # The connection is broken: the reader notices, and the link is lost.
            logger.debug("redis cluster: sending to %s:%d failed: %s", *self.node, exc)
            with contextlib.suppress(RedisError, OSError):
                await self._connection.disconnect()

    async def close(self) -> None:
        self.closed = True
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])  # re-cancels: redis-py can swallow one (tasks.py)
        self._fail_waiting()
        with contextlib.suppress(RedisError, OSError):
            await self._connection.disconnect()

    def _fail_waiting(self) -> None:
        for futures in self._confirmations.values():
            for future in futures:
                if not future.done():
                    future.set_exception(BrokerUnavailable("the Redis Cluster subscriber connection was lost"))
                    future.exception()  # retrieved: nobody may be waiting any more
        self._confirmations.clear()

    async def _read(self) -> None:
        try:
            await read_replies(self._connection, self._handle, self._send_lock)
        except (RedisError, OSError) as exc:
            logger.warning("redis cluster: subscriber connection to %s:%d lost: %s", *self.node, exc)
        except Exception:  # task boundary: a bug must not end delivery silently
            logger.exception("redis cluster: subscriber connection to %s:%d failed", *self.node)
        self.closed = True
        self._fail_waiting()
        with contextlib.suppress(RedisError, OSError):
            await self._connection.disconnect()
        self._lost(self)

    def _handle(self, reply: object) -> None:
        if not isinstance(reply, list) or not reply:
            return
        kind = reply[0]
        if kind == b"smessage":
            self._receive(reply[2])
        elif kind == b"ssubscribe":
            self._confirmed(reply[1])
        elif kind == b"sunsubscribe":
            channel = reply[1]
            leaving = self._leaving.get(channel, 0)
            if leaving > 1:
                self._leaving[channel] = leaving - 1
            elif leaving == 1:
                del self._leaving[channel]
            else:
                self.channels.discard(channel.decode())
                self._moved(self, channel.decode())

    def _confirmed(self, channel: bytes) -> None:
        futures = self._confirmations.get(channel)
        if not futures:
            return
        future = futures.popleft()
        if not futures:
            del self._confirmations[channel]
        if not future.done():
            future.set_result(None)
