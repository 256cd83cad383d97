"""The dashboard's stats frame: what ``GET /dashboard/stream`` sends every second.

A frame is this instance's counters (``stats.local_stats`` with no client list) and the
cluster's instances (``stats.cluster_totals`` over the client directory's summaries), cut
to what a chart needs: the busiest channels and one row per instance, each list bounded.
Rates (publishes, deliveries and slow disconnects per second) are differences of the
counters, taken by the page between frames.

Invariants: a frame is built at most once per ``FRAME_SECONDS`` whatever the number of
dashboards open (``DashboardFeed`` keeps the last one, encoded, and builds under a lock);
its size is bounded (``MAX_CHANNELS``, ``MAX_INSTANCES``), never the client list. A broker
that cannot answer makes a frame with ``broker: "unavailable"`` and this instance alone,
never an error that ends the stream.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import time
from collections.abc import Callable
from typing import Literal, cast

from typing_extensions import TypedDict

from sse_hub.core.hub import Hub
from sse_hub.errors import BrokerUnavailable
from sse_hub.messages import sse
from sse_hub.web.openapi.schemas import InstanceSummary
from sse_hub.web.stats import cluster_totals, hub_summary, iso, local_stats

FRAME_SECONDS = 1.0
# The busiest channels a frame lists, and the instances (a cluster has a handful; a
# frame stays a few kilobytes even if it had hundreds).
MAX_CHANNELS = 10
MAX_INSTANCES = 100


class ChannelLoad(TypedDict):
    channel: str
    subscribers: int


class InstanceRow(TypedDict):
    instance: str
    started_at: str
    total_clients: int
    channels: int


class Frame(TypedDict):
    """One ``event: stats`` of the dashboard stream (docs/api.md, Dashboard)."""

    at: str
    instance: str
    max_connections: int
    total_clients: int
    messages_published: int
    messages_delivered: int
    slow_disconnects: int
    disconnects: dict[str, int]
    broker: Literal["ok", "unavailable"]
    cluster_clients: int
    busiest_channels: list[ChannelLoad]
    instances: list[InstanceRow]


async def build_frame(hub: Hub) -> Frame:
    """This instance's counters and the cluster's rows, as of now."""
    local = local_stats(hub, 0)
    broker: Literal["ok", "unavailable"] = "ok"
    try:
        # The broker validates every summary it reads (broker.redis.scripts.InstanceSummary).
        summaries = cast("list[InstanceSummary] | None", await hub.directory.cluster_summaries())
    except BrokerUnavailable:
        summaries, broker = None, "unavailable"
    instances = summaries if summaries is not None else [hub_summary(hub)]
    totals = cluster_totals(instances)
    busiest = heapq.nlargest(MAX_CHANNELS, totals["channels"].items(), key=lambda item: (item[1], item[0]))
    return {
        "at": iso(time.time()),
        "instance": hub.instance_id,
        "max_connections": hub.settings.limits.max_connections,
        "total_clients": local["total_clients"],
        "messages_published": local["messages_published"],
        "messages_delivered": local["messages_delivered"],
        "slow_disconnects": local["slow_disconnects"],
        "disconnects": dict(hub.counters.disconnects),
        "broker": broker,
        "cluster_clients": totals["total_clients"],
        "busiest_channels": [{"channel": name, "subscribers": count} for name, count in busiest],
        "instances": [instance_row(summary) for summary in instances[:MAX_INSTANCES]],
    }


def instance_row(summary: InstanceSummary) -> InstanceRow:
    return {
        "instance": summary["instance"],
        "started_at": summary["started_at"],
        "total_clients": summary["total_clients"],
        "channels": len(summary["channels"]),
    }


def encode_frame(frame: Frame) -> bytes:
    """The frame as one SSE event, ``event: stats`` (compact JSON: one ``data:`` line)."""
    return sse.encode_event(json.dumps(frame, separators=(",", ":")), event="stats")


class DashboardFeed:
    """The latest frame, shared by every dashboard stream of one app: built again only when
    it is ``FRAME_SECONDS`` old, so N dashboards cost one frame a second, not N."""

    def __init__(self, hub: Hub, clock: Callable[[], float] = time.monotonic) -> None:
        self._hub = hub
        self._clock = clock
        self._encoded = b""
        self._built_at = float("-inf")
        self._lock = asyncio.Lock()  # one build at a time; the others then take its frame

    async def frame(self) -> bytes:
        """The latest frame's SSE bytes, built now if the last one is a period old."""
        async with self._lock:
            now = self._clock()
            # Slightly under a period, so streams ticking a second apart each get a new one.
            if now - self._built_at >= FRAME_SECONDS * 0.9:
                self._encoded = encode_frame(await build_frame(self._hub))
                self._built_at = now
            return self._encoded
