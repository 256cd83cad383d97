"""The daemon as users meet it: the real ``python -m sse_hub serve`` process on loopback,
read over raw sockets where the exact bytes matter (headers, chunk framing, the chunked
terminator at shutdown)."""

from __future__ import annotations

import asyncio
import codecs
import json
import re
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from types import TracebackType
from typing import Any

import aiohttp
import pytest

from tests.support.cli import run_sse_hub
from tests.support.paths import ROOT
from tests.support.processes import HubProcess, free_port
from tests.support.sse_client import Event, SseParser
from tests.support.waiting import wait_until

HubFactory = Callable[..., HubProcess]
TIMEOUT = 5


class RawStream:
    """One SSE request over a bare asyncio connection: the status line and headers as
    sent, then the body chunk by chunk (RFC 9112, 7.1), every read bounded."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status_line = ""
        self.headers: list[tuple[str, str]] = []
        self.parser = SseParser()
        self.chunks: list[bytes] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._events: list[Event] = []

    @classmethod
    async def open(cls, port: int, path: str, headers: dict[str, str] | None = None) -> RawStream:
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            stream = cls(reader, writer)
            lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: text/event-stream"]
            lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        stream.status_line, *header_lines = head.removesuffix("\r\n\r\n").split("\r\n")
        stream.headers = [(name, value.strip()) for name, _, value in (line.partition(":") for line in header_lines)]
        return stream

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    async def chunk(self, timeout: float = TIMEOUT) -> bytes:
        """The next chunk's bytes; ``b""`` is the terminating zero-length chunk."""
        async with asyncio.timeout(timeout):
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            body = await self.reader.readexactly(size + 2)
        assert body.endswith(b"\r\n"), body
        self.chunks.append(body[:-2])
        if size == 0:
            return b""
        self._events.extend(self.parser.feed(self._decoder.decode(body[:-2])))
        return body[:-2]

    async def next(self, timeout: float = TIMEOUT) -> Event:
        async with asyncio.timeout(timeout):
            while not self._events:
                if await self.chunk(timeout) == b"":
                    raise EOFError("the stream ended")
        return self._events.pop(0)

    async def connected(self) -> Event:
        event = await self.next()
        assert event.event == "connected", event
        return event

    async def chunks_until_end(self, timeout: float) -> list[bytes]:
        """Every chunk up to and including the terminator (``b""``)."""
        received = []
        async with asyncio.timeout(timeout):
            while True:
                received.append(await self.chunk(timeout))
                if received[-1] == b"":
                    return received

    async def close(self) -> None:
        self.writer.close()
        try:
            async with asyncio.timeout(TIMEOUT):
                await self.writer.wait_closed()
        except (ConnectionError, TimeoutError):
            pass

    async def __aenter__(self) -> RawStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()


async def publish(hub: HubProcess, body: object) -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        async with session.post(f"{hub.url}/broadcast", json=body) as response:
            assert response.status == 202, await response.text()
            return await response.json()


def stats(hub: HubProcess) -> Any:
    """``GET /stats``, synchronously, so ``wait_until`` can poll it (the hub is another process)."""
    with urllib.request.urlopen(f"{hub.url}/stats", timeout=TIMEOUT) as response:
        return json.load(response)


def client_ids(hub: HubProcess) -> set[str]:
    return {client["id"] for client in stats(hub)["clients"]}


def readyz(hub: HubProcess) -> tuple[int, Any]:
    """``GET /readyz``: the status and the JSON body, 503 included."""
    try:
        with urllib.request.urlopen(f"{hub.url}/readyz", timeout=TIMEOUT) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


def readyz_status(hub: HubProcess) -> int | None:
    """``readyz``'s status, or None for a connection the draining hub closed as it was
    opened (a client retries it, as this poll does)."""
    try:
        return readyz(hub)[0]
    except ConnectionError:
        return None


