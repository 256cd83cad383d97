"""Hostile clients: connection floods, half-sent requests, oversized headers and URLs,
bodies over the limits. Each test attacks a limit and checks that the hub refuses with a
4xx/503 (JSON where the hub answers), never a 5xx, and keeps serving everyone else.

Raw sockets are used where a well-behaved client library would refuse to send the attack.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from sse_hub.web.state import HUB
from tests.conftest import HubClientFactory, HubProcess, open_stream, publish, wait_until
from tests.sse_client import Event, SseParser

HubFactory = Callable[..., HubProcess]
TIMEOUT = 5


# -- a raw HTTP/1.1 exchange ------------------------------------------------------------


@dataclass
class RawReply:
    """The status and headers of one raw exchange, then the body on demand; every read
    is bounded by ``TIMEOUT``."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int
    headers: dict[str, str]
    parser: SseParser = field(default_factory=SseParser)
    _decoder: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")())
    _events: list[Event] = field(default_factory=list)

    @property
    def is_stream(self) -> bool:
        return self.status == 200 and self.headers.get("content-type", "").startswith("text/event-stream")

    async def body(self) -> bytes:
        """The whole body of a response with a Content-Length (or one ended by close)."""
        async with asyncio.timeout(TIMEOUT):
            length = self.headers.get("content-length")
            if length is not None:
                return await self.reader.readexactly(int(length))
            return await self.reader.read()

    async def json(self) -> Any:
        return json.loads(await self.body())

    async def next_event(self) -> Event:
        """The next SSE event of a chunked stream (RFC 9112, 7.1)."""
        async with asyncio.timeout(TIMEOUT):
            while not self._events:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                data = await self.reader.readexactly(size + 2)
                if size == 0:
                    raise EOFError("the stream ended")
                self._events.extend(self.parser.feed(self._decoder.decode(data[:-2])))
        return self._events.pop(0)

    def close(self) -> None:
        self.writer.close()


async def raw_request(port: int, request: bytes) -> RawReply:
    """Send ``request`` as bytes to 127.0.0.1:``port`` and read the status and headers."""
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
        except BaseException:
            writer.close()
            raise
    status_line, *lines = head.decode("latin-1").removesuffix("\r\n\r\n").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return RawReply(reader, writer, int(status_line.split(" ")[1]), headers)


def get_request(target: bytes, *headers: bytes) -> bytes:
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1", *headers, b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def status_of(port: int, request: bytes) -> int:
    reply = await raw_request(port, request)
    reply.close()
    return reply.status


async def assert_still_serving(client: TestClient[Any, Any]) -> None:
    """The hub answers /healthz and delivers a published message to a new stream."""
    assert (await client.get("/healthz")).status == 200
    async with open_stream(client, "/events/still-serving") as stream:
        receipt = await publish(client, {"channel": "still-serving", "data": "ok"})
        event = await stream.next_message()
        assert (event.id, event.data) == (receipt["id"], "ok")


async def assert_json_error(response: aiohttp.ClientResponse | RawReply, expected: int) -> None:
    """``expected`` with a JSON error body; any other status fails at once (and a stream
    is never read to its end)."""
    if response.status != expected:
        response.close()
        raise AssertionError(f"expected {expected}, got {response.status}")
    payload = await response.json()
    assert set(payload) == {"error", "detail"}, payload


# -- connection caps --------------------------------------------------------------------


async def test_a_flood_of_streams_over_max_connections_gets_503_with_retry_after(
    hub_client: HubClientFactory,
) -> None:
    client = await hub_client(limits={"max_connections": 3})
    async with contextlib.AsyncExitStack() as held:
        for n in range(3):
            await held.enter_async_context(open_stream(client, f"/events/flood-{n}"))
        for _ in range(20):
            response = await client.get("/events/flood-x")
            await assert_json_error(response, 503)
            assert int(response.headers["Retry-After"]) >= 1
        assert len(client.server.app[HUB].registry) == 3
    await wait_until(lambda: len(client.server.app[HUB].registry) == 0)
    await assert_still_serving(client)


