"""The front protocol (sse_hub/web/front.py) in the real ``sse-hub`` process: the drain closes
an idle front connection, and the access line is written (the front in this process:
tests/app/test_front.py)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from tests.support.front import READ_TIMEOUT, post, read_answer
from tests.support.processes import HubProcess


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