async def stall(hub: HubProcess, stream: RawStream, channel: str) -> str:
    """Publish to ``channel`` until the hub holds bytes the (never reading) ``stream``
    did not take: the stream is then stuck, as a client that stopped reading. Needs a
    big ``limits.client_buffer_bytes``, so it is not dropped as slow first. Its client id."""
    client_id: str = (await stream.connected()).json()["client_id"]  # type: ignore[index]
    payload = "x" * 60_000
    # Until the kernel's socket buffers are full, the hub's own buffer stays empty.
    for _ in range(400):
        await publish(hub, {"channel": channel, "data": payload})
        (client,) = (c for c in stats(hub)["clients"] if c["id"] == client_id)
        if client["buffered_bytes"] > 0:
            return client_id
    raise AssertionError("the stuck client's socket never filled up")


# -- streaming --------------------------------------------------------------------------


async def test_stream_answers_with_the_exact_sse_headers(hub_process: HubFactory) -> None:
    hub = hub_process()
    async with await RawStream.open(hub.port, "/events/demo") as stream:
        assert stream.status_line == "HTTP/1.1 200 OK"
        assert stream.header("Content-Type") == ["text/event-stream; charset=utf-8"]
        assert stream.header("Cache-Control") == ["no-cache, no-transform"]
        assert stream.header("X-Accel-Buffering") == ["no"]
        assert stream.header("Transfer-Encoding") == ["chunked"]
        assert stream.header("Content-Length") == []
        assert stream.header("Content-Encoding") == []


async def test_stream_opens_with_retry_and_the_connected_event(hub_process: HubFactory) -> None:
    hub = hub_process()
    async with await RawStream.open(hub.port, "/events/demo") as stream:
        event = await stream.connected()
        assert stream.parser.retries[:1] == [3000]
        assert event.id is None
        payload = event.json()
        assert isinstance(payload, dict)
        assert payload["channels"] == ["demo"]
        assert re.fullmatch(r"c_[A-Za-z0-9_-]+", payload["client_id"])
        assert payload["client_id"] in client_ids(hub)
        # Only comments may come before retry: (design.md, "Stream preamble").
        lines = b"".join(stream.chunks).split(b"\n")
        assert all(line.startswith(b":") or line == b"" for line in lines[: lines.index(b"retry: 3000")])


async def test_message_published_over_http_reaches_a_raw_subscriber(hub_process: HubFactory) -> None:
    hub = hub_process()
    async with await RawStream.open(hub.port, "/events?channel=a&channel=b") as stream:
        await stream.connected()
        receipt = await publish(hub, {"channel": "b", "event": "greet", "data": "one\ntwo \u2028 three"})
        event = await stream.next()
    assert (event.id, event.event, event.data) == (receipt["id"], "greet", "one\ntwo \u2028 three")
    # One message, one chunk: the frame and its chunk framing are encoded once.
    assert stream.chunks[-1] == f"id: {receipt['id']}\nevent: greet\ndata: one\ndata: two \u2028 three\n\n".encode()


async def test_example_config_serves_the_classic_alias_paths(hub_process: HubFactory) -> None:
    hub = hub_process(args=["--config", str(ROOT / "config.example.yaml")])
    async with (
        await RawStream.open(hub.port, "/api/stocks") as stocks,
        await RawStream.open(hub.port, "/api/news") as news,
    ):
        assert (await stocks.connected()).json()["channels"] == ["stocks"]  # type: ignore[index]
        assert (await news.connected()).json()["channels"] == ["news"]  # type: ignore[index]
        receipt = await publish(hub, {"channel": "stocks", "data": {"symbol": "AAPL"}})
        await publish(hub, {"channel": "news", "data": "headline"})
        assert ((await stocks.next()).id, (await news.next()).data) == (receipt["id"], "headline")