async def test_a_flood_from_one_address_over_max_connections_per_ip_gets_429(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_connections_per_ip": 2})
    async with open_stream(client, "/events/a"), open_stream(client, "/events/b"):
        for _ in range(20):
            response = await client.get("/events/c")
            await assert_json_error(response, 429)
        assert len(client.server.app[HUB].registry) == 2


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("channel=a&channel=b&channel=c", 200),
        ("channel=a&channel=b&channel=c&channel=d", 400),
        ("channels=a,b,c,d", 400),
        ("channel=a&channel=a&channel=b&channel=b&channel=c", 200),  # duplicates count once
        ("&".join(f"channel=c{n}" for n in range(500)), 400),
    ],
    ids=["at-limit", "over-limit", "comma-list-over-limit", "duplicates-count-once", "500-channels"],
)
async def test_max_channels_per_connection_bounds_one_stream(
    hub_client: HubClientFactory, query: str, expected: int
) -> None:
    client = await hub_client(limits={"max_channels_per_connection": 3})
    response = await client.get(f"/events?{query}")
    try:
        if expected == 400:
            await assert_json_error(response, 400)
        else:
            assert response.status == 200
    finally:
        response.close()
    await wait_until(lambda: len(client.server.app[HUB].registry) == 0)


# -- bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/broadcast", "/tickets"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_max_message_bytes_is_413(hub_client: HubClientFactory, path: str, chunked: bool) -> None:
    client = await hub_client(limits={"max_message_bytes": 1024})
    body = json.dumps({"channel": "big", "channels": ["big"], "data": "x" * 100_000}).encode()

    async def pieces() -> Any:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = await client.post(path, data=pieces() if chunked else body, headers={"Content-Type": "application/json"})
    await assert_json_error(response, 413)
    assert client.server.app[HUB].counters.messages_published == 0
    await assert_still_serving(client)


async def test_a_content_length_far_over_the_limit_is_413_before_any_byte_is_read(
    hub_client: HubClientFactory,
) -> None:
    client = await hub_client(limits={"max_message_bytes": 1024})
    reply = await raw_request(
        client.port,
        b"POST /broadcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 999999999999\r\nConnection: close\r\n\r\n",
    )
    try:
        await assert_json_error(reply, 413)
    finally:
        reply.close()


async def test_a_batch_over_max_batch_is_400_and_publishes_nothing(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_batch": 10})
    response = await client.post("/broadcast", json=[{"channel": "batch", "data": n} for n in range(11)])
    await assert_json_error(response, 400)
    assert client.server.app[HUB].counters.messages_published == 0
    assert len(await publish(client, [{"channel": "batch", "data": n} for n in range(10)])) == 10


# -- oversized requests -----------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        get_request(b"/events/" + b"a" * 100_000),
        get_request(b"/events/a?x=" + b"b" * 100_000),
        get_request(b"/events/a", b"X-Big: " + b"c" * 100_000),
        get_request(b"/events/a", b"Cookie: sse_hub_token=" + b"d" * 100_000),
        get_request(b"/events/a", b"Last-Event-ID: " + b"9" * 100_000),
        get_request(b"/events/a", *(b"X-H%d: v" % n for n in range(1000))),
        get_request(b"/events/a", b"X-Folded: a\r\n b"),
        b"POST /broadcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}",
    ],
    ids=[
        "100KB-path",
        "100KB-query",
        "100KB-header",
        "100KB-cookie",
        "100KB-last-event-id",
        "1000-headers",
        "obsolete-line-folding",
        "content-length-and-chunked",
    ],
)
async def test_oversized_or_malformed_requests_are_4xx_not_5xx(
    hub_client: HubClientFactory, request_bytes: bytes
) -> None:
    client = await hub_client()
    status = await status_of(client.port, request_bytes)
    assert 400 <= status < 500, status
    assert len(client.server.app[HUB].registry) == 0
    await assert_still_serving(client)


async def test_a_header_just_under_the_parser_limit_is_served(hub_client: HubClientFactory) -> None:
    client = await hub_client()
    reply = await raw_request(client.port, get_request(b"/events/a", b"X-Padding: " + b"p" * 8000))
    try:
        assert reply.is_stream, reply.status
        assert (await reply.next_event()).event == "connected"
    finally:
        reply.close()


