"""A loopback TCP proxy in front of a real redis-server that can hold back what Redis sends
on pub/sub connections: an instance whose listener lags, while its commands (history
reads, publishes) still go through at once. It can also slow down the subscribe commands
an instance sends (``slow_subscriptions``): a link on which attaching takes long; or the
writes that name some key (``slow_writes``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

# The commands that turn a connection into a subscriber connection (RESP sends them as
# bulk strings; matched case-insensitively in what the client writes).
SUBSCRIBE_COMMANDS = (b"SUBSCRIBE", b"SSUBSCRIBE", b"PSUBSCRIBE")


class RedisProxy:
    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._released = asyncio.Event()
        self._released.set()
        self._subscribe_delay_seconds = 0.0
        self._slow_patterns: dict[bytes, float] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        #: Chunks from Redis waiting at the hold, on subscriber connections.
        self.held_chunks = 0
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def hold(self) -> None:
        """From now on, what Redis sends to subscriber connections waits here."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def slow_subscriptions(self, delay_seconds: float) -> None:
        """From now on, what a client writes that holds a subscribe command reaches Redis
        ``delay_seconds`` late (and what it writes after, behind it, in order)."""
        self._subscribe_delay_seconds = delay_seconds

    def slow_writes(self, pattern: bytes, delay_seconds: float) -> None:
        """From now on, what a client writes that holds ``pattern`` (a key's name, say)
        reaches Redis ``delay_seconds`` late (and what it writes after, behind it)."""
        self._slow_patterns[pattern] = delay_seconds

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        redis_reader, redis_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._writers += [client_writer, redis_writer]
        subscriber = asyncio.Event()
        for pump in (
            self._upstream(client_reader, redis_writer, subscriber),
            self._downstream(redis_reader, client_writer, subscriber),
        ):
            task = asyncio.create_task(pump)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _upstream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, subscriber: asyncio.Event
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                delay = max(
                    (seconds for pattern, seconds in self._slow_patterns.items() if pattern in chunk), default=0
                )
                if any(command in chunk.upper() for command in SUBSCRIBE_COMMANDS):
                    subscriber.set()
                    delay = max(delay, self._subscribe_delay_seconds)
                if delay > 0:
                    await asyncio.sleep(delay)  # injected latency
                writer.write(chunk)
                await writer.drain()
        writer.close()

    async def _downstream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, subscriber: asyncio.Event
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                if subscriber.is_set() and not self._released.is_set():
                    self.held_chunks += 1
                    await self._released.wait()
                    self.held_chunks -= 1
                writer.write(chunk)
                await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def redis_proxy(target_url: str) -> AsyncIterator[RedisProxy]:
    port = int(target_url.rsplit(":", 1)[1].split("/", 1)[0])
    proxy = RedisProxy(port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