async def test_idle_streams_receive_heartbeat_comments(hub_process: HubFactory) -> None:
    hub = hub_process(env={"SSE_HUB_SSE__HEARTBEAT_SECONDS": "0.3"})
    async with await RawStream.open(hub.port, "/events/quiet") as stream:
        await stream.connected()
        async with asyncio.timeout(TIMEOUT):
            while len(stream.parser.comments) < 2:
                assert await stream.chunk() != b""
        assert stream.parser.events[1:] == []
        heartbeats = stream.chunks[1:]
        assert heartbeats and all(re.fullmatch(rb"(:[^\n]*\n)+\n", chunk) for chunk in heartbeats), heartbeats


async def test_idle_client_that_closes_its_socket_leaves_stats_within_a_heartbeat(hub_process: HubFactory) -> None:
    heartbeat_seconds = 0.3
    hub = hub_process(env={"SSE_HUB_SSE__HEARTBEAT_SECONDS": str(heartbeat_seconds)})
    async with (
        await RawStream.open(hub.port, "/events/idle") as leaving,
        await RawStream.open(hub.port, "/events/idle") as staying,
    ):
        leaving_id = (await leaving.connected()).json()["client_id"]  # type: ignore[index]
        staying_id = (await staying.connected()).json()["client_id"]  # type: ignore[index]
        assert client_ids(hub) == {leaving_id, staying_id}
        await leaving.close()
        await wait_until(lambda: client_ids(hub) == {staying_id}, timeout=heartbeat_seconds + 1)
        assert stats(hub)["channels"] == {"idle": 1}


async def test_a_client_that_never_finishes_its_request_headers_is_dropped(hub_process: HubFactory) -> None:
    hub = hub_process(env={"SSE_HUB_SERVER__REQUEST_HEADER_TIMEOUT": "1"})
    async with await RawStream.open(hub.port, "/events/live") as live:
        live_id = (await live.connected()).json()["client_id"]  # type: ignore[index]
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        try:
            writer.write(b"GET /events/slow HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: headers never end
            try:
                async with asyncio.timeout(1 + TIMEOUT):
                    received = await reader.read()
            except TimeoutError:
                pytest.fail(f"still connected after {1 + TIMEOUT}s: server.request_header_timeout is not enforced")
            assert received == b"", "the hub answered a request it never fully received"
        finally:
            writer.close()
        # The deadline is for request headers only: a stream older than it stays open.
        assert client_ids(hub) == {live_id}


# -- shutdown ---------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_ends_every_stream_with_a_retry_block_and_the_chunked_terminator(
    hub_process: HubFactory, signum: signal.Signals
) -> None:
    shutdown_timeout = 5
    hub = hub_process(env={"SSE_HUB_SERVER__SHUTDOWN_TIMEOUT": str(shutdown_timeout)})
    paths = ["/events/a", "/events?channel=a&channel=b", "/api/events"]
    streams = [await RawStream.open(hub.port, path) for path in paths]
    try:
        for stream in streams:
            await stream.connected()
        await publish(hub, {"channel": "a", "data": "before shutdown"})
        assert (await streams[0].next()).data == "before shutdown"
        assert (await streams[1].next()).data == "before shutdown"

        hub.process.send_signal(signum)
        endings = await asyncio.gather(*(stream.chunks_until_end(shutdown_timeout + 2) for stream in streams))
        for stream, chunks in zip(streams, endings, strict=True):
            assert chunks[-1] == b""
            match = re.fullmatch(rb"retry: (\d+)\n\n", chunks[-2])
            assert match is not None, chunks
            assert int(match[1]) > 0
            async with asyncio.timeout(TIMEOUT):
                assert await stream.reader.read() == b"", "nothing may follow the terminator"
    finally:
        for stream in streams:
            await stream.close()
    assert await asyncio.to_thread(hub.process.wait, shutdown_timeout + 2) == 0
    log = hub.log()
    assert "Traceback" not in log, log
    assert re.search(r"stopped published=1 delivered=2 ", log), log


