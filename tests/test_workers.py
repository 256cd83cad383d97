"""``sse-hub serve --workers N``: N real processes on one port (SO_REUSEPORT), each an
instance on the Redis broker, stopped together by one SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.conftest import HubProcess, broadcast, eventually, open_stream
from tests.sse_client import EventStream

STREAMS = 20  # the kernel hashes connections over the workers: all on one is a 2-in-a-million case
TIMEOUT = 10


async def test_two_workers_share_one_port_deliver_everywhere_and_stop_together(
    hub_process: Callable[..., HubProcess], redis_server: str
) -> None:
    hub = hub_process(
        args=["--workers", "2"],
        env={
            "SSE_HUB_BROKER__BACKEND": "redis",
            "SSE_HUB_BROKER__REDIS_URL": redis_server,
            "SSE_HUB_BROKER__PREFIX": f"workers-{secrets.token_hex(4)}",
        },
    )
    async with aiohttp.ClientSession() as session, contextlib.AsyncExitStack() as streams:

        async def two_instances_report() -> bool:
            async with session.get(f"{hub.url}/stats?scope=cluster") as response:
                document: dict[str, Any] = await response.json()
            return bool(document["cluster"]["instances"] == 2)

        await eventually(two_instances_report, timeout=TIMEOUT)
        opened: list[EventStream] = [
            await streams.enter_async_context(open_stream(session, f"{hub.url}/events/w")) for _ in range(STREAMS)
        ]

        async def spread_over_both() -> bool:
            async with session.get(f"{hub.url}/stats?scope=cluster") as response:
                document: dict[str, Any] = await response.json()
            per_instance = [summary["total_clients"] for summary in document["instances"]]
            return sorted(per_instance) != [0, STREAMS] and sum(per_instance) == STREAMS

        await eventually(spread_over_both, timeout=TIMEOUT)
        receipt = await broadcast(session, hub.url, {"channel": "w", "data": "to all workers"})
        events = await asyncio.gather(*(stream.next_message(TIMEOUT) for stream in opened))
        assert {(event.id, event.data) for event in events} == {(receipt["id"], "to all workers")}

        exit_code = await asyncio.to_thread(hub.stop, signal.SIGTERM)
        assert exit_code == 0, hub.log()
        for stream in opened:
            tail = await stream.read_until_closed(TIMEOUT)
            assert "retry: " in tail
