"""``GET /metrics``: Prometheus text format with conventional names, values that move with
connects, publishes, deliveries, slow disconnects, kicks, replays and resets, a bounded
channel label set, the fan-out latency histogram and the admin token. The broker gauge
through a real Redis outage: tests/redis/test_metrics.py; the real process's own metrics:
tests/e2e/test_metrics.py."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sse_hub import __version__
from sse_hub.ops.worker_metrics import WorkerGroup, merge, render_group, serve_local
from sse_hub.web.metrics import MAX_CHANNEL_LABELS
from sse_hub.web.state import HUB, METRICS
from tests.support.http import (
    HubClientFactory,
    client_id_of,
    open_stream,
    publish,
    publish_until_dropped,
    stalled_subscriber,
)
from tests.support.metrics import Scrape, scrape
from tests.support.waiting import wait_until

HUB_FAMILIES = {
    "sse_hub_info": "gauge",
    "sse_hub_connections": "gauge",
    "sse_hub_max_connections": "gauge",
    "sse_hub_channel_connections": "gauge",
    "sse_hub_connects": "counter",
    "sse_hub_disconnects": "counter",
    "sse_hub_messages_published": "counter",
    "sse_hub_publish_errors": "counter",
    "sse_hub_messages_delivered": "counter",
    "sse_hub_slow_disconnects": "counter",
    "sse_hub_replays": "counter",
    "sse_hub_resets": "counter",
    "sse_hub_broker_connected": "gauge",
    "sse_hub_broker_reconnects": "counter",
    "sse_hub_broker_messages_received": "counter",
    "sse_hub_fanout_latency_seconds": "histogram",
}
# Prometheus naming: base units only (seconds, bytes), no scaled or non-base units.
NON_BASE_UNITS = re.compile(
    r"_(ms|millis|milliseconds|microseconds|minutes|hours|days|kb|kilobytes|mb|megabytes|percent)(_|$)"
)


# -- format and names ---------------------------------------------------------------------------


async def test_metrics_are_prometheus_text_with_conventional_names(client: TestClient[Any, Any]) -> None:
    metrics = await scrape(client)
    hub_families = {name: family for name, family in metrics.families.items() if name.startswith("sse_hub_")}
    assert {name: family.type for name, family in hub_families.items() if name in HUB_FAMILIES} == HUB_FAMILIES
    for name, family in hub_families.items():
        assert re.fullmatch(r"sse_hub_[a-z0-9_]+", name), name
        assert family.documentation, f"{name} has no HELP"
        assert not NON_BASE_UNITS.search(name), f"{name} is not in base units"
        sample_names = {sample.name for sample in family.samples}
        if family.type == "counter":
            assert sample_names <= {f"{name}_total"}, sample_names
        else:
            assert not any(sample.endswith("_total") for sample in sample_names), sample_names
        if family.type == "histogram":
            assert name.endswith(("_seconds", "_bytes")), name


async def test_a_fresh_hub_exports_zeros_and_every_disconnect_reason(client: TestClient[Any, Any]) -> None:
    metrics = await scrape(client)
    counters = ("connects", "messages_published", "publish_errors", "messages_delivered", "slow_disconnects")
    for name in (*counters, "replays", "resets"):
        assert metrics.value(f"sse_hub_{name}_total") == 0, name
    assert metrics.value("sse_hub_connections") == 0
    assert metrics.value("sse_hub_max_connections") == client.server.app[HUB].settings.limits.max_connections
    assert metrics.by_label("sse_hub_channel_connections", "channel") == {}
    # Present at 0 before the first disconnect, so rate() sees the first one.
    assert metrics.by_label("sse_hub_disconnects_total", "reason") == {
        "disconnected": 0,
        "kicked": 0,
        "shutdown": 0,
        "slow": 0,
        "token_expired": 0,
        "resync": 0,
        "finished": 0,
    }
    assert metrics.value("sse_hub_broker_connected") == 1
    assert metrics.value("sse_hub_broker_reconnects_total") == 0
    assert metrics.value("sse_hub_broker_messages_received_total") == 0
    assert metrics.value("sse_hub_fanout_latency_seconds_count") == 0
    instance = client.server.app[HUB].instance_id
    assert metrics.value("sse_hub_info", instance=instance, version=__version__, broker="memory") == 1


# -- values that move ---------------------------------------------------------------------------


async def test_connects_publishes_and_deliveries_move_the_metrics(client: TestClient[Any, Any]) -> None:
    hub = client.server.app[HUB]
    async with (
        open_stream(client, "/events/a") as a1,
        open_stream(client, "/events/a") as a2,
        open_stream(client, "/events/b") as b1,
    ):
        during = await scrape(client)
        assert during.value("sse_hub_connections") == 3
        assert during.value("sse_hub_connects_total") == 3
        assert during.by_label("sse_hub_channel_connections", "channel") == {"a": 2, "b": 1}

        await publish(client, [{"channel": "a", "data": n} for n in range(3)])  # one batch, three messages
        await publish(client, {"channel": "b", "data": "to b"})
        await publish(client, {"data": "to everyone"})
        for stream, count in ((a1, 4), (a2, 4), (b1, 2)):
            await stream.take(count)
        after = await scrape(client)
        assert after.value("sse_hub_messages_published_total") == 5
        # a: 3 messages x 2 subscribers, b: 1 x 1, global: 1 x 3
        assert after.value("sse_hub_messages_delivered_total") == 10

    await wait_until(lambda: len(hub.registry) == 0)
    closed = await scrape(client)
    assert closed.value("sse_hub_connections") == 0
    assert closed.by_label("sse_hub_channel_connections", "channel") == {}
    assert closed.value("sse_hub_disconnects_total", reason="disconnected") == 3
    assert closed.value("sse_hub_connects_total") == 3


async def test_a_client_that_stops_reading_counts_as_a_slow_disconnect(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"client_buffer_bytes": 65536})
    hub = client.server.app[HUB]
    payload = "s" * 32_000
    with stalled_subscriber(client, "/events/feed"):
        await wait_until(lambda: len(hub.registry) == 1)
        await publish_until_dropped(client, {"channel": "feed", "data": payload})
    metrics = await scrape(client)
    assert metrics.value("sse_hub_slow_disconnects_total") == 1
    assert metrics.value("sse_hub_disconnects_total", reason="slow") == 1
    assert metrics.value("sse_hub_disconnects_total", reason="disconnected") == 0
    assert metrics.value("sse_hub_connections") == 0


async def test_a_kicked_client_counts_as_a_disconnect_for_reason_kicked(client: TestClient[Any, Any]) -> None:
    hub = client.server.app[HUB]
    async with open_stream(client, "/events/a") as stream:
        response = await client.delete(f"/clients/{client_id_of(stream)}")
        assert response.status == 200, await response.text()
        await stream.read_until_closed()
    await wait_until(lambda: len(hub.registry) == 0)
    metrics = await scrape(client)
    assert metrics.by_label("sse_hub_disconnects_total", "reason") == {
        "disconnected": 0,
        "kicked": 1,
        "shutdown": 0,
        "slow": 0,
        "token_expired": 0,
        "resync": 0,
        "finished": 0,
    }
    assert metrics.value("sse_hub_slow_disconnects_total") == 0


@pytest.mark.parametrize(
    ("last_event_id", "reset_reason"),
    [
        (lambda ids: ids[2], None),  # everything after the third is retained: a plain replay
        (lambda ids: ids[0], "history_expired"),  # the second fell out of a history of 2
        (lambda ids: "not-a-number", "unknown_id"),
        (lambda ids: str(int(ids[-1]) + 95), "unknown_id"),  # newer than anything published
    ],
    ids=["retained", "evicted", "not-a-number", "from-the-future"],
)
async def test_replays_and_resets_are_counted(
    hub_client: HubClientFactory, last_event_id: Callable[[list[str]], str], reset_reason: str | None
) -> None:
    client = await hub_client(history={"size": 2})
    ids = [(await publish(client, {"channel": "a", "data": n}))["id"] for n in range(4)]
    async with open_stream(client, "/events/a"):
        pass
    assert (await scrape(client)).value("sse_hub_replays_total") == 0  # no Last-Event-ID, no replay

    async with open_stream(client, "/events/a", headers={"Last-Event-ID": last_event_id(ids)}) as stream:
        first = await stream.next()
    metrics = await scrape(client)
    assert metrics.value("sse_hub_replays_total") == 1
    assert metrics.value("sse_hub_resets_total") == (0 if reset_reason is None else 1)
    if reset_reason is None:
        assert (first.event, first.id) == ("message", ids[3])
    else:
        assert (first.event, json.loads(first.data)["reason"]) == ("reset", reset_reason)


async def test_fanout_latency_histogram_counts_every_dispatched_message(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/a") as stream:
        await publish(client, [{"channel": "nobody", "data": n} for n in range(10)])  # no subscriber: still dispatched
        for n in range(5):
            await publish(client, {"channel": "a", "data": n})
        await publish(client, {"data": "global"})
        await publish(client, {"client_id": client_id_of(stream), "data": "direct"})
        received = await stream.take(7)
        assert received[-1].data == "direct"  # in-memory fan-out is in order: all 17 were dispatched
        metrics = await scrape(client)

    count = metrics.value("sse_hub_fanout_latency_seconds_count")
    assert count == 17 == metrics.value("sse_hub_messages_published_total")
    buckets = sorted(
        (float(bound), value)
        for bound, value in metrics.by_label("sse_hub_fanout_latency_seconds_bucket", "le").items()
    )
    assert [value for _, value in buckets] == sorted(value for _, value in buckets)  # cumulative
    assert buckets[-1] == (float("inf"), count)
    assert metrics.value("sse_hub_fanout_latency_seconds_sum") >= 0


# -- the channel label set ----------------------------------------------------------------------


def channels_query(names: list[str]) -> str:
    return "/events?channels=" + ",".join(names)


async def test_every_channel_gets_its_own_label_up_to_the_limit(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_channels_per_connection": MAX_CHANNEL_LABELS})
    names = [f"ch{n:02d}" for n in range(MAX_CHANNEL_LABELS)]
    async with open_stream(client, channels_query(names)):
        by_channel = (await scrape(client)).by_label("sse_hub_channel_connections", "channel")
    assert by_channel == dict.fromkeys(names, 1)


async def test_channels_beyond_the_busiest_50_are_summed_under_other(hub_client: HubClientFactory) -> None:
    client = await hub_client()
    # 55 quiet channels, among them one really named _other; two busier ones.
    quiet = ["_other", *(f"ch{n:02d}" for n in range(54))]
    async with (
        open_stream(client, channels_query(quiet)),
        open_stream(client, channels_query(["busy", "ch53", "_other"])),
        open_stream(client, "/events/busy"),
    ):
        by_channel = (await scrape(client)).by_label("sse_hub_channel_connections", "channel")
    assert len(by_channel) == MAX_CHANNEL_LABELS + 1
    assert by_channel["busy"] == 2
    assert by_channel["ch53"] == 2  # busier than the others: labelled though last by name
    assert set(by_channel) == {"busy", "ch53", "_other", *(f"ch{n:02d}" for n in range(48))}
    # The rest: ch48..ch52 (1 each) and the real _other channel (2), which gets no second
    # sample of its own.
    assert by_channel["_other"] == 5 + 2
    assert sum(by_channel.values()) == len(quiet) + 3 + 1  # every subscription counted once


async def test_one_scrape_of_a_hub_with_1000_channels_works(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_channels_per_connection": 1000})
    names = [f"c{n:03d}" for n in range(1000)]
    busiest = names[-10:]
    async with open_stream(client, channels_query(names)), open_stream(client, channels_query(busiest)):
        metrics = await scrape(client)
    by_channel = metrics.by_label("sse_hub_channel_connections", "channel")
    assert len(by_channel) == MAX_CHANNEL_LABELS + 1
    assert {channel: by_channel[channel] for channel in busiest} == dict.fromkeys(busiest, 2)
    assert by_channel["_other"] == 1000 - MAX_CHANNEL_LABELS  # the other 950, one subscriber each
    assert sum(by_channel.values()) == 1010
    assert metrics.value("sse_hub_connections") == 2


# -- several workers, one scrape ------------------------------------------------------------------


async def test_merged_workers_sum_hub_series_and_label_per_process_ones(hub_client: HubClientFactory) -> None:
    """``--workers N`` (tests/e2e/test_workers.py runs it for real): two apps' expositions
    merged as the worker that answers /metrics merges its siblings'."""
    first, second = await hub_client(), await hub_client()
    async with (
        open_stream(first, "/events/a") as a1,
        open_stream(first, "/events/a"),
        open_stream(second, "/events/a") as a2,
    ):
        await publish(first, {"channel": "a", "data": "one"})
        await publish(second, {"channel": "a", "data": "two"})
        await a1.next_message()
        await a2.next_message()
        apps = [first.server.app, second.server.app]
        merged = Scrape(merge({index: app[METRICS].render() for index, app in enumerate(apps)}).decode())
    single = await scrape(first)
    for name, kind in HUB_FAMILIES.items():
        assert merged.families[name].type == kind == single.families[name].type, name
    assert merged.value("sse_hub_workers") == 2
    assert merged.value("sse_hub_connections") == 3
    assert merged.by_label("sse_hub_worker_connections", "worker") == {"0": 2, "1": 1}
    assert merged.by_label("sse_hub_channel_connections", "channel") == {"a": 3}
    assert merged.value("sse_hub_connects_total") == 3
    assert merged.value("sse_hub_messages_published_total") == 2
    assert merged.value("sse_hub_messages_delivered_total") == 3
    assert merged.value("sse_hub_fanout_latency_seconds_count") == 2
    assert merged.value("sse_hub_fanout_latency_seconds_bucket", le="+Inf") == 2
    info = merged.by_label("sse_hub_info", "worker")
    assert info == {"0": 1, "1": 1}
    assert set(merged.by_label("sse_hub_broker_connected", "worker")) == {"0", "1"}
    assert set(merged.by_label("process_resident_memory_bytes", "worker")) == {"0", "1"}
    created = [value for (name, _), value in merged.samples.items() if name == "sse_hub_fanout_latency_seconds_created"]
    singles = [Scrape(app[METRICS].render().decode()) for app in apps]
    assert created == [min(one.value("sse_hub_fanout_latency_seconds_created") for one in singles)]


