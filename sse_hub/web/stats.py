"""The ``/stats`` document: the instance summary, counters and the per-client list.

Each part is built as the ``schemas`` TypedDict it is declared as (``Stats``,
``ClientInfo``, ``InstanceSummary``, ``ClusterTotals``), so the served document and its
OpenAPI schema are one fact. The client list is bounded (``MAX_LISTED_CLIENTS``) since it
is built in one synchronous step; it is in client id order, so ``after`` (a client id) pages
past the bound (``page_of``: one pass, O(n log limit)), the same order as presence pages
(``routes/presence.py``).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import UTC, datetime

from sse_hub.core.hub import Hub
from sse_hub.core.registry import Registry
from sse_hub.core.subscriber import Subscriber
from sse_hub.messages.contract import Summary
from sse_hub.web.openapi.schemas import ClientInfo, ClusterTotals, InstanceSummary, Stats

# Clients listed in one /stats answer at most (``?limit=`` may ask for fewer): the list is
# built in one synchronous step, so it must stay short at 10,000+ connections;
# ``total_clients`` still counts every one.
MAX_LISTED_CLIENTS = 1000


def iso(timestamp: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-11-23T17:38:48.123Z``."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def instance_summary(instance_id: str, started_at: float, registry: Registry) -> InstanceSummary:
    """What this instance tells the cluster about itself (also the head of ``/stats``)."""
    return {
        "instance": instance_id,
        "started_at": iso(started_at),
        "total_clients": len(registry),
        "channels": registry.channel_counts(),
    }


def describe(instance_id: str, started_at: float, registry: Registry) -> Summary:
    """``instance_summary`` as the client directory takes it (a plain dict)."""
    return dict(instance_summary(instance_id, started_at, registry))


def hub_summary(hub: Hub) -> InstanceSummary:
    return instance_summary(hub.instance_id, hub.started_at, hub.registry)


def client_entry(subscriber: Subscriber) -> ClientInfo:
    return {
        "id": subscriber.client_id,
        "ip": subscriber.ip,
        "channels": list(subscriber.channels),
        "connected_at": iso(subscriber.connected_at),
        "last_activity": iso(subscriber.last_activity),
        "messages_sent": subscriber.messages_sent,
        "bytes_sent": subscriber.bytes_sent,
        "buffered_bytes": subscriber.buffered_bytes,
        "user_agent": subscriber.user_agent,
    }


def page_of(subscribers: Iterable[Subscriber], after: str | None, limit: int) -> tuple[list[Subscriber], str | None]:
    """At most ``limit`` of ``subscribers`` in client id order, those after ``after``, and the
    client id to pass as ``after`` for the next page (None: no more)."""
    if limit <= 0:
        return [], None
    later = (s for s in subscribers if after is None or s.client_id > after)
    page = heapq.nsmallest(limit + 1, later, key=lambda subscriber: subscriber.client_id)
    if len(page) > limit:
        return page[:limit], page[limit - 1].client_id
    return page, None


def local_stats(hub: Hub, client_limit: int | None, channel: str | None = None, after: str | None = None) -> Stats:
    """``channel``: list only that channel's clients; ``after``: the page after that client id."""
    counters = hub.counters
    limit = MAX_LISTED_CLIENTS if client_limit is None else min(client_limit, MAX_LISTED_CLIENTS)
    registry = hub.registry
    clients, next_after = page_of(registry.all() if channel is None else registry.on_channel(channel), after, limit)
    summary = hub_summary(hub)
    stats: Stats = {
        "instance": summary["instance"],
        "started_at": summary["started_at"],
        "total_clients": summary["total_clients"],
        "channels": summary["channels"],
        "messages_published": counters.messages_published,
        "messages_delivered": counters.messages_delivered,
        "slow_disconnects": counters.slow_disconnects,
        "clients": [client_entry(subscriber) for subscriber in clients],
    }
    if next_after is not None or channel is not None or after is not None:
        stats["next"] = next_after
    return stats


def cluster_totals(instances: list[InstanceSummary]) -> ClusterTotals:
    channels: dict[str, int] = {}
    total = 0
    for summary in instances:
        total += summary["total_clients"]
        for channel, count in summary["channels"].items():
            channels[channel] = channels.get(channel, 0) + count
    return {"instances": len(instances), "total_clients": total, "channels": dict(sorted(channels.items()))}
