"""How ``POST /broadcast`` reads its body when the whole request arrives in one piece.

``read_json_body`` takes a body the parser already holds without arming its timer; these
tests send each request in one write, so that path is the one taken, and check it keeps
the limits of the timed path: the size bound (also for a chunked body, whose length is
known only once read) and the answer.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp.test_utils import TestClient

from tests.support.http import HubClientFactory

READ_TIMEOUT = 10.0


async def one_write(port: int, request: bytes) -> tuple[int, Any]:
    """Send ``request`` in a single write; the status and JSON body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(READ_TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
            body = await reader.readexactly(length)
    finally:
        writer.close()
    return int(lines[0].split()[1]), json.loads(body)


def chunked_post(body: bytes) -> bytes:
    head = (
        b"POST /broadcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    return head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


async def published(client: TestClient[Any, Any]) -> int:
    stats = await (await client.get("/stats")).json()
    return int(stats["messages_published"])


async def test_a_whole_chunked_body_over_the_limit_is_413(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_message_bytes": 1000})
    body = json.dumps({"channel": "news", "data": "x" * 2000}).encode()
    status, payload = await one_write(client.port, chunked_post(body))
    assert status == 413, payload
    assert payload["error"] == "payload_too_large", payload
    assert await published(client) == 0


async def test_a_whole_chunked_body_under_the_limit_is_published(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_message_bytes": 1000})
    body = json.dumps({"channel": "news", "data": "x" * 500}).encode()
    status, payload = await one_write(client.port, chunked_post(body))
    assert status == 202, payload
    assert payload["channels"] == ["news"]
    assert await published(client) == 1