async def test_from_sigterm_on_readyz_is_503_and_new_streams_are_refused_while_a_stream_holds_the_drain(
    hub_process: HubFactory,
) -> None:
    # A client that stopped reading holds the drain up to shutdown_timeout: long enough to
    # look at the draining instance; the test then ends the drain by closing that client.
    shutdown_timeout = 60
    hub = hub_process(
        env={
            "SSE_HUB_SERVER__SHUTDOWN_TIMEOUT": str(shutdown_timeout),
            "SSE_HUB_LIMITS__CLIENT_BUFFER_BYTES": str(64 * 1024 * 1024),
        }
    )
    assert readyz(hub) == (200, {"status": "ready"})
    async with await RawStream.open(hub.port, "/events/stuck") as stuck:
        stuck_id = await stall(hub, stuck, "stuck")
        hub.process.send_signal(signal.SIGTERM)
        await wait_until(lambda: readyz_status(hub) == 503, timeout=TIMEOUT)
        assert readyz(hub) == (503, {"status": "unavailable", "detail": "draining: shutting down"})
        async with await RawStream.open(hub.port, "/events/late") as late:
            assert late.status_line.startswith("HTTP/1.1 503 "), late.status_line
            assert late.header("Retry-After")
            assert late.header("Connection") == ["close"]
        # The refusals came while the stuck stream was still open (its last bytes unsent,
        # it has left the registry): that connection holds the drain.
        assert stuck_id not in client_ids(hub)
        assert readyz(hub)[0] == 503
        assert hub.process.poll() is None
    # Its client gone, the drain ends well before shutdown_timeout would.
    assert await asyncio.to_thread(hub.process.wait, shutdown_timeout) == 0
    assert "Traceback" not in hub.log(), hub.log()


async def test_signal_stops_an_idle_hub_with_exit_code_zero(hub_process: HubFactory) -> None:
    hub = hub_process(env={"SSE_HUB_SERVER__SHUTDOWN_TIMEOUT": "5"})
    assert await asyncio.to_thread(hub.stop, signal.SIGTERM, 7) == 0
    assert "stopped published=0" in hub.log()


# -- command line -----------------------------------------------------------------------


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_sse_hub("serve", "--host", "127.0.0.1", "--port", str(free_port()), *args, env=env)


def test_several_workers_with_the_memory_broker_exit_2_asking_for_redis() -> None:
    result = serve("--workers", "2")
    assert result.returncode == 2
    assert "Redis broker" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_a_bad_setting_exits_2_naming_the_key() -> None:
    result = serve(env={"SSE_HUB_LIMITS__MAX_BATCH": "0"})
    assert result.returncode == 2
    assert "limits.max_batch" in result.stderr and "SSE_HUB_LIMITS__MAX_BATCH" in result.stderr


async def test_command_line_port_wins_over_the_environment(hub_process: HubFactory) -> None:
    env_port = free_port()
    hub = hub_process(env={"SSE_HUB_SERVER__PORT": str(env_port)})
    assert hub.port != env_port
    assert stats(hub)["total_clients"] == 0
    with pytest.raises(OSError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", env_port), TIMEOUT)
    assert await asyncio.to_thread(hub.stop) == 0


async def test_a_client_that_stopped_reading_does_not_hold_shutdown_past_the_timeout(hub_process: HubFactory) -> None:
    shutdown_timeout = 2
    hub = hub_process(
        env={
            "SSE_HUB_SERVER__SHUTDOWN_TIMEOUT": str(shutdown_timeout),
            # Big enough that the stuck client is not dropped as slow before the signal.
            "SSE_HUB_LIMITS__CLIENT_BUFFER_BYTES": str(64 * 1024 * 1024),
        }
    )
    async with await RawStream.open(hub.port, "/events/stuck") as stuck:
        await stall(hub, stuck, "stuck")
        hub.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(hub.process.wait, shutdown_timeout + 3) == 0
    assert "Traceback" not in hub.log(), hub.log()
