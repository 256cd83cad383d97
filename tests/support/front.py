"""The front path (sse_hub/web/front.py) under test: the app behind a ``FrontSite`` in this
process, as ``sse-hub serve`` runs it, so tests can read the front's counters; and raw
plain requests and answers."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from sse_hub.web.access_log import AccessLogger
from sse_hub.web.app import create_app
from sse_hub.web.connections import Connections
from sse_hub.web.front import FrontSite
from sse_hub.web.state import CONNECTIONS
from tests.support.processes import free_port
from tests.support.settings import make_settings

READ_TIMEOUT = 10.0
Start = Callable[..., Awaitable[int]]


# The ``Connections`` of each app a test started, by its port.
connections: dict[int, Connections] = {}


@pytest.fixture
async def front_hub() -> AsyncIterator[Start]:
    """``port = await front_hub(limits={...})``: the app behind a ``FrontSite``."""
    runners: list[web.AppRunner] = []

    async def start(**sections: Any) -> int:
        settings = make_settings(**sections)
        runner = web.AppRunner(
            create_app(settings),
            keepalive_timeout=settings.server.request_header_timeout,
            access_log=logging.getLogger("sse_hub.access"),
            access_log_class=AccessLogger,
        )
        await runner.setup()
        runners.append(runner)
        port = free_port()
        await FrontSite(runner, "127.0.0.1", port).start()
        connections[port] = runner.app[CONNECTIONS]
        return port

    yield start
    for ours in connections.values():
        ours.close_fronts()
    for runner in runners:
        await runner.cleanup()


def post(body: object, path: str = "/broadcast", *headers: str) -> bytes:
    data = json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join([*head, *headers]) + "\r\n\r\n").encode() + data


GOOD = "Authorization: Bearer good"
GET_STATS = b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n"


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], Any]:
    async with asyncio.timeout(READ_TIMEOUT):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in head[1:] if line)}
        body = await reader.readexactly(int(headers["content-length"]))
    return int(head[0].split()[1]), headers, json.loads(body)
