"""A Lua script run on a connection of its own: the publisher's.

The publisher sends its script calls on one connection (``publisher`` invariant 5), so it
needs none of what redis-py wraps around every command for shared use: a pool checkout, a
retry policy, a timeout task per write and per read, and a re-check and re-encoding of
every argument. In the S5 benchmark (a publish per message, about four per script call)
that wrapping was the largest part of the Redis broker's cost per message after Redis
itself. Calls are pipelined: the calls made in one loop iteration go out in one write,
without waiting for the answers of those before them, and a reader task hands each reply
to its call in order (Redis answers in order on one connection), as the sharded broker's
``script_batches`` does. Waiting for each answer before the next write cost S1 (one
channel, 8 publishes in flight) several loop iterations per publish.

Invariants:

1. Calls are written in the order they were made (``_lock``: one write at a time, FIFO)
   and answered in that order. No reply within ``COMMAND_TIMEOUT_SECONDS`` while calls
   wait, or a write that does not finish within it, loses the connection.
2. The connection is in step or gone: a lost connection, a timeout or a cancellation of a
   write drops it and fails every call written or being written on it (none is retried:
   it may have run); the next call opens a new one, where the pool now points (Redis
   Cluster moves it). A connection the server closed while idle is replaced before a
   call goes out on it, as redis-py's pool does at checkout, so an idle timeout on the
   server costs no publish. The reader reads only while calls wait, so an idle close is
   seen there.
3. The connection is named after the pool's client name plus ``/role``
   (``sse-hub:{instance}/publisher``), so ``CLIENT LIST`` tells it apart. ``own_connection``
   makes it, and the listener's subscriber connection, from the pool's settings.
4. ``NOSCRIPT`` (Redis restarted or its scripts were flushed) means nothing ran: the
   script is loaded and the call sent once more (behind what was written meanwhile).
5. Every caller is resolved (its reply, Redis's error reply, or a ``RedisError`` for the
   connection's loss); ``reset`` fails what waits and ends the reader.
6. ``most_in_flight`` counts the most calls written and unanswered at once, for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

from sse_hub.broker.redis.tasks import cancel_and_wait

# Every command of the Redis broker, and the wait for a pooled connection.
COMMAND_TIMEOUT_SECONDS = 3.0


def connection_pool(url: str, instance_id: str, max_connections: int) -> BlockingConnectionPool:
    """The Redis broker's pool, which every connection of it (``own_connection`` too) is
    made from. No hidden retries: a publish must fail fast (503) rather than be sent twice.
    RESP2: the subscriber connection reads subscription messages as plain replies (redis-py
    8 defaults to RESP3, where they are out-of-band pushes). Bounded: a burst of reads
    (streams resuming after a restart) waits for a connection, at most the command
    timeout, instead of opening one per read."""
    return BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=COMMAND_TIMEOUT_SECONDS,
        protocol=2,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=COMMAND_TIMEOUT_SECONDS,
        socket_connect_timeout=COMMAND_TIMEOUT_SECONDS,
        client_name=f"sse-hub:{instance_id}",
    )


Arg = bytes | str | int
Command = tuple[Arg, ...]


@dataclass(slots=True)
class _Call:
    command: Command
    answer: asyncio.Future[Any]


class ScriptConnection:
    """``await script(keys=..., args=...)``, as redis-py's ``Script`` is called."""

    def __init__(self, redis: Redis, source: str, role: str) -> None:
        self._pool = redis.connection_pool
        self._role = role
        self._source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._connection: AbstractConnection | None = None
        self._lock = asyncio.Lock()
        self._queued: list[_Call] = []  # made in this loop iteration, not yet written
        self._written: deque[_Call] = deque()  # written, unanswered, in order
        self._sent = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._writers: set[asyncio.Task[None]] = set()
        self.most_in_flight = 0

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        command = ("EVALSHA", self.sha, len(keys), *keys, *args)
        reply = await self._send(command)
        if isinstance(reply, NoScriptError):  # nothing ran (invariant 4)
            loaded = await self._send(("SCRIPT", "LOAD", self._source))
            if isinstance(loaded, ResponseError):
                raise loaded
            reply = await self._send(command)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def reset(self) -> None:
        """Drop the connection (the broker lost Redis, or the pool was moved)."""
        await self._lose(RedisError("the connection was reset"))

    async def close(self) -> None:
        """End the writers and the reader; fail every call not answered (invariant 5)."""
        await cancel_and_wait(list(self._writers))
        queued, self._queued = self._queued, []
        _fail(queued, RedisError("the broker is stopping"))
        await self._lose(RedisError("the broker is stopping"))

    def _send(self, command: Command) -> asyncio.Future[Any]:
        """The reply to ``command`` (an error reply as a value), written with the others
        of this loop iteration."""
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._queued:  # the first call of this loop iteration: write soon
            writer = asyncio.create_task(self._write(), name="sse-hub-redis-publish-write")
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        self._queued.append(_Call(command, answer))
        return answer

    async def _write(self) -> None:
        """Write the queued calls in one write, after those before them (invariant 1)."""
        async with self._lock:
            batch, self._queued = self._queued, []
            if not batch:
                return
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
                    connection = await self._ready()
                    self._written.extend(batch)
                    self.most_in_flight = max(self.most_in_flight, len(self._written))
                    self._sent.set()
                    packed = _pack(connection, [call.command for call in batch])
                    await connection.send_packed_command(packed, check_health=False)
            except BaseException as exc:
                _fail(batch, _as_redis_error(exc))
                await self._lose(_as_redis_error(exc))
                if not isinstance(exc, Exception):
                    raise

    async def _read(self, connection: AbstractConnection) -> None:
        """The replies of ``connection``, in order, each to the oldest written call; reads
        only while calls wait (invariant 2)."""
        try:
            while True:
                while not self._written:
                    self._sent.clear()
                    await self._sent.wait()
                async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
                    try:
                        reply: object = await connection.read_response()
                    except ResponseError as error:
                        reply = error
                call = self._written.popleft()
                if not call.answer.done():
                    call.answer.set_result(reply)
        except BaseException as exc:
            if self._connection is connection:
                self._reader = None  # this task ends here: _lose must not cancel it
                await self._lose(_as_redis_error(exc))
            if not isinstance(exc, Exception):
                raise

    async def _ready(self) -> AbstractConnection:
        connection = self._connection
        if connection is not None:
            if self._written:  # in use: its reader would see a close
                return connection
            try:
                if not await connection.can_read():
                    return connection
            except (RedisConnectionError, OSError):
                pass  # closed by the server while idle
            await self._lose(RedisError("the connection was closed"))
        connection = own_connection(self._pool, self._role)
        await connection.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        self._connection = connection
        self._reader = asyncio.create_task(self._read(connection), name="sse-hub-redis-publish-replies")
        return connection

    async def _lose(self, error: RedisError) -> None:
        """Drop the connection: fail what was written on it, end its reader (invariant 2)."""
        connection, self._connection = self._connection, None
        reader, self._reader = self._reader, None
        written, self._written = list(self._written), deque()
        _fail(written, error)
        if reader is not None and reader is not asyncio.current_task():
            await cancel_and_wait([reader])
        if connection is not None:
            with contextlib.suppress(RedisError, OSError):
                await connection.disconnect(nowait=True)


