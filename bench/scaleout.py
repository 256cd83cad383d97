"""Scale-out scenario (issue 12): N sse-hub instances on one Redis, CPU per delivered message.

    .venv/bin/python bench/scaleout.py --instances 1 2 4 --channels 1000 --messages 100000
    .venv/bin/python bench/scaleout.py --shape idle-b --messages 100000   # the issue's A/B case
    .venv/bin/python bench/scaleout.py --smoke                            # tiny, checks the script
    .venv/bin/python bench/scaleout.py --out bench/results/scaleout.jsonl # also keep the lines (bench/plots.py)

Shapes (one JSON line per point on stdout):

- ``many``: ``--channels`` channels, one stream each, channel i held on instance i mod N
  (what channel-affine load balancing gives); the publisher posts ``--messages`` messages
  in batches of ``--batch`` to random channels, through every instance in turn. With
  routing by interest the CPU per delivered message stays flat as N grows.
- ``broadcast``: one channel with ``--subscribers`` streams spread over every instance;
  every instance necessarily receives every message.
- ``idle-b``: two instances; B holds one stream on a channel nobody publishes to, A gets
  every message for ``--channels`` other channels. Reports B's CPU as a fraction of A's
  (issue target: <= 0.05).

Measured per point: each instance's CPU seconds (utime+stime from /proc), its deliveries
(``messages_delivered`` in /stats) and received payloads (``/metrics``
``sse_hub_broker_messages_received_total``, when exported); Redis's CPU and output bytes
(INFO) per published message; the publishing window's deliveries/s (all instances), the
machine's busy % in the second before the point (``bg_busy_pct``) and its start ``time``
(UTC). Do not run it on a shared machine and compare numbers
from different runs: only ratios within one run mean anything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy_pct(seconds: float = 1.0) -> float:
    """Busy % of all cores over ``seconds`` (from /proc/stat), taken before a point starts."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return round(100 * (busy1 - busy0) / max(total1 - total0, 1), 1)


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def pinned(cpu: int) -> list[str]:
    """``taskset -c CPU`` when there is a second core to keep client and server apart."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu)]
    return []


def start_redis(folder: str, pin: Sequence[str] = ()) -> tuple[subprocess.Popen[bytes], str]:
    """A private redis-server on a free loopback port, without persistence, started with
    ``pin`` in front (``taskset -c N``) and returned once it listens, with its URL."""
    binary = shutil.which("redis-server") or sys.exit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    command = [*pin, binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen([*command, "--dir", folder], stdout=subprocess.DEVNULL)
    wait_port(port)
    return server, f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def processes(count: int, redis_url: str | None) -> Iterator[tuple[str, list[tuple[str, subprocess.Popen[bytes]]]]]:
    """A redis-server (unless ``redis_url``) and ``count`` hubs; all stopped at the end."""
    started: list[subprocess.Popen[bytes]] = []
    workdir = tempfile.mkdtemp(prefix="scaleout-")
    try:
        if redis_url is None:
            server, redis_url = start_redis(workdir)
            started.append(server)
        env = {
            **os.environ,
            "SSE_HUB_BROKER__BACKEND": "redis",
            "SSE_HUB_BROKER__REDIS_URL": redis_url,
            "SSE_HUB_BROKER__PREFIX": f"scaleout-{secrets.token_hex(4)}",
            "SSE_HUB_LOG__LEVEL": "warning",
            "SSE_HUB_LIMITS__MAX_CONNECTIONS_PER_IP": "100000",
            "SSE_HUB_LIMITS__MAX_CONNECTIONS": "100000",
        }
        hubs = []
        for _ in range(count):
            port = free_port()
            command = [sys.executable, "-m", "sse_hub", "serve", "--host", "127.0.0.1", "--port", str(port)]
            process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
            started.append(process)
            hubs.append((f"http://127.0.0.1:{port}", process))
            wait_port(port)
        yield redis_url, hubs
    finally:
        for process in reversed(started):  # hubs first, Redis last
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
            if process.poll() is None:
                process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


async def hold_stream(session: aiohttp.ClientSession, url: str, ready: asyncio.Event) -> None:
    """One subscriber that reads and discards everything until cancelled."""
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
        assert response.status == 200, response.status
        async for chunk in response.content.iter_any():
            if b"event: connected" in chunk:
                ready.set()


async def hub_figures(session: aiohttp.ClientSession, base: str) -> tuple[int, int | None]:
    async with session.get(f"{base}/stats?limit=0") as response:
        delivered = int((await response.json())["messages_delivered"])
    async with session.get(f"{base}/metrics") as response:
        found = re.search(r"^sse_hub_broker_messages_received_total(?:\{[^}]*\})? (\S+)$", await response.text(), re.M)
    return delivered, int(float(found.group(1))) if found else None


async def redis_figures(redis: Redis) -> tuple[float, int]:
    cpu = await redis.info("cpu")
    stats = await redis.info("stats")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), int(stats["total_net_output_bytes"])


async def run_point(args: argparse.Namespace, shape: str, count: int) -> dict[str, object]:
    bg_busy_pct, started = machine_busy_pct(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with processes(count, args.redis_url) as (redis_url, hubs):
        redis = Redis.from_url(redis_url)
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=60), connector=aiohttp.TCPConnector(limit=0)
        ) as session:
            streams, targets = plan(shape, count, args)
            holders = []
            for instance, channel in streams:
                ready = asyncio.Event()
                url = f"{hubs[instance][0]}/events/{channel}"
                holders.append(asyncio.create_task(hold_stream(session, url, ready)))
                await asyncio.wait_for(ready.wait(), 10)
            before = [(cpu_seconds(p.pid), *await hub_figures(session, base)) for base, p in hubs]
            redis_before = await redis_figures(redis)
            window = time.monotonic()
            published = await publish_all(session, hubs, targets, args)
            window = time.monotonic() - window
            await asyncio.sleep(args.settle)  # let the last deliveries go out before reading CPU
            after = [(cpu_seconds(p.pid), *await hub_figures(session, base)) for base, p in hubs]
            redis_after = await redis_figures(redis)
            for task in holders:
                task.cancel()
            await asyncio.gather(*holders, return_exceptions=True)
        await redis.aclose()
    point = report(shape, count, published, before, after, redis_before, redis_after)
    delivered = sum(after[n][1] - before[n][1] for n in range(count))
    point.update(time=started, bg_busy_pct=bg_busy_pct, publish_s=round(window, 3))
    point["deliveries_per_s"] = round(delivered / window, 1) if window > 0 else None
    return point


def plan(shape: str, count: int, args: argparse.Namespace) -> tuple[list[tuple[int, str]], list[str]]:
    """Streams (instance, channel) and the channels messages go to."""
    if shape == "broadcast":
        return [(n % count, "all") for n in range(args.subscribers)], ["all"]
    if shape == "idle-b":
        return [(1, "quiet")], [f"busy-{n}" for n in range(args.channels)]
    channels = [f"ch-{n}" for n in range(args.channels)]
    return [(n % count, channel) for n, channel in enumerate(channels)], channels


async def publish_all(
    session: aiohttp.ClientSession,
    hubs: list[tuple[str, subprocess.Popen[bytes]]],
    targets: list[str],
    args: argparse.Namespace,
) -> int:
    sent = 0
    rng = random.Random(1)
    publishers = [hubs[0][0]] if len(hubs) == 2 and targets[0].startswith("busy") else [base for base, _ in hubs]
    while sent < args.messages:
        size = min(args.batch, args.messages - sent)
        body = [{"channel": rng.choice(targets), "data": "x" * args.data_bytes} for _ in range(size)]
        base = publishers[(sent // args.batch) % len(publishers)]
        async with session.post(f"{base}/broadcast", json=body) as response:
            assert response.status in (200, 202), await response.text()
        sent += size
    return sent


def report(
    shape: str,
    count: int,
    published: int,
    before: list[tuple[float, int, int | None]],
    after: list[tuple[float, int, int | None]],
    redis_before: tuple[float, int],
    redis_after: tuple[float, int],
) -> dict[str, object]:
    instances = []
    for (cpu0, delivered0, received0), (cpu1, delivered1, received1) in zip(before, after, strict=True):
        cpu, delivered = cpu1 - cpu0, delivered1 - delivered0
        instances.append(
            {
                "cpu_s": round(cpu, 3),
                "delivered": delivered,
                "received": None if received0 is None or received1 is None else received1 - received0,
                "cpu_us_per_delivery": round(1e6 * cpu / delivered, 1) if delivered else None,
            }
        )
    point: dict[str, object] = {
        "shape": shape,
        "instances": count,
        "published": published,
        "per_instance": instances,
        "redis_cpu_us_per_publish": round(1e6 * (redis_after[0] - redis_before[0]) / published, 2),
        "redis_out_bytes_per_publish": round((redis_after[1] - redis_before[1]) / published, 1),
    }
    if shape == "idle-b" and instances[0]["cpu_s"]:
        point["b_cpu_over_a"] = round(float(str(instances[1]["cpu_s"])) / float(str(instances[0]["cpu_s"])), 3)
    return point


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=["many", "broadcast", "idle-b"], nargs="+", default=["many", "broadcast"])
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=100, help="streams of the broadcast shape")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--data-bytes", type=int, default=100)
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of starting one")
    parser.add_argument("--out", type=Path, default=None, help="also append each point's JSON line to this file")
    parser.add_argument("--smoke", action="store_true", help="tiny numbers: checks that the script works")
    args = parser.parse_args()
    # SIGTERM (e.g. from timeout) unwinds like Ctrl-C, so the hubs and Redis are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.smoke:
        args.instances, args.channels, args.subscribers, args.messages, args.batch = [1, 2], 10, 4, 200, 20
        args.shape = ["many", "broadcast", "idle-b"]
    for shape in args.shape:
        for count in [2] if shape == "idle-b" else args.instances:
            emit(asyncio.run(run_point(args, shape, count)), args.out)


def emit(point: dict[str, object], out: Path | None) -> None:
    """Print a point's JSON line, and append it to ``out`` when given (bench/plots.py)."""
    line = json.dumps(point)
    print(line, flush=True)
    if out is not None:
        with out.open("a") as file:
            file.write(line + "\n")


if __name__ == "__main__":
    main()
