"""The ``/stats`` document: the instance summary, counters and the per-client list.

Each part is built as the ``schemas`` TypedDict it is declared as (``Stats``,
``ClientInfo``, ``InstanceSummary``, ``ClusterTotals``), so the served document and its
OpenAPI schema are one fact. The client list is bounded (``MAX_LISTED_CLIENTS``) since it
is built in one synchronous step.
"""

from __future__ import annotations

import itertools
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


def local_stats(hub: Hub, client_limit: int | None) -> Stats:
    counters = hub.counters
    limit = MAX_LISTED_CLIENTS if client_limit is None else min(client_limit, MAX_LISTED_CLIENTS)
    clients = itertools.islice(hub.registry.all(), limit)
    return Stats(
        **hub_summary(hub),
        messages_published=counters.messages_published,
        messages_delivered=counters.messages_delivered,
        slow_disconnects=counters.slow_disconnects,
        clients=[client_entry(subscriber) for subscriber in clients],
    )


def cluster_totals(instances: list[InstanceSummary]) -> ClusterTotals:
    channels: dict[str, int] = {}
    total = 0
    for summary in instances:
        total += summary["total_clients"]
        for channel, count in summary["channels"].items():
            channels[channel] = channels.get(channel, 0) + count
    return {"instances": len(instances), "total_clients": total, "channels": dict(sorted(channels.items()))}
