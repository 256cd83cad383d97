"""The dashboard's frame on two instances sharing Redis: a row per live instance and the
cluster's clients; with Redis gone, ``broker: "unavailable"`` and this instance alone, the
frame still built (the stream goes on)."""

from __future__ import annotations

from typing import Any

from sse_hub.web.dashboard_frame import build_frame
from sse_hub.web.state import HUB
from tests.support.http import open_stream
from tests.support.plugin import HubsFactory
from tests.support.processes import RedisProcess
from tests.support.waiting import eventually

TIMEOUT = 15  # presence refreshes every 2 s


async def test_a_frame_has_a_row_per_instance_and_counts_the_clusters_clients(start_hubs: HubsFactory) -> None:
    a, b = await start_hubs("redis", 2)
    async with open_stream(b, "/events/news"), open_stream(b, "/events/news"), open_stream(a, "/events/sport"):

        async def both_rows_with_their_clients() -> bool:
            frame: Any = await build_frame(a.app[HUB])
            rows = {row["instance"]: row["total_clients"] for row in frame["instances"]}
            return rows == {a.app[HUB].instance_id: 1, b.app[HUB].instance_id: 2}

        await eventually(both_rows_with_their_clients, timeout=TIMEOUT)
        frame: Any = await build_frame(a.app[HUB])
    assert (frame["broker"], frame["cluster_clients"], frame["total_clients"]) == ("ok", 3, 1)
    assert frame["busiest_channels"][0] == {"channel": "news", "subscribers": 2}


async def test_with_redis_gone_a_frame_says_unavailable_and_shows_this_instance_alone(
    start_hubs: HubsFactory, own_redis: RedisProcess
) -> None:
    [hub] = await start_hubs("redis", 1, url=own_redis.url)
    own_redis.kill()
    frame: Any = await build_frame(hub.app[HUB])
    assert frame["broker"] == "unavailable"
    assert [row["instance"] for row in frame["instances"]] == [hub.app[HUB].instance_id]
