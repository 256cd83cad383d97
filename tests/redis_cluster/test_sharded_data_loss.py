"""A master of the sharded Redis Cluster that comes back without its data (issue 24, bug 1,
on per-channel positions): the channel's counter starts again in a new epoch, so its positions
are never mistaken for old ones, and a stream that may have missed parts is told
(``reset``), never fed the new epoch as if nothing had happened."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.support.http import HubClientFactory, open_stream
from tests.support.redis_cluster import running_cluster
from tests.support.sharded import master_of

TIMEOUT = 5
RECOVERY_TIMEOUT = 20


async def publish_retrying(hub: TestClient[Any, Any], body: object, attempts: int = 500) -> dict[str, Any]:
    """Publish until accepted (503 while the master is down or being re-read)."""
    for _ in range(attempts):
        response = await hub.post("/broadcast", json=body)
        if response.status == 202:
            receipt: dict[str, Any] = await response.json()
            return receipt
        assert response.status == 503, await response.text()
        await asyncio.sleep(0.02)
    raise AssertionError("the hub never accepted the message again")


async def test_a_master_back_empty_ends_the_channels_streams_and_their_resume_gets_a_reset(
    tmp_path: Path, hub_client: HubClientFactory, prefix: str
) -> None:
    with running_cluster(tmp_path) as cluster:
        broker = {"backend": "redis-cluster", "cluster_mode": "sharded", "redis_url": cluster.url, "prefix": prefix}
        a = await hub_client(broker=broker)
        b = await hub_client(broker=broker)
        try:
            async with open_stream(a, "/events/busy") as stream:
                for n in range(3):
                    await publish_retrying(b, {"channel": "busy", "data": f"old {n}"})
                seen = await stream.take(3, TIMEOUT)
                assert [event.data for event in seen] == ["old 0", "old 1", "old 2"]
                last_seen = seen[-1].id or ""

                owner = cluster.node(master_of(cluster, prefix, "busy"))
                owner.kill()
                owner.restart()
                await publish_retrying(b, {"channel": "busy", "data": "new"})
                # The channel started again: parts published before the loss may never have
                # reached this instance, so the stream ends instead of going on.
                rest = await stream.read_until_closed(RECOVERY_TIMEOUT)
                assert "data: new" not in rest, rest

            async with open_stream(a, "/events/busy", headers={"Last-Event-ID": last_seen}) as resumed:
                reset = await resumed.next(TIMEOUT)
                assert (reset.event, json.loads(reset.data)["reason"]) == ("reset", "history_expired")
                event = await resumed.next(TIMEOUT)
                assert event.data == "new"
                assert event.id != last_seen
        finally:
            # The hubs go before their cluster does.
            await a.close()
            await b.close()
