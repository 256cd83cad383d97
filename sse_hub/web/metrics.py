"""Prometheus metrics, read from the hub's own counters at scrape time.

Nothing is counted per delivery for Prometheus: the hub already keeps its counters (per
message, per connection), and this collector turns them into metric families when
``/metrics`` is scraped. Only the publish-to-fan-out latency histogram is observed on
the hot path, once per message. Each app has its own CollectorRegistry (no global state).
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from sse_hub import __version__
from sse_hub.core.hub import Hub
from sse_hub.core.streams import CLOSE_REASONS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Channels are user-chosen names: label only the busiest, so the series count stays bounded.
MAX_CHANNEL_LABELS = 50
# The label value for all other channels. It is also a valid channel name: a channel really
# called that is counted under it, so no two samples ever share a label set.
OTHER_CHANNELS = "_other"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class HubCollector(Collector):
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Metric]:
        hub = self._hub
        counters = hub.counters
        # Which instance answered: behind one address (--workers N on one port, a load
        # balancer) each scrape reaches one instance, and its counters are that instance's.
        info = GaugeMetricFamily(
            "sse_hub_info", "This hub instance (always 1).", labels=["instance", "version", "broker"]
        )
        info.add_metric([hub.instance_id, __version__, hub.settings.broker.backend], 1)
        yield info
        yield GaugeMetricFamily("sse_hub_connections", "Open SSE connections.", value=len(hub.registry))
        # The limit beside the count, so that an alert can divide one by the other; summed
        # over --workers N, as each worker enforces it on its own streams.
        yield GaugeMetricFamily(
            "sse_hub_max_connections", "limits.max_connections.", value=hub.settings.limits.max_connections
        )
        yield channel_connections(hub.registry.channel_counts())
        yield CounterMetricFamily("sse_hub_connects", "SSE connections accepted.", value=counters.connects)
        disconnects = CounterMetricFamily("sse_hub_disconnects", "SSE connections ended, by reason.", labels=["reason"])
        # Every close reason from the start, at 0: a series that appears only when it first
        # moves makes rate() and increase() miss that first step.
        by_reason = dict.fromkeys(CLOSE_REASONS, 0) | counters.disconnects
        for reason, count in sorted(by_reason.items()):
            disconnects.add_metric([reason], count)
        yield disconnects
        yield CounterMetricFamily(
            "sse_hub_messages_published", "Messages published through this instance.", value=counters.messages_published
        )
        yield CounterMetricFamily(
            "sse_hub_publish_errors",
            "Publishes refused because the broker was unavailable (503 broker_unavailable).",
            value=counters.publish_errors,
        )
        yield CounterMetricFamily(
            "sse_hub_messages_delivered", "Message deliveries handed to subscribers.", value=counters.messages_delivered
        )
        yield CounterMetricFamily(
            "sse_hub_slow_disconnects", "Subscribers disconnected for not reading.", value=counters.slow_disconnects
        )
        yield CounterMetricFamily("sse_hub_replays", "Streams that asked for a replay.", value=counters.replays)
        yield CounterMetricFamily("sse_hub_resets", "reset events sent.", value=counters.resets)
        broker = hub.broker
        yield GaugeMetricFamily(
            "sse_hub_broker_connected", "1 when the broker can publish.", value=1 if broker.connected else 0
        )
        yield CounterMetricFamily(
            "sse_hub_broker_reconnects", "Times the broker re-established its connection.", value=broker.reconnects
        )
        yield CounterMetricFamily(
            "sse_hub_broker_messages_received",
            "Messages this instance received from other instances through the broker.",
            value=broker.messages_received,
        )


def channel_connections(counts: dict[str, int]) -> GaugeMetricFamily:
    """Connections by channel: the ``MAX_CHANNEL_LABELS`` busiest channels each under its
    own name, the rest summed under ``OTHER_CHANNELS`` (only when there is a rest)."""
    family = GaugeMetricFamily(
        "sse_hub_channel_connections",
        f"Open SSE connections by channel (the {MAX_CHANNEL_LABELS} busiest; the rest as {OTHER_CHANNELS}).",
        labels=["channel"],
    )
    # Busiest first; ties keep the registry's name order, so the labelled set is stable.
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    named = [item for item in ranked if item[0] != OTHER_CHANNELS][:MAX_CHANNEL_LABELS]
    for channel, count in named:
        family.add_metric([channel], count)
    if len(named) < len(ranked):
        family.add_metric([OTHER_CHANNELS], sum(counts.values()) - sum(count for _, count in named))
    return family


class LatencyHistogram(Collector):
    """A histogram observed once per message, on the event loop's thread only: a count
    per bucket in a list, found by bisection, with no lock. At scrape it is the samples
    that prometheus_client's ``Histogram`` writes (``_bucket``, ``_count``, ``_sum``,
    ``_created``). That ``Histogram`` takes a lock for the bucket, the count and the sum
    on every observation: a fifth of a publish's time in the memory broker
    (docs/performance.md, "S6, the batched publish")."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = buckets
        self._labels = [floatToGoString(bound) for bound in (*buckets, math.inf)]  # type: ignore[no-untyped-call]
        self._counts = [0] * (len(buckets) + 1)  # the last one is +Inf's
        self._sum = 0.0
        self._created = time.time()

    def observe(self, seconds: float) -> None:
        self._counts[bisect_left(self._bounds, seconds)] += 1  # le: the first bound >= seconds
        self._sum += seconds

    def collect(self) -> Iterator[Metric]:
        name = self._name
        metric = Metric(name, self._documentation, "histogram")
        total = 0
        for label, count in zip(self._labels, self._counts, strict=True):
            total += count
            metric.add_sample(f"{name}_bucket", {"le": label}, total)
        metric.add_sample(f"{name}_count", {}, total)
        metric.add_sample(f"{name}_sum", {}, self._sum)
        metric.add_sample(f"{name}_created", {}, self._created)
        yield metric


# With ``--workers N``: renders the whole process group's metrics, given this process's
# (``sse_hub.ops.worker_metrics.render_group``, handed in by the server).
GroupScrape = Callable[[Callable[[], bytes]], Awaitable[bytes]]


class Metrics:
    """The registry behind ``/metrics`` for one app."""

    def __init__(self, group_scrape: GroupScrape | None = None) -> None:
        """The registry and the fan-out latency histogram, which the hub is built with;
        ``collect_from`` then adds the hub's own counters."""
        self._group_scrape = group_scrape
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.fanout_latency = LatencyHistogram(
            "sse_hub_fanout_latency_seconds",
            "Time from a publish request's arrival to the message's fan-out on this instance.",
            LATENCY_BUCKETS,
        )
        self.registry.register(self.fanout_latency)

    def collect_from(self, hub: Hub) -> None:
        """Read ``hub``'s counters at every scrape (once per app)."""
        self.registry.register(HubCollector(hub))

    def render(self) -> bytes:
        """This process's metrics."""
        return generate_latest(self.registry)

    async def scrape(self) -> bytes:
        """What ``/metrics`` answers: this process's metrics, or with ``--workers N`` the
        whole process group's (``GroupScrape``)."""
        if self._group_scrape is None:
            return self.render()
        return await self._group_scrape(self.render)
