"""The fan-out latency histogram (sse_hub/web/metrics.py, ``LatencyHistogram``) is written
as prometheus_client's ``Histogram`` writes the same observations: same samples, same
buckets, also for a value exactly on a bound and one past the last."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from sse_hub.web.metrics import LATENCY_BUCKETS, LatencyHistogram

OBSERVED = [0.0, 0.0001, 0.0005, 0.00050001, 0.001, 0.003, 0.01, 0.5, 2.5, 2.6, 1000.0, 0.0005]


def exposition(registry: CollectorRegistry) -> list[str]:
    """The samples, without ``_created``, which is the time each was made."""
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def test_the_exposition_is_prometheus_clients() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    histogram = LatencyHistogram("latency_seconds", "How long.", LATENCY_BUCKETS)
    ours.register(histogram)
    reference = Histogram("latency_seconds", "How long.", buckets=LATENCY_BUCKETS, registry=theirs)
    for seconds in OBSERVED:
        histogram.observe(seconds)
        reference.observe(seconds)
    assert exposition(ours) == exposition(theirs)
    assert 'latency_seconds_bucket{le="0.0005"} 4.0' in exposition(ours)  # 0, 0.0001 and 0.0005 twice
    created = [
        line for line in generate_latest(ours).decode().splitlines() if line.startswith("latency_seconds_created")
    ]
    assert len(created) == 1