async def test_a_worker_reads_its_siblings_over_their_sockets_and_leaves_out_a_silent_one(
    hub_client: HubClientFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = await hub_client(), await hub_client()
    groups = [WorkerGroup(tmp_path, index, workers=3) for index in range(3)]  # worker 2 never starts
    server = await serve_local(groups[1], second.server.app[METRICS].render)
    try:
        async with open_stream(second, "/events/b"):
            merged = Scrape((await render_group(groups[0], first.server.app[METRICS].render)).decode())
    finally:
        server.close()
        await server.wait_closed()
    assert merged.value("sse_hub_workers") == 2
    assert merged.by_label("sse_hub_worker_connections", "worker") == {"0": 0, "1": 1}
    assert merged.value("sse_hub_connections") == 1
    assert "worker 2 did not answer" in caplog.text


# -- access --------------------------------------------------------------------------------------


async def test_metrics_need_an_admin_token_when_admin_tokens_are_set(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth={"admin_tokens": ["admin-secret"], "publish_tokens": ["publish-secret"]})
    for authorization, status in [
        (None, 401),
        ("Bearer wrong", 403),
        ("Bearer publish-secret", 403),  # a publisher may not read operations data
        ("Basic YWRtaW46YWRtaW4=", 401),
    ]:
        headers = {"Authorization": authorization} if authorization else {}
        response = await client.get("/metrics", headers=headers)
        assert response.status == status, authorization
        assert set(await response.json()) == {"error", "detail"}
    response = await client.get("/metrics", headers={"Authorization": "Bearer admin-secret"})
    assert response.status == 200
    assert Scrape(await response.text()).value("sse_hub_connections") == 0
