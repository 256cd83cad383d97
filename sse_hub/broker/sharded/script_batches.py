"""The publish script, group-committed per master on a connection of the broker's own.

Through redis-py's cluster client every script call is a command of its own: a node
lookup, a pool checkout, a write and a read, with their timers. In S5 (one POST per
message, 8 in flight, spread over 3 masters) that was a write system call per message to
a Redis on the same core. ``ScriptBatches`` sends the script calls made in one loop
iteration to one master as one pipelined write on that master's own connection (as the
single-Redis publisher's ``script_connection``); a reader task per connection reads the
replies in order. A batch does not wait for the one before it to be answered (Redis
answers in order on one connection): waiting made S1 on one channel slower.

Invariants:

1. Each call is its own ``EVALSHA`` on its own slot, so what the script guarantees per
   call (all or nothing per part, ``publish`` invariant 1) is unchanged: batching only
   shares the write.
2. Per master, calls are written in the order they were made, on one connection (writes
   one at a time, ``_Master.lock``), and answered in that order: a channel's parts keep
   their order (``publish`` invariant 2). The master is the broker's slot map
   (``Topology``); a call whose slot has no known master goes through redis-py's cluster
   client (``fallback``).
3. No hidden retries of what may have run: a connection error, or no reply within
   ``COMMAND_TIMEOUT_SECONDS`` while calls wait, fails every call written or waiting on
   that connection and drops it; the next batch opens a new one. A connection the server
   closed while idle is replaced before a batch goes out on it (as ``script_connection``
   does). A new connection loads the script first. Redis refused a call before it ran
   when it answers ``MOVED``/``ASK`` or ``NOSCRIPT`` (its script cache was flushed): that
   call alone goes through ``fallback``, which follows the redirect or loads the script
   (concurrent calls refused so may then be numbered in another order than they were
   made; nothing orders concurrent publishes), and a redirect wakes the repair (``moved``).
4. Every waiting caller is resolved, whatever happens (its reply, its error, or the
   connection's failure); ``close`` fails what waits and ends the reader tasks.
5. ``writes`` counts the batches written (one write each), for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from redis.asyncio.connection import Connection
from redis.crc import key_slot
from redis.exceptions import AskError, NoScriptError, RedisError, ResponseError

from sse_hub.broker.redis.script_connection import COMMAND_TIMEOUT_SECONDS
from sse_hub.broker.redis.tasks import cancel_and_wait
from sse_hub.broker.redis.topology import Node, Topology
from sse_hub.broker.sharded.replicas import ScriptCall

Arg = str | int | bytes


@dataclass(slots=True)
class _Call:
    keys: Sequence[str]
    args: Sequence[Arg]
    answer: asyncio.Future[object]


@dataclass(slots=True)
class _Master:
    """One master's connection, the calls not yet written, those written and unanswered
    (in order), and the tasks that write and read."""

    node: Node
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    connection: Connection | None = None
    queued: list[_Call] = field(default_factory=list)
    written: deque[_Call] = field(default_factory=deque)
    sent: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None
    writers: set[asyncio.Task[None]] = field(default_factory=set)


class ScriptBatches:
    """``await batches(keys=..., args=...)``, as redis-py's ``Script`` is called (a
    ``ScriptCall``). ``connection_kwargs``: credentials and timeouts for each master's
    connection; ``fallback``: the same script through redis-py's cluster client;
    ``moved()``: a call met a redirect."""

    def __init__(
        self,
        topology: Topology,
        connection_kwargs: Mapping[str, object],
        script: str,
        fallback: ScriptCall,
        moved: Callable[[], None],
    ) -> None:
        self._topology = topology
        self._kwargs = connection_kwargs
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()
        self._fallback = fallback
        self._moved = moved
        self._masters: dict[Node, _Master] = {}
        self.writes = 0

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> object:
        node = self._topology.owner(key_slot(keys[0].encode()))
        if node is None:
            return await self._fallback(keys=keys, args=args)
        master = self._masters.get(node)
        if master is None:
            master = self._masters[node] = _Master(node)
        answer: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if not master.queued:  # the first call of this loop iteration: write the batch soon
            writer = asyncio.create_task(self._write(master), name="sse-hub-sharded-publish")
            master.writers.add(writer)
            writer.add_done_callback(master.writers.discard)
        master.queued.append(_Call(keys, args, answer))
        reply = await answer
        if isinstance(reply, AskError | NoScriptError):  # refused before it ran (invariant 3)
            if isinstance(reply, AskError):  # MOVED is an AskError too
                self._moved()
            return await self._fallback(keys=keys, args=args)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def close(self) -> None:
        masters, self._masters = list(self._masters.values()), {}
        for master in masters:
            tasks = [*master.writers, *([master.reader] if master.reader else [])]
            await cancel_and_wait(tasks)
            _fail(master.queued, RedisError("the broker is stopping"))
            await self._lose(master, RedisError("the broker is stopping"))

    async def _write(self, master: _Master) -> None:
        """Write the calls queued in this loop iteration in one write, after the batches
        before it (``lock``: FIFO), and hand them to the reader (invariant 2)."""
        async with master.lock:
            batch, master.queued = master.queued, []
            if not batch:
                return
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
                    connection = await self._ready(master)
                    commands = [("EVALSHA", self._sha, len(call.keys), *call.keys, *call.args) for call in batch]
                    master.written.extend(batch)
                    master.sent.set()
                    self.writes += 1
                    await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
            except BaseException as exc:
                _fail(batch, _as_redis_error(exc))
                await self._lose(master, _as_redis_error(exc))
                if not isinstance(exc, Exception):
                    raise

    async def _read(self, master: _Master, connection: Connection) -> None:
        """The replies of ``connection``, in order, each to the oldest written call."""
        try:
            while True:
                while not master.written:
                    master.sent.clear()
                    await master.sent.wait()
                async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
                    try:
                        reply: object = await connection.read_response()
                    except ResponseError as error:
                        reply = error
                call = master.written.popleft()
                if not call.answer.done():
                    call.answer.set_result(reply)
        except BaseException as exc:
            if master.connection is connection:
                master.reader = None  # this task ends here: _lose must not cancel it
                await self._lose(master, _as_redis_error(exc))
            if not isinstance(exc, Exception):
                raise

    async def _ready(self, master: _Master) -> Connection:
        """``master``'s connection, opened afresh (the script loaded, a reader started) when
        there is none or the server closed it while idle (invariant 3)."""
        connection = master.connection
        if connection is not None:
            if master.written:  # in use: its reader would see a close
                return connection
            try:
                if not await connection.can_read():
                    return connection
            except (RedisError, OSError):
                pass  # closed by the server while idle
            await self._lose(master, RedisError("the connection was closed"))
        connection = Connection(**{**self._kwargs, "host": master.node[0], "port": master.node[1]})  # type: ignore[arg-type]
        await connection.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        await connection.send_command("SCRIPT", "LOAD", self._script)
        await connection.read_response()
        master.connection = connection
        master.reader = asyncio.create_task(self._read(master, connection), name="sse-hub-sharded-publish-replies")
        return connection

    async def _lose(self, master: _Master, error: RedisError) -> None:
        """Drop ``master``'s connection: fail what was written on it, end its reader."""
        connection, master.connection = master.connection, None
        reader, master.reader = master.reader, None
        written, master.written = list(master.written), deque()
        _fail(written, error)
        if reader is not None and reader is not asyncio.current_task():
            await cancel_and_wait([reader])
        if connection is not None:
            with contextlib.suppress(RedisError, OSError):
                await connection.disconnect(nowait=True)


def _as_redis_error(exc: BaseException) -> RedisError:
    """What a caller is told: a RedisError (``unavailable`` makes it a 503)."""
    return exc if isinstance(exc, RedisError) else RedisError(str(exc) or type(exc).__name__)


def _fail(calls: Sequence[_Call], error: BaseException) -> None:
    for call in calls:
        if not call.answer.done():
            call.answer.set_exception(error)
            call.answer.exception()  # retrieved: its caller may have left