def _as_redis_error(exc: BaseException) -> RedisError:
    """What a caller is told: a RedisError (the publisher makes it a 503)."""
    return exc if isinstance(exc, RedisError) else RedisError(str(exc) or type(exc).__name__)


def _fail(calls: Sequence[_Call], error: BaseException) -> None:
    for call in calls:
        if not call.answer.done():
            call.answer.set_exception(error)
            call.answer.exception()  # retrieved: its caller may have left


def own_connection(pool: ConnectionPool, role: str | None = None) -> AbstractConnection:
    """A connection outside ``pool``, with its settings (where it points, credentials, TLS)
    but no socket timeout: its owner bounds whole calls, without a timer task per read.
    ``role`` is appended to the client name (``sse-hub:{instance}/{role}``)."""
    kwargs = pool.connection_kwargs
    name = kwargs.get("client_name")
    if name and role:
        name = f"{name}/{role}"
    return pool.connection_class(**{**kwargs, "socket_timeout": None, "client_name": name})


def _packer() -> Callable[[AbstractConnection, list[Command]], bytes | list[bytes]]:
    """hiredis's one C call per command (the ``fast`` extra), else redis-py's."""
    try:
        from hiredis import pack_command
    except ImportError:
        return lambda connection, commands: connection.pack_commands(commands)
    return lambda _, commands: b"".join([pack_command(command) for command in commands])  # type: ignore[arg-type]


_pack = _packer()
