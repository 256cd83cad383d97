"""Publishing that waits for replicas (``broker.min_replicas_acked``): each script call
runs on its slot's master followed by ``WAIT numreplicas timeout`` on the same connection.

Redis replicates asynchronously: a master that acknowledged a write and died before
sending it on loses it, and its replica takes over without it. ``WAIT`` "blocks the
current client until all the previous write commands are successfully transferred and
acknowledged by at least the specified number of replicas" (redis.io/commands/wait): it
counts the writes of *its own connection*, so it must follow the script on the connection
that ran it. redis-py's cluster client picks a connection per command, so the call goes to
the master's ``ClusterNode``: one of its connections, both commands in one write.
``WAITAOF`` (Redis >= 7.2) would wait for an append-only file's fsync too; Redis 7.0 (the
one here) has only ``WAIT``, and a replica's memory is what a failover keeps.

Invariants:

1. A call answers only after ``replicas`` replicas acknowledged the script's writes, or
   raises: ``NotReplicated`` (a ``RedisError``, hence 503 ``broker_unavailable``) when
   fewer did within ``WAIT_MS``. Such a part *was applied* on the master (stored and
   ``SPUBLISH``ed): it stays if the master lives, and may or may not survive a failover.
2. ``WAIT_MS`` is the command timeout; the reply to ``WAIT`` is read for that long plus
   the command timeout again, so Redis answers with a count before the client gives up.
   A connection left with a reply unread is closed, never reused.
3. The master is the broker's own slot map (``Topology``, re-read by the repair after any
   failed publish), so a failover is followed without redis-py's cache. ``MOVED`` and
   ``ASK`` are followed to the node they name and ``NOSCRIPT`` loads the script: in each
   case Redis refused the script before it ran, so nothing is applied twice. At most
   ``ATTEMPTS`` sends; connection errors are never retried (the script may have run).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, NoScriptError, RedisError, ResponseError

from sse_hub.broker.redis.script_connection import COMMAND_TIMEOUT_SECONDS
from sse_hub.broker.redis.topology import Topology

__all__ = ["ATTEMPTS", "WAIT_MS", "WAIT_READ_SECONDS", "AckedScript", "NotReplicated", "ScriptCall"]

WAIT_MS = int(COMMAND_TIMEOUT_SECONDS * 1000)
WAIT_READ_SECONDS = 2 * COMMAND_TIMEOUT_SECONDS
# One send, then a redirect or NOSCRIPT or two (a slot moving while the script is new).
ATTEMPTS = 4


class ScriptCall(Protocol):
    """A script call as redis-py's ``register_script`` gives it; ``AckedScript`` too."""

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int | bytes]) -> object: ...


class NotReplicated(RedisError):
    """Fewer replicas than asked acknowledged a script's writes in time (invariant 1)."""


class AckedScript:
    """``script`` on the master of its keys' slot, then ``WAIT replicas WAIT_MS`` on the
    same connection (module docstring)."""

    def __init__(self, cluster: RedisCluster, topology: Topology, script: str, replicas: int) -> None:
        self._cluster = cluster
        self._topology = topology
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()
        self._replicas = replicas

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int | bytes]) -> object:
        node, asking = self._master(keys[0]), False
        for _ in range(ATTEMPTS):
            commands: list[tuple[str | int | bytes, ...]] = [("EVALSHA", self._sha, len(keys), *keys, *args)]
            if asking:  # ASKING holds for the next command of this connection only
                commands.insert(0, ("ASKING",))
            reply, acked = (await _send(node, [*commands, ("WAIT", self._replicas, WAIT_MS)]))[-2:]
            if isinstance(reply, NoScriptError):
                await node.execute_command("SCRIPT", "LOAD", self._script)
                continue
            if isinstance(reply, AskError):  # MOVED is an AskError too
                node, asking = await self._redirected(reply, node), not isinstance(reply, MovedError)
                continue
            if isinstance(reply, BaseException):
                raise reply
            if isinstance(acked, BaseException):
                raise acked
            if not isinstance(acked, int) or acked < self._replicas:
                raise NotReplicated(
                    f"{acked} of {self._replicas} replicas acknowledged the write within {WAIT_MS} ms "
                    f"(it was applied on {node.name} and may not survive a failover)"
                )
            return reply
        raise RedisError(f"the script was redirected or reloaded {ATTEMPTS} times")

    def _master(self, key: str) -> ClusterNode:
        """The master of ``key``'s slot in the broker's map, as redis-py's node (its
        connections); redis-py's own map when it does not know that node."""
        owner = self._topology.owner(key_slot(key.encode()))
        node = self._cluster.get_node(host=owner[0], port=owner[1]) if owner else None
        if node is None:
            node = self._cluster.get_node_from_key(key)
        if node is None:
            raise RedisError(f"no master serves the slot of {key!r}")
        return node

    async def _redirected(self, error: AskError, node: ClusterNode) -> ClusterNode:
        """The node a MOVED or ASK names; MOVED also patches redis-py's slot map."""
        host = error.host or node.host
        if isinstance(error, MovedError):
            await self._cluster.nodes_manager.move_slot(error)
        target = self._cluster.get_node(host=host, port=error.port)
        if target is None:
            raise RedisError(f"redirected to {host}:{error.port}, a node redis-py does not know") from error
        return target


async def _send(node: ClusterNode, commands: Sequence[tuple[str | int | bytes, ...]]) -> list[object]:
    """The replies to ``commands`` (the last one a ``WAIT``) sent on one connection of
    ``node`` in one write; an error reply is returned, not raised. A connection or timeout
    error is raised, and the connection is closed then (invariant 2)."""
    connection = node.acquire_connection()
    replies: list[object] = []
    try:
        await connection.send_packed_command(connection.pack_commands(commands))
        for index in range(len(commands)):
            waiting = index == len(commands) - 1
            try:
                reply = await connection.read_response(timeout=WAIT_READ_SECONDS if waiting else None)
            except ResponseError as error:
                reply = error
            if waiting and reply is None:  # redis-py answers None when that bound passed
                await connection.disconnect()
                raise TimeoutError(f"no answer to WAIT from {node.name} within {WAIT_READ_SECONDS} s")
            replies.append(reply)
    finally:
        node.release(connection)
    return replies
