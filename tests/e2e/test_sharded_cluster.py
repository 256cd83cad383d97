"""``sse-hub serve --workers 2`` on a real Redis Cluster in sharded mode, configured by the
environment: channels spread over every master, per-channel positions, resumes (two hubs in
this process: tests/redis_cluster/test_sharded_cluster.py)."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from tests.support.http import broadcast, open_stream
from tests.support.processes import HubProcess
from tests.support.redis_cluster import Cluster
from tests.support.sharded import receipt_positions, spread_channels
from tests.support.sse_client import Event, EventStream
from tests.support.waiting import eventually


async def collect(stream: EventStream, count: int, timeout: float = 10) -> list[Event]:
    """The next ``count`` events, every one a message (no ``reset`` where none is owed)."""
    events = [await stream.next(timeout) for _ in range(count)]
    assert all(event.event == "message" for event in events), events
    return events


async def test_sse_hub_serve_runs_sharded_on_a_cluster_configured_by_environment(
    hub_process: Callable[..., HubProcess],
    redis_cluster: Cluster,
    prefix: str,
) -> None:
    env = {
        "SSE_HUB_BROKER__BACKEND": "redis-cluster",
        "SSE_HUB_BROKER__REDIS_URL": redis_cluster.url,
        "SSE_HUB_BROKER__PREFIX": prefix,
    }
    hub = hub_process(env=env, args=["--workers", "2"])
    channels = spread_channels(redis_cluster, prefix, 3, stem="proc")
    url = f"{hub.url}/events?channels={','.join(channels)}"
    async with aiohttp.ClientSession() as session:

        async def both_workers_ready() -> bool:
            async with (
                session.get(f"{hub.url}/stats?scope=cluster") as stats,
                session.get(f"{hub.url}/readyz") as ready,
            ):
                return stats.status == ready.status == 200 and len((await stats.json())["instances"]) == 2

        await eventually(both_workers_ready, timeout=15)
        async with open_stream(session, url) as stream:
            for channel in channels:
                receipt = await broadcast(session, hub.url, {"channel": channel, "data": f"first {channel}"})
                assert set(receipt_positions(receipt)) == {channel}, "sharded ids: a position, not one sequence"
            events = await collect(stream, len(channels))
            assert sorted(event.data for event in events) == sorted(f"first {channel}" for channel in channels)
        last_id = events[-1].id or ""
        for channel in channels:
            await broadcast(session, hub.url, {"channel": channel, "data": f"missed {channel}"})
        async with open_stream(session, url, headers={"Last-Event-ID": last_id}) as stream:
            resumed = await collect(stream, len(channels))
            assert sorted(event.data for event in resumed) == sorted(f"missed {channel}" for channel in channels)
    assert "broker=redis-cluster" in hub.log()
