"""Which master owns each hash slot, read with ``CLUSTER SLOTS``.

Invariants:

1. ``refresh`` asks the configured node first, then every node an earlier answer named
   (masters and replicas), each on a short-lived connection with a timeout; it raises
   ``RedisConnectionError`` only when none answered. The map is replaced whole, never
   patched, so it is always one node's consistent view.
2. ``owner(slot)`` answers from the last map, without I/O (None: no master serves it).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Mapping, Sequence

from redis.asyncio.connection import AbstractConnection, Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from sse_hub.broker.redis.script_connection import COMMAND_TIMEOUT_SECONDS

Node = tuple[str, int]


def parse_slots(reply: Sequence[object], asked_host: str) -> tuple[list[tuple[int, int, Node]], list[Node]]:
    """A raw ``CLUSTER SLOTS`` reply as sorted (start, end, master) ranges and every node
    named. An empty host means the node that answered."""
    ranges: list[tuple[int, int, Node]] = []
    nodes: list[Node] = []
    for entry in reply:
        if not isinstance(entry, list) or len(entry) < 3:
            continue
        start, end, *servers = entry
        for index, server in enumerate(servers):
            if not isinstance(server, list) or len(server) < 2:
                continue
            host = server[0].decode() if isinstance(server[0], bytes) else str(server[0])
            node = (host or asked_host, int(server[1]))
            nodes.append(node)
            if index == 0:
                ranges.append((int(start), int(end), node))
    return sorted(ranges), list(dict.fromkeys(nodes))


class Topology:
    def __init__(self, entry: Node, connection_kwargs: Mapping[str, object]) -> None:
        self.entry = entry
        self._kwargs = dict(connection_kwargs)
        self._ranges: list[tuple[int, int, Node]] = []
        self._starts: list[int] = []
        self.known: list[Node] = []
        #: Times the map was read (tests).
        self.refreshes = 0

    def owner(self, slot: int) -> Node | None:
        at = bisect.bisect_right(self._starts, slot) - 1
        if at >= 0:
            start, end, node = self._ranges[at]
            if start <= slot <= end:
                return node
        return None

    @property
    def masters(self) -> set[Node]:
        return {node for _, _, node in self._ranges}

    async def refresh(self) -> None:
        failures: list[str] = []
        for node in dict.fromkeys((self.entry, *self.known)):
            try:
                reply = await self._cluster_slots(node)
            except (RedisError, OSError, TimeoutError) as exc:
                failures.append(f"{node[0]}:{node[1]}: {exc or type(exc).__name__}")
                continue
            ranges, nodes = parse_slots(reply, node[0])
            if not ranges:
                failures.append(f"{node[0]}:{node[1]}: no slot is served")
                continue
            self._ranges, self._starts = ranges, [start for start, _, _ in ranges]
            self.known = nodes
            self.refreshes += 1
            return
        raise RedisConnectionError("no Redis Cluster node answered CLUSTER SLOTS: " + "; ".join(failures))

    async def _cluster_slots(self, node: Node) -> list[object]:
        return await cluster_slots(Connection(**{**self._kwargs, "host": node[0], "port": node[1]}))  # type: ignore[arg-type]


async def cluster_slots(connection: AbstractConnection) -> list[object]:
    """The raw ``CLUSTER SLOTS`` reply of the node a new, unconnected ``connection`` points
    at, within ``COMMAND_TIMEOUT_SECONDS``; the connection is closed again. Also used by
    the one-slot broker (``redis.one_slot``)."""
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
            await connection.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            await connection.send_command("CLUSTER", "SLOTS", check_health=False)
            reply = await connection.read_response()
    finally:
        with contextlib.suppress(RedisError, OSError):
            await connection.disconnect()
    if not isinstance(reply, list):
        raise RedisConnectionError(f"unexpected answer to CLUSTER SLOTS: {reply!r}")
    return reply
