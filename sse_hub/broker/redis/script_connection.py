"""A Lua script run on a connection of its own: the publisher's.

The publisher sends one script call at a time (``publisher`` invariant 5), so it needs
none of what redis-py wraps around every command for shared use: a pool checkout, a retry
policy, a timeout task per write and per read, and a re-check and re-encoding of every
argument. In the S5 benchmark (a publish per message, about four per script call) that
wrapping was the largest part of the Redis broker's cost per message after Redis itself.

Invariants:

1. One command at a time on the connection (``_lock``), each bounded by
   ``COMMAND_TIMEOUT_SECONDS`` as a whole (send and answer).
2. The connection is in step or gone: after anything but an error reply from Redis
   (a lost connection, a timeout, a cancellation) it is dropped, and the next call opens
   a new one, where the pool now points (Redis Cluster moves it). A connection the server
   closed while idle is replaced before a command goes out on it, as redis-py's pool does
   at checkout, so an idle timeout on the server costs no publish.
3. The connection is named after the pool's client name plus ``/role``
   (``sse-hub:{instance}/publisher``), so ``CLIENT LIST`` tells it apart. ``own_connection``
   makes it, and the listener's subscriber connection, from the pool's settings.
4. ``NOSCRIPT`` (Redis restarted or its scripts were flushed) means nothing ran: the
   script is loaded and the call sent once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

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


class ScriptConnection:
    """``await script(keys=..., args=...)``, as redis-py's ``Script`` is called."""

    def __init__(self, redis: Redis, source: str, role: str) -> None:
        self._pool = redis.connection_pool
        self._role = role
        self._source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._connection: AbstractConnection | None = None
        self._lock = asyncio.Lock()

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        command = ("EVALSHA", self.sha, len(keys), *keys, *args)
        async with self._lock:
            try:
                return await self._execute(command)
            except NoScriptError:
                await self._execute(("SCRIPT", "LOAD", self._source))
                return await self._execute(command)

    async def reset(self) -> None:
        """Drop the connection (the broker lost Redis, or the pool was moved)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(RedisError, OSError):
                await connection.disconnect(nowait=True)

    async def _execute(self, command: tuple[Arg, ...]) -> Any:
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
                connection = await self._ready()
                await connection.send_packed_command(_pack(connection, command), check_health=False)
                return await connection.read_response()
        except ResponseError:
            raise  # Redis answered: the connection is in step
        except BaseException:
            await self.reset()
            raise

    async def _ready(self) -> AbstractConnection:
        connection = self._connection
        if connection is not None:
            try:
                if not await connection.can_read():
                    return connection
            except (RedisConnectionError, OSError):
                pass  # closed by the server while idle
            await self.reset()
        connection = own_connection(self._pool, self._role)
        await connection.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        self._connection = connection
        return connection


def own_connection(pool: ConnectionPool, role: str | None = None) -> AbstractConnection:
    """A connection outside ``pool``, with its settings (where it points, credentials, TLS)
    but no socket timeout: its owner bounds whole calls, without a timer task per read.
    ``role`` is appended to the client name (``sse-hub:{instance}/{role}``)."""
    kwargs = pool.connection_kwargs
    name = kwargs.get("client_name")
    if name and role:
        name = f"{name}/{role}"
    return pool.connection_class(**{**kwargs, "socket_timeout": None, "client_name": name})


def _packer() -> Callable[[AbstractConnection, tuple[Arg, ...]], bytes | list[bytes]]:
    """hiredis's one C call for the whole command (the ``fast`` extra), else redis-py's."""
    try:
        from hiredis import pack_command
    except ImportError:
        return lambda connection, command: connection.pack_command(*command)
    return lambda _, command: pack_command(command)  # type: ignore[arg-type]  # its stub wants a 1-tuple


_pack = _packer()
