"""The Python Publisher's own batching against one request per message
(docs/performance.md, "The Python Publisher batches").

    .venv/bin/python bench/publisher_batching.py [--messages 20000] [--tasks 100] [--linger-ms 0]

Starts its own ``sse-hub serve`` (memory broker) on a free loopback port, with one
subscriber reading the channel, and publishes with ``sse_hub.client.Publisher`` from one
Python process:

- ``--tasks`` concurrent tasks, each awaiting its publishes in turn, ``--messages`` in all:
  batching (group commit, ``linger_ms=--linger-ms``) and ``max_batch=1`` (a request each);
- one task alone, awaiting each publish, ``--messages / 10`` of them, both ways: what the
  batching costs a publisher that has nobody to share a batch with.

Prints messages per second and each publish's latency (call to receipt, median and p99)
for every run, and the machine's load (as ``uptime`` says), which moves every number.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import aiohttp
from local_hub import local_hub, wait_healthy

from sse_hub.client import Publisher

CHANNEL = "bench"


async def read_everything(session: aiohttp.ClientSession, url: str, ready: asyncio.Event) -> None:
    async with session.get(f"{url}/events/{CHANNEL}", timeout=aiohttp.ClientTimeout(total=None)) as response:
        ready.set()
        while await response.content.readany():
            pass


async def publish_from_tasks(
    url: str, messages: int, tasks: int, linger_ms: float, max_batch: int
) -> tuple[float, list[float]]:
    """Seconds for ``messages`` publishes from ``tasks`` tasks, and each one's latency."""
    latencies: list[float] = []

    async def one_task(publisher: Publisher, count: int) -> None:
        for n in range(count):
            started = time.perf_counter()
            await publisher.publish(f"token {n}", channels=[CHANNEL])
            latencies.append(time.perf_counter() - started)

    async with Publisher(url, linger_ms=linger_ms, max_batch=max_batch) as publisher:
        started = time.perf_counter()
        await asyncio.gather(*(one_task(publisher, messages // tasks) for _ in range(tasks)))
        seconds = time.perf_counter() - started
    return seconds, latencies


def report(name: str, seconds: float, latencies: list[float]) -> None:
    ms = sorted(latency * 1000 for latency in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(
        f"{name:>28}: {len(ms) / seconds:>9,.0f} messages/s  "
        f"latency median {statistics.median(ms):.2f} ms, p99 {p99:.2f} ms"
    )


async def run(url: str, args: argparse.Namespace) -> None:
    async with aiohttp.ClientSession() as readers:
        await wait_healthy(url, readers)
        ready = asyncio.Event()
        reader = asyncio.create_task(read_everything(readers, url, ready))
        await ready.wait()
        load = " ".join(f"{value:.2f}" for value in os.getloadavg())
        print(f"{args.messages} messages from {args.tasks} tasks, linger {args.linger_ms} ms; load {load} (1/5/15 min)")
        batching, one_each = (args.linger_ms, 1000), (0, 1)
        runs = [
            (f"{args.tasks} tasks, batching", args.messages, args.tasks, batching),
            (f"{args.tasks} tasks, one request each", args.messages, args.tasks, one_each),
            ("1 task, batching", args.messages // 10, 1, batching),
            ("1 task, one request each", args.messages // 10, 1, one_each),
        ]
        for name, messages, tasks, options in runs:
            report(name, *await publish_from_tasks(url, messages, tasks, *options))
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--linger-ms", type=float, default=0)
    args = parser.parse_args()
    with local_hub() as url:
        asyncio.run(run(url, args))


if __name__ == "__main__":
    main()
