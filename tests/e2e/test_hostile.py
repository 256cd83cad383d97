"""Hostile clients against a real ``sse-hub`` process: connections that never finish their
request (slowloris), bodies that never arrive, and URLs that try to forge a log line (floods,
oversized requests and bodies through the app: tests/app/test_hostile.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import aiohttp
import pytest

from tests.support.processes import HubProcess
from tests.support.raw_http import get_request, status_of

HubFactory = Callable[..., HubProcess]


TIMEOUT = 5


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
