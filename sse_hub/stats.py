"""The ``/stats`` document: the instance summary, counters and the per-client list."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from sse_hub.hub import Hub
from sse_hub.subscriber import Subscriber

# Clients listed in one /stats answer at most (``?limit=`` may ask for fewer): the list is
# built in one synchronous step, so it must stay short at 10,000+ connections;
# ``total_clients`` still counts every one.
MAX_LISTED_CLIENTS = 1000


def iso(timestamp: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-11-23T17:38:48.123Z``."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def instance_summary(hub: Hub) -> dict[str, object]:
    """What this instance tells the cluster about itself (also the head of ``/stats``)."""
    return {
        "instance": hub.instance_id,
        "started_at": iso(hub.started_at),
        "total_clients": len(hub.registry),
        "channels": hub.registry.channel_counts(),
    }


def client_entry(subscriber: Subscriber) -> dict[str, object]:
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


def local_stats(hub: Hub, client_limit: int | None) -> dict[str, object]:
    counters = hub.counters
    limit = MAX_LISTED_CLIENTS if client_limit is None else min(client_limit, MAX_LISTED_CLIENTS)
    clients = itertools.islice(hub.registry.all(), limit)
    return {
        **instance_summary(hub),
        "messages_published": counters.messages_published,
        "messages_delivered": counters.messages_delivered,
        "slow_disconnects": counters.slow_disconnects,
        "clients": [client_entry(subscriber) for subscriber in clients],
    }


def cluster_totals(instances: list[dict[str, object]]) -> dict[str, object]:
    channels: dict[str, int] = {}
    total = 0
    for summary in instances:
        total += int(str(summary.get("total_clients", 0)))
        counts = summary.get("channels")
        if isinstance(counts, dict):
            for channel, count in counts.items():
                channels[channel] = channels.get(channel, 0) + int(count)
    return {"instances": len(instances), "total_clients": total, "channels": dict(sorted(channels.items()))}