async def test_many_query_parameters_are_a_stream_or_4xx(hub_client: HubClientFactory) -> None:
    client = await hub_client()
    repeated = "&".join(["channel=same"] * 600)  # just under the 8 KB request line
    reply = await raw_request(client.port, get_request(f"/events?{repeated}".encode()))
    try:
        assert reply.is_stream, reply.status
        connected = await reply.next_event()
        assert json.loads(connected.data)["channels"] == ["same"]
    finally:
        reply.close()
    noise = "&".join(f"p{n}={n}" for n in range(900))
    assert await status_of(client.port, get_request(f"/events/a?{noise}".encode()[:8000])) == 200
    distinct = "&".join(f"channel=c{n}" for n in range(600))
    assert await status_of(client.port, get_request(f"/events?{distinct}".encode())) == 400


# -- slow clients (slowloris) -----------------------------------------------------------


async def test_connections_that_never_finish_their_request_headers_are_dropped(hub_process: HubFactory) -> None:
    hub = hub_process(env={"SSE_HUB_SERVER__REQUEST_HEADER_TIMEOUT": "1"})
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{hub.url}/events/live", timeout=aiohttp.ClientTimeout(sock_read=30)) as live:
            assert live.status == 200
            partials = [
                b"",  # connects and says nothing
                b"G",
                b"GET /events/slow HT",
                b"GET /events/slow HTTP/1.1\r\n",
                b"GET /events/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaa",
                b"POST /broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n",
            ]
            connections = []
            for n in range(50):
                reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
                writer.write(partials[n % len(partials)])
                connections.append((reader, writer))

            async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
                try:
                    return await reader.read()
                except ConnectionResetError:
                    return b""

            try:
                async with asyncio.timeout(1 + TIMEOUT):
                    received = await asyncio.gather(*(closed_by_server(reader) for reader, _ in connections))
            except TimeoutError:
                pytest.fail("half-sent requests were not dropped: server.request_header_timeout is not enforced")
            finally:
                for _, writer in connections:
                    writer.close()
            assert received == [b""] * 50, "the hub answered a request it never fully received"

            # Everyone else is still served: the stream opened before, and new requests.
            async with session.post(f"{hub.url}/broadcast", json={"channel": "live", "data": "after"}) as response:
                assert response.status == 202
            async with asyncio.timeout(TIMEOUT):
                body = b""
                while b"data: after" not in body:
                    body += await live.content.readany()
        async with session.get(f"{hub.url}/healthz") as response:
            assert response.status == 200


async def test_a_body_that_never_arrives_is_answered_or_dropped(hub_process: HubFactory) -> None:
    """The headers arrive in time, the promised body never does: the hub must answer (408)
    or close within the request timeout, not hold the connection and a handler forever
    (else a flood of them exhausts file descriptors as surely as slowloris)."""
    hub = hub_process(env={"SSE_HUB_SERVER__REQUEST_HEADER_TIMEOUT": "1"})
    for path in (b"/broadcast", b"/tickets"):
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        try:
            writer.write(
                b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"data": '
            )
            received = b""
            try:
                async with asyncio.timeout(1 + TIMEOUT):
                    with contextlib.suppress(ConnectionResetError):
                        received = await reader.read(1024)  # an answer, or b"" when closed
            except TimeoutError:
                pytest.fail(f"POST {path.decode()} with a stalled body: no answer after {1 + TIMEOUT}s")
            assert received == b"" or received.startswith(b"HTTP/1.1 408"), received[:200]
        finally:
            writer.close()
    assert await status_of(hub.port, get_request(b"/healthz")) == 200


# -- logs -------------------------------------------------------------------------------


async def test_a_url_cannot_forge_a_log_line(hub_process: HubFactory) -> None:
    """Percent-encoded line breaks in a path or query stay encoded in every log line."""
    hub = hub_process(env={"SSE_HUB_LOG__LEVEL": "debug"})
    forged = b"%0D%0AFORGED-LINE%20level=ERROR"
    for target in (b"/events/bad" + forged, b"/events/ok?x=" + forged, b"/stats?limit=" + forged):
        status = await status_of(hub.port, get_request(target))
        assert status in (200, 400), (target, status)
    await stop_and_read_log(hub)
    lines = hub.log().splitlines()
    assert [line for line in lines if line.startswith("FORGED-LINE")] == []
    assert any("%0D%0AFORGED-LINE" in line for line in lines), "the access log shows the request, encoded"


async def stop_and_read_log(hub: HubProcess) -> None:
    """Stop the hub (SIGTERM) so every access line is flushed and written."""
    assert await asyncio.to_thread(hub.stop) == 0
