"""The real ``sse-hub`` process's ``/metrics``: hub and process metrics in one scrape (the
metrics through the app: tests/app/test_metrics.py)."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from tests.support.http import (
    open_stream,
)
from tests.support.metrics import scrape
from tests.support.processes import HubProcess


async def test_the_real_hub_process_exports_hub_and_process_metrics(hub_process: Callable[..., HubProcess]) -> None:
    hub = hub_process()
    async with aiohttp.ClientSession() as session:
        async with open_stream(session, f"{hub.url}/events/news") as stream:
            response = await session.post(f"{hub.url}/broadcast", json={"channel": "news", "data": "hi"})
            assert response.status == 202
            await stream.next_message()
            metrics = await scrape(session, f"{hub.url}/metrics")
    assert metrics.value("sse_hub_connections") == 1
    assert metrics.value("sse_hub_messages_published_total") == 1
    assert metrics.value("sse_hub_messages_delivered_total") == 1
    assert metrics.value("sse_hub_fanout_latency_seconds_count") == 1
    assert metrics.value("process_resident_memory_bytes") > 0
    assert metrics.value("process_open_fds") > 0
    assert metrics.value("process_cpu_seconds_total") >= 0
    assert metrics.families["process_resident_memory_bytes"].type == "gauge"
