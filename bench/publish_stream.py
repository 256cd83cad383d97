"""Publishing messages one by one: a publish stream against batches and single requests
(docs/performance.md, "Publish as a stream").

    .venv/bin/python bench/publish_stream.py [--messages 20000] [--batch 100] [--subscribers 1]

Starts its own ``sse-hub serve`` (memory broker) on a free loopback port and publishes
``--messages`` small messages to one channel three ways, one after the other, each from
one client connection:

- ``ndjson stream``: one ``POST /broadcast`` with ``Content-Type: application/x-ndjson``,
  a line per message, written as fast as the connection takes them;
- ``json batches``: ``POST /broadcast`` with arrays of ``--batch`` messages, in turn;
- ``one per request``: ``POST /broadcast`` of one message, each awaited before the next.

``--subscribers`` streams on the channel read everything, so fan-out is in the cost.
Prints messages per second for each way. Seconds, not minutes; the machine's load (as
``uptime`` says) is printed with it, since it moves every number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from local_hub import local_hub, wait_healthy

CHANNEL = "bench"


def item(n: int) -> dict[str, object]:
    return {"channel": CHANNEL, "data": f"token {n}"}


async def ndjson_stream(session: aiohttp.ClientSession, url: str, count: int, batch: int) -> None:
    async def lines() -> AsyncIterator[bytes]:
        for start in range(0, count, 256):
            yield b"".join(json.dumps(item(n)).encode() + b"\n" for n in range(start, min(start + 256, count)))

    headers = {"Content-Type": "application/x-ndjson"}
    async with session.post(f"{url}/broadcast", data=lines(), headers=headers) as response:
        summary = await response.json()
    assert response.status == 202 and summary["published"] == count, summary


async def json_batches(session: aiohttp.ClientSession, url: str, count: int, batch: int) -> None:
    for start in range(0, count, batch):
        body = [item(n) for n in range(start, min(start + batch, count))]
        async with session.post(f"{url}/broadcast", json=body) as response:
            assert response.status == 202, await response.text()
            await response.read()


async def one_per_request(session: aiohttp.ClientSession, url: str, count: int, batch: int) -> None:
    for n in range(count):
        async with session.post(f"{url}/broadcast", json=item(n)) as response:
            assert response.status == 202, await response.text()
            await response.read()


Way = Callable[[aiohttp.ClientSession, str, int, int], Awaitable[None]]
WAYS: list[tuple[str, Way]] = [
    ("ndjson stream", ndjson_stream),
    ("json batches", json_batches),
    ("one per request", one_per_request),
]


async def read_everything(session: aiohttp.ClientSession, url: str, ready: asyncio.Event) -> None:
    async with session.get(f"{url}/events/{CHANNEL}", timeout=aiohttp.ClientTimeout(total=None)) as response:
        ready.set()
        while await response.content.readany():
            pass


async def run(url: str, args: argparse.Namespace) -> None:
    async with aiohttp.ClientSession() as session, aiohttp.ClientSession() as readers:
        await wait_healthy(url, session)
        ready = [asyncio.Event() for _ in range(args.subscribers)]
        tasks = [asyncio.create_task(read_everything(readers, url, event)) for event in ready]
        await asyncio.gather(*(event.wait() for event in ready))
        print(f"{args.messages} messages, batches of {args.batch}, {args.subscribers} subscriber(s)")
        print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")
        for name, way in WAYS:
            started = time.perf_counter()
            await way(session, url, args.messages, args.batch)
            seconds = time.perf_counter() - started
            print(f"{name:>16}: {args.messages / seconds:>9,.0f} messages/s ({seconds:.2f}s)")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--subscribers", type=int, default=1)
    args = parser.parse_args()
    with local_hub() as url:
        asyncio.run(run(url, args))


if __name__ == "__main__":
    main()
