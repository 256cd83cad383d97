"""What a publish costs in the broker alone, memory against Redis (docs/performance-log.md,
"Many channels (S5): what is left").

    .venv/bin/python bench/broker_cost.py [--messages N] [--rounds R]

No HTTP and no subscribers' sockets: 8 publishes in flight, each one message to one of
2,000 channels this instance holds, as S5 publishes. Prints, per message, the hub's CPU
(this process, on uvloop when installed) for the memory broker and the Redis broker, and
Redis's own CPU from ``INFO commandstats`` (the script, and the commands it calls). Starts
its own redis-server on a free loopback port, pinned to core 0 with taskset, and runs
itself on core 1 (on a machine with two cores or more). Each round publishes once to warm
up, then measures. About ten seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from scaleout import pinned, start_redis

from sse_hub.broker.memory import MemoryBroker
from sse_hub.broker.redis import RedisBroker
from sse_hub.config.settings import Settings
from sse_hub.messages.message import Draft, Message

CHANNELS = 2000
IN_FLIGHT = 8
PAYLOAD = '{"t":1,"seq":%d,"pad":"' + "x" * 70 + '"}'


async def drive(publish: Callable[[list[Draft]], Awaitable[list[Message]]], count: int) -> float:
    """Hub CPU seconds per message for ``count`` single-message publishes, 8 in flight."""
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(n: int) -> None:
        async with slots:
            await publish([Draft(event="message", data=PAYLOAD % n, channels=(f"bench{n * 7919 % CHANNELS}",))])

    started = time.process_time()
    await asyncio.gather(*(one(n) for n in range(count)))
    return (time.process_time() - started) / count


async def measure_memory(count: int) -> float:
    broker = MemoryBroker()
    await broker.start(lambda _: None)
    await drive(broker.publish, count)
    cost = await drive(broker.publish, count)
    await broker.stop()
    return cost


async def measure_redis(url: str, count: int) -> tuple[float, dict[str, float]]:
    settings = Settings.model_validate({"broker": {"backend": "redis", "redis_url": url, "prefix": "bench"}})
    broker = RedisBroker(settings, "bench")
    received: list[Message] = []
    await broker.start(received.append)
    await broker.attach([f"bench{n}" for n in range(CHANNELS)])
    await drive(broker.publish, count)
    admin = Redis.from_url(url)
    await admin.config_resetstat()
    cost = await drive(broker.publish, count)
    stats = await admin.info("commandstats")
    await admin.aclose()
    await broker.stop()
    if len(received) != 2 * count:
        raise SystemExit(f"delivered {len(received)} of {2 * count}")
    per_message = {name.removeprefix("cmdstat_"): entry["usec"] / count for name, entry in stats.items()}
    return cost, per_message


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory() as folder:
        server, url = start_redis(folder, pinned(0))
        try:
            for round_number in range(1, options.rounds + 1):
                memory = await measure_memory(options.messages)
                redis_cost, redis_side = await measure_redis(url, options.messages)
                script = redis_side.pop("evalsha", 0.0)
                called = sorted(((us, name) for name, us in redis_side.items() if us >= 0.05), reverse=True)
                print(
                    f"round {round_number}: hub CPU per message: memory {memory * 1e6:.1f} us,"
                    f" Redis {redis_cost * 1e6:.1f} us; Redis CPU per message: script {script:.1f} us"
                    f" (calling {', '.join(f'{name} {us:.2f}' for us, name in called)})"
                )
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
