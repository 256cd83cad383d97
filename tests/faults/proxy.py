"""A loopback TCP proxy of our own that can cut, stall and delay the connections through it.

One ``Proxy`` listens on 127.0.0.1 and opens one connection to its target per connection
it accepts; two pumps copy bytes, one each way. Faults apply to every connection, or to
the connections of one *owner* (the hub that opened them, as told by ``identify`` when the
proxy accepted them: one proxy in front of a Redis Cluster node serves every hub):

- ``cut(owner)``: close the matching connections now, both sides (new ones are accepted);
- ``refuse(seconds, owner)``: ``cut``, and close new connections at once until then;
- ``stall(seconds, owner)``: hold every byte, both ways, until then (the sockets stay
  open: a peer sees silence, not an error); what was held then goes through, in order,
  and an end of stream that arrived meanwhile is passed on after it;
- ``delay(latency_seconds, seconds, owner)``: hold each chunk ``latency_seconds`` until then.

Invariants: a fault always has an end time (``heal`` ends them all at once); every pump
waits at most until the end of the fault it is held by; ``stop`` closes every connection
and awaits every task the proxy started. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CHUNK_BYTES = 65536
CONNECT_TIMEOUT_SECONDS = 3.0
# A held pump looks at the clock this often (so a fault shortened by heal ends promptly).
GATE_POLL_SECONDS = 0.02
EVERYONE = "*"


@dataclass
class _Rule:
    """The faults in force for one owner (or for everyone), as monotonic end times."""

    stall_until: float = 0.0
    refuse_until: float = 0.0
    delay_until: float = 0.0
    delay_seconds: float = 0.0


@dataclass(eq=False)
class _Connection:
    owner: str | None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    closed: bool = False

    def close(self) -> None:
        """A cut: both sides at once, whatever is still buffered is dropped."""
        self.closed = True
        for writer in self.writers:
            writer.transport.abort()


class Proxy:
    """``identify(peer_port, listen_port)`` names the owner of an accepted connection (or None)."""

    def __init__(
        self,
        name: str,
        target_port: int,
        identify: Callable[[int, int], str | None] | None = None,
    ) -> None:
        self.name = name
        self.target_port = target_port
        self.port = 0
        self.accepted = 0
        self._identify = identify
        self._rules: dict[str, _Rule] = {}
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.heal()
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    # -- faults ---------------------------------------------------------------------------

    def cut(self, owner: str | None = None) -> int:
        """Close every connection of ``owner`` (every connection when None); how many."""
        matching = [c for c in self._connections if owner is None or c.owner == owner]
        for connection in matching:
            connection.close()
        return len(matching)

    def refuse(self, seconds: float, owner: str | None = None) -> None:
        self._rule(owner).refuse_until = time.monotonic() + seconds
        self.cut(owner)

    def stall(self, seconds: float, owner: str | None = None) -> None:
        rule = self._rule(owner)
        rule.stall_until = max(rule.stall_until, time.monotonic() + seconds)

    def delay(self, latency_seconds: float, seconds: float, owner: str | None = None) -> None:
        rule = self._rule(owner)
        rule.delay_seconds = latency_seconds
        rule.delay_until = time.monotonic() + seconds

    def heal(self) -> None:
        """End every fault now (held bytes go through)."""
        self._rules.clear()

    def _rule(self, owner: str | None) -> _Rule:
        return self._rules.setdefault(owner or EVERYONE, _Rule())

    def _rules_of(self, owner: str | None) -> list[_Rule]:
        keys = (EVERYONE,) if owner is None else (EVERYONE, owner)
        return [self._rules[key] for key in keys if key in self._rules]

    # -- connections ----------------------------------------------------------------------

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        peer = client_writer.get_extra_info("peername")
        owner = self._identify(int(peer[1]), self.port) if self._identify is not None and peer else None
        connection = _Connection(owner, [client_writer])
        now = time.monotonic()
        if any(rule.refuse_until > now for rule in self._rules_of(owner)):
            connection.close()
            return
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                target_reader, target_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except (OSError, TimeoutError):
            connection.close()  # the target is down: the client sees the connection end
            return
        connection.writers.append(target_writer)
        self._connections.add(connection)
        for reader, writer in ((client_reader, target_writer), (target_reader, client_writer)):
            task = asyncio.create_task(self._pump(connection, reader, writer), name=f"proxy-{self.name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, connection: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not connection.closed:
                chunk = await reader.read(CHUNK_BYTES)
                await self._gate(connection)
                if not chunk or connection.closed:
                    break
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            connection.close()
        finally:
            # An end of stream: close this way gracefully (what is buffered still goes
            # out); the other pump then sees its end and does the same.
            writer.close()
            self._connections.discard(connection)

    async def _gate(self, connection: _Connection) -> None:
        """Wait out a stall, then a delay, of this connection's owner (bounded by their ends)."""
        while not connection.closed:
            now = time.monotonic()
            rules = self._rules_of(connection.owner)
            stall_until = max((rule.stall_until for rule in rules), default=0.0)
            if stall_until > now:
                await asyncio.sleep(min(GATE_POLL_SECONDS, stall_until - now))
                continue
            latency = max((rule.delay_seconds for rule in rules if rule.delay_until > now), default=0.0)
            if latency > 0:
                await asyncio.sleep(latency)
            return
