"""The publish script, group-committed per master on a connection of the broker's own.

Through redis-py's cluster client every script call is a command of its own: a node
lookup, a pool checkout, a write and a read, with their timers. In S5 (one POST per
message, 8 in flight, spread over 3 masters) that was a write system call per message to
a Redis on the same core. ``ScriptBatches`` sends the script calls made in one loop
iteration to one master as one pipelined write on that master's own connection (as the
single-Redis publisher's ``script_connection``), and reads their replies in order.

Invariants:

1. Each call is its own ``EVALSHA`` on its own slot, so what the script guarantees per
   call (all or nothing per part, ``publish`` invariant 1) is unchanged: batching only
   shares the write and the round trip.
2. Per master, calls go out in the order they were made, on one connection, one batch in
   flight (calls made meanwhile wait in the next): a channel's parts keep their order
   (``publish`` invariant 2). The master is the broker's slot map (``Topology``); a call
   whose slot has no known master goes through redis-py's cluster client (``fallback``).
3. No hidden retries of what may have run: a connection error or timeout (the batch is
   bounded by ``COMMAND_TIMEOUT_SECONDS`` as a whole) fails every call of the batch and
   drops the connection; the next batch opens a new one. A connection the server closed
   while idle is replaced before a batch goes out on it (as ``script_connection`` does).
   Redis refused a call before it ran when it answers ``NOSCRIPT`` (the script is loaded
   and those calls sent again, in order, on the same connection) or ``MOVED``/``ASK``
   (that call alone goes through ``fallback``, which follows the redirect, and the repair
   is woken, ``moved``, to re-read the slot map).
4. Every waiting caller is resolved, whatever happens (its reply, its error, or the
   batch's failure); ``close`` fails what is queued and drops the connections.
5. ``writes`` counts the writes sent (a batch is one, a reload two more), for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
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
    """One master's connection, the calls waiting for it, and the batch in flight."""

    node: Node
    connection: Connection | None = None
    queued: list[_Call] = field(default_factory=list)
    sending: asyncio.Task[None] | None = None


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
        master.queued.append(_Call(keys, args, answer))
        if master.sending is None:
            master.sending = asyncio.create_task(self._send(master), name="sse-hub-sharded-publish")
        reply = await answer
        if isinstance(reply, AskError):  # MOVED too: refused before it ran (invariant 3)
            self._moved()
            return await self._fallback(keys=keys, args=args)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def close(self) -> None:
        masters, self._masters = list(self._masters.values()), {}
        await cancel_and_wait([master.sending for master in masters if master.sending is not None])
        for master in masters:
            _fail(master.queued, RedisError("the broker is stopping"))
            await _drop(master)

    async def _send(self, master: _Master) -> None:
        """Send what is queued for ``master``, batch after batch, until nothing is
        (invariant 2); the task ends with the queue empty."""
        try:
            while master.queued:
                batch, master.queued = master.queued, []
                try:
                    replies = await self._round_trip(master, batch)
                except BaseException as exc:
                    await _drop(master)
                    _fail(batch, exc if isinstance(exc, RedisError | OSError) else RedisError(repr(exc)))
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for call, reply in zip(batch, replies, strict=True):
                    if not call.answer.done():
                        call.answer.set_result(reply)
        finally:
            master.sending = None
            _fail(master.queued, RedisError("the publisher stopped"))

    async def _round_trip(self, master: _Master, batch: Sequence[_Call]) -> list[object]:
        """The replies to ``batch``'s calls; an error reply is a reply, not raised. Calls
        that met ``NOSCRIPT`` (a master new to the script, or its cache flushed) did not
        run: the script is loaded and they are sent again, in order (invariant 3)."""
        async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
            connection = await self._ready(master)
            replies = await self._pipeline(connection, batch)
            missing = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                await self._pipeline(connection, [("SCRIPT", "LOAD", self._script)])
                again = await self._pipeline(connection, [batch[index] for index in missing])
                for index, reply in zip(missing, again, strict=True):
                    replies[index] = reply
            return replies

    async def _pipeline(self, connection: Connection, calls: Sequence[_Call | tuple[Arg, ...]]) -> list[object]:
        """``calls`` (script calls, or a plain command) sent in one write, their replies read."""
        commands = [
            ("EVALSHA", self._sha, len(call.keys), *call.keys, *call.args) if isinstance(call, _Call) else call
            for call in calls
        ]
        self.writes += 1
        await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
        replies: list[object] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as error:
                replies.append(error)
        return replies

    async def _ready(self, master: _Master) -> Connection:
        """``master``'s connection, opened afresh when there is none or the server closed it
        while idle (invariant 3)."""
        connection = master.connection
        if connection is not None:
            try:
                if not await connection.can_read():
                    return connection
            except (RedisError, OSError):
                pass  # closed by the server while idle
            await _drop(master)
        connection = Connection(**{**self._kwargs, "host": master.node[0], "port": master.node[1]})  # type: ignore[arg-type]
        await connection.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        master.connection = connection
        return connection


def _fail(calls: Sequence[_Call], error: BaseException) -> None:
    for call in calls:
        if not call.answer.done():
            call.answer.set_exception(error)
            call.answer.exception()  # retrieved: its caller may have left


async def _drop(master: _Master) -> None:
    connection, master.connection = master.connection, None
    if connection is not None:
        with contextlib.suppress(RedisError, OSError):
            await connection.disconnect(nowait=True)
