"""The front protocol (sse_hub/web/front.py) in the real ``sse-hub`` process: the drain closes
an idle front connection, and the access line is written (the front in this process:
tests/app/test_front.py)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from typing import Any

from tests.support.processes import HubProcess

READ_TIMEOUT = 10.0


def post(body: object, path: str = "/broadcast", *headers: str) -> bytes:
    data = json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join([*head, *headers]) + "\r\n\r\n").encode() + data


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], Any]:
    async with asyncio.timeout(READ_TIMEOUT):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in head[1:] if line)}
        body = await reader.readexactly(int(headers["content-length"]))
    return int(head[0].split()[1]), headers, json.loads(body)


async def test_the_drain_closes_an_idle_front_connection_and_the_access_line_is_written(
    hub_process: Callable[..., HubProcess],
) -> None:
    hub = hub_process()
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
    try:
        writer.write(post({"channel": "news", "data": "x"}))
        assert (await read_answer(reader))[0] == 202
        hub.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(READ_TIMEOUT):
            assert await reader.read() == b""
    finally:
        writer.close()
    assert await asyncio.to_thread(hub.stop) == 0
    assert "sse_hub.access: POST /broadcast 202 " in hub.log()  # the same line as aiohttp's
