"""``sse-hub serve --workers 2`` on a real Redis Cluster in one-slot mode, configured by the
environment (two hubs in this process: tests/redis_cluster/test_redis_cluster.py)."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from tests.support.http import broadcast
from tests.support.processes import HubProcess
from tests.support.redis_cluster import Cluster
from tests.support.waiting import eventually


async def test_sse_hub_workers_run_on_a_cluster_configured_by_environment(
    hub_process: Callable[..., HubProcess],
    redis_cluster: Cluster,
    prefix: str,
) -> None:
    env = {
        "SSE_HUB_BROKER__BACKEND": "redis-cluster",
        "SSE_HUB_BROKER__CLUSTER_MODE": "one-slot",
        "SSE_HUB_BROKER__REDIS_URL": redis_cluster.url,
        "SSE_HUB_BROKER__PREFIX": prefix,
    }
    hub = hub_process(env=env, args=["--workers", "2"])
    async with aiohttp.ClientSession() as session:

        async def both_workers_announced() -> bool:
            async with session.get(f"{hub.url}/stats?scope=cluster") as response:
                return response.status == 200 and len((await response.json())["instances"]) == 2

        await eventually(both_workers_announced, timeout=15)
        async with session.get(f"{hub.url}/readyz") as response:
            assert response.status == 200
        receipt = await broadcast(session, hub.url, {"channel": "news", "data": "from a process"})
        assert int(receipt["id"]) >= 1
    assert "broker=redis-cluster" in hub.log()
