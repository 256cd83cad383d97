"""``sse-hub serve --workers N``: N real processes on one port (SO_REUSEPORT), each an
instance on the Redis broker, stopped together by one SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.support.http import broadcast, open_stream
from tests.support.processes import HubProcess
from tests.support.sse_client import EventStream
from tests.support.waiting import eventually, wait_until

STREAMS = 20  # the kernel hashes connections over the workers: all on one is a 2-in-a-million case
TIMEOUT = 10


def start_two_workers(hub_process: Callable[..., HubProcess], redis_server: str) -> HubProcess:
    return hub_process(
        args=["--workers", "2"],
        env={
            "SSE_HUB_BROKER__BACKEND": "redis",
            "SSE_HUB_BROKER__REDIS_URL": redis_server,
            "SSE_HUB_BROKER__PREFIX": f"workers-{secrets.token_hex(4)}",
        },
    )


async def open_on_both_workers(
    session: aiohttp.ClientSession, hub: HubProcess, streams: contextlib.AsyncExitStack
) -> list[EventStream]:
    """``STREAMS`` streams, once both workers are up and each holds some of them."""

    async def two_instances_report() -> bool:
        async with session.get(f"{hub.url}/stats?scope=cluster") as response:
            document: dict[str, Any] = await response.json()
        return bool(document["cluster"]["instances"] == 2)

    await eventually(two_instances_report, timeout=TIMEOUT)
    opened: list[EventStream] = [
        await streams.enter_async_context(open_stream(session, f"{hub.url}/events/w")) for _ in range(STREAMS)
    ]

    async def spread_over_both() -> bool:
        async with session.get(f"{hub.url}/stats?scope=cluster") as response:
            document: dict[str, Any] = await response.json()
        per_instance = [summary["total_clients"] for summary in document["instances"]]
        return sorted(per_instance) != [0, STREAMS] and sum(per_instance) == STREAMS

    await eventually(spread_over_both, timeout=TIMEOUT)
    return opened


async def test_two_workers_share_one_port_deliver_everywhere_and_stop_together(
    hub_process: Callable[..., HubProcess], redis_server: str
) -> None:
    hub = start_two_workers(hub_process, redis_server)
    async with aiohttp.ClientSession() as session, contextlib.AsyncExitStack() as streams:
        opened = await open_on_both_workers(session, hub, streams)
        receipt = await broadcast(session, hub.url, {"channel": "w", "data": "to all workers"})
        events = await asyncio.gather(*(stream.next_message(TIMEOUT) for stream in opened))
        assert {(event.id, event.data) for event in events} == {(receipt["id"], "to all workers")}

        exit_code = await asyncio.to_thread(hub.stop, signal.SIGTERM)
        assert exit_code == 0, hub.log()
        for stream in opened:
            tail = await stream.read_until_closed(TIMEOUT)
            assert "retry: " in tail


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    # A new connection each time, so the kernel may hand each scrape to either worker.
    async with session.get(f"{url}/metrics", headers={"Connection": "close"}) as response:
        assert response.status == 200, await response.text()
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def by_worker(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> dict[str, float]:
    return {dict(labels)["worker"]: value for (sample, labels), value in samples.items() if sample == name}


async def test_every_metrics_scrape_of_two_workers_shows_the_whole_group(
    hub_process: Callable[..., HubProcess], redis_server: str
) -> None:
    hub = start_two_workers(hub_process, redis_server)
    async with aiohttp.ClientSession() as session, contextlib.AsyncExitStack() as streams:
        await open_on_both_workers(session, hub, streams)
        receipt = await broadcast(session, hub.url, {"channel": "w", "data": "counted"})
        assert receipt["id"]
        # Each scrape lands on either worker (the kernel picks): every one must show both.
        for _ in range(8):
            samples = await scrape(session, hub.url)
            assert samples[("sse_hub_workers", frozenset())] == 2
            assert samples[("sse_hub_connections", frozenset())] == STREAMS
            assert samples[("sse_hub_channel_connections", frozenset({("channel", "w")}))] == STREAMS
            assert samples[("sse_hub_connects_total", frozenset())] >= STREAMS
            per_worker = by_worker(samples, "sse_hub_worker_connections")
            assert set(per_worker) == {"0", "1"} and all(per_worker.values()), per_worker
            assert sum(per_worker.values()) == STREAMS
            info = by_worker(samples, "sse_hub_info")
            assert set(info) == {"0", "1"}, info
            assert set(by_worker(samples, "process_resident_memory_bytes")) == {"0", "1"}
        assert samples[("sse_hub_messages_published_total", frozenset())] == 1
        assert samples[("sse_hub_messages_delivered_total", frozenset())] == STREAMS


def worker_pids(log: str) -> list[int]:
    found = re.search(r"supervisor started workers=\d+ pids=\[([\d, ]+)\]", log)
    assert found, log
    return [int(pid) for pid in found.group(1).split(",")]


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_workers_stop_when_their_supervisor_is_killed(
    hub_process: Callable[..., HubProcess], redis_server: str
) -> None:
    """SIGKILL cannot be forwarded: each worker notices its supervisor is gone and stops,
    instead of serving on as an orphan that holds the port."""
    hub = start_two_workers(hub_process, redis_server)
    async with aiohttp.ClientSession() as session:
        await eventually(lambda: readyz_ok(session, hub.url), timeout=TIMEOUT)
    pids = worker_pids(hub.log())
    assert all(map(running, pids))
    hub.process.kill()
    hub.process.wait(TIMEOUT)
    await wait_until(lambda: not any(map(running, pids)), timeout=TIMEOUT)


async def readyz_ok(session: aiohttp.ClientSession, url: str) -> bool:
    async with session.get(f"{url}/readyz") as response:
        return response.status == 200
