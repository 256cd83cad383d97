"""Redis Cluster scale-out (issue 16): the sharded broker on 1 and on 3 masters.

    .venv/bin/python bench/cluster_scale.py --masters 1 3 --out bench/results/cluster-scale.jsonl
    .venv/bin/python bench/cluster_scale.py --smoke        # tiny, checks the script

Per point: a Redis Cluster of ``--masters`` masters on loopback (``redis-server
--cluster-enabled yes`` each, the 16384 slots split evenly with ``CLUSTER ADDSLOTSRANGE``,
joined with ``CLUSTER MEET``, a config epoch each: ``redis-cli --cluster create`` refuses
fewer than 3), and
``--hubs`` sse-hub processes on it (``broker.backend: redis-cluster``, sharded). Every hub
holds one stream on each of ``--channels`` channels; a publisher posts ``--messages``
single-channel messages in batches of ``--batch`` to random channels, through the hubs in
turn. Reported (one JSON line per point): publishes/s over the publishing window, each
master's CPU seconds and CPU per publish (utime+stime from /proc), each hub's CPU and
deliveries, and the machine's busy % in the second before the point.

On this 2-core machine every master, hub and the publisher share the same cores, so 3
masters cannot publish faster than 1 here: what the point shows is how the work of one
Redis spreads over three (each master's share), not a throughput gain. Compare only
within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scaleout import ROOT, cpu_seconds, emit, free_port, hold_stream, hub_figures, machine_busy_pct, wait_port

SLOTS = 16384


def node_port() -> int:
    """A free port below 55000 (redis-server also needs port + 10000 unless told the bus port)."""
    while (port := free_port()) > 55_000:
        pass
    return port


@contextlib.contextmanager
def cluster(masters: int) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A ``masters``-node Redis Cluster, slots split evenly; stopped at the end."""
    binary = shutil.which("redis-server") or sys.exit("redis-server is not installed (apt-get install redis-server)")
    workdir = tempfile.mkdtemp(prefix="cluster-scale-")
    nodes: list[tuple[int, int, subprocess.Popen[bytes]]] = []  # port, bus port, process
    try:
        for n in range(masters):
            port, bus, directory = node_port(), node_port(), Path(workdir, str(n))
            directory.mkdir()
            command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes"]
            command += ["--cluster-port", str(bus)]
            command += ["--cluster-config-file", str(directory / "nodes.conf"), "--dir", str(directory), "--save", ""]
            nodes.append((port, bus, subprocess.Popen(command, stdout=subprocess.DEVNULL)))
            wait_port(port)
        clients = [redis.Redis(host="127.0.0.1", port=port) for port, _, _ in nodes]
        for n, client in enumerate(clients):
            client.execute_command("CLUSTER SET-CONFIG-EPOCH", n + 1)  # as redis-cli --cluster create does
            client.execute_command("CLUSTER ADDSLOTSRANGE", n * SLOTS // masters, (n + 1) * SLOTS // masters - 1)
            for port, bus, _ in nodes[:n]:
                client.execute_command("CLUSTER MEET", "127.0.0.1", port, bus)
        deadline = time.monotonic() + 20
        while not all(client.cluster("INFO")["cluster_state"] == "ok" for client in clients):
            if time.monotonic() > deadline:
                states = [client.cluster("INFO") for client in clients]
                raise RuntimeError(f"the cluster did not reach cluster_state:ok: {states}")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{nodes[0][0]}/0", [process for _, _, process in nodes]
    finally:
        for _, _, process in nodes:
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def hubs(count: int, url: str) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    env = {
        **os.environ,
        "SSE_HUB_BROKER__BACKEND": "redis-cluster",
        "SSE_HUB_BROKER__REDIS_URL": url,
        "SSE_HUB_BROKER__PREFIX": f"cscale-{secrets.token_hex(3)}",
        "SSE_HUB_LOG__LEVEL": "warning",
        "SSE_HUB_LIMITS__MAX_CONNECTIONS_PER_IP": "100000",
    }
    started = []
    try:
        for _ in range(count):
            port = free_port()
            command = [sys.executable, "-m", "sse_hub", "serve", "--host", "127.0.0.1", "--port", str(port)]
            process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
            started.append((f"http://127.0.0.1:{port}", process))
            wait_port(port)
        yield started
    finally:
        for _, process in started:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)


async def publish_all(session: aiohttp.ClientSession, bases: list[str], args: argparse.Namespace) -> int:
    rng, sent = random.Random(16), 0
    while sent < args.messages:
        size = min(args.batch, args.messages - sent)
        body = [{"channel": f"ch-{rng.randrange(args.channels)}", "data": "x" * 100} for _ in range(size)]
        async with session.post(f"{bases[(sent // args.batch) % len(bases)]}/broadcast", json=body) as response:
            assert response.status == 202, await response.text()
        sent += size
    return sent


async def run_point(args: argparse.Namespace, masters: int) -> dict[str, object]:
    bg_busy_pct, started = machine_busy_pct(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with cluster(masters) as (url, nodes), hubs(args.hubs, url) as running:
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
            holders = []
            for base, _ in running:
                for channel in range(args.channels):
                    ready = asyncio.Event()
                    holders.append(asyncio.create_task(hold_stream(session, f"{base}/events/ch-{channel}", ready)))
                    await asyncio.wait_for(ready.wait(), 10)
            redis_before = [cpu_seconds(node.pid) for node in nodes]
            hubs_before = [(cpu_seconds(p.pid), (await hub_figures(session, base))[0]) for base, p in running]
            window = time.monotonic()
            published = await publish_all(session, [base for base, _ in running], args)
            window = time.monotonic() - window
            await asyncio.sleep(args.settle)
            redis_after = [cpu_seconds(node.pid) for node in nodes]
            hubs_after = [(cpu_seconds(p.pid), (await hub_figures(session, base))[0]) for base, p in running]
            for task in holders:
                task.cancel()
            await asyncio.gather(*holders, return_exceptions=True)
    master_cpu = [round(after - before, 3) for before, after in zip(redis_before, redis_after, strict=True)]
    return {
        "masters": masters,
        "hubs": args.hubs,
        "channels": args.channels,
        "published": published,
        "publishes_per_s": round(published / window, 1),
        "master_cpu_s": master_cpu,
        "master_cpu_us_per_publish": [round(1e6 * cpu / published, 2) for cpu in master_cpu],
        "hub_cpu_s": [round(a[0] - b[0], 3) for b, a in zip(hubs_before, hubs_after, strict=True)],
        "hub_delivered": [a[1] - b[1] for b, a in zip(hubs_before, hubs_after, strict=True)],
        "time": started,
        "bg_busy_pct": bg_busy_pct,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--masters", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--hubs", type=int, default=2)
    parser.add_argument("--channels", type=int, default=300)
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=None, help="also append each point's JSON line to this file")
    parser.add_argument("--smoke", action="store_true", help="tiny numbers: checks that the script works")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.smoke:
        args.masters, args.channels, args.messages, args.batch = [1, 3], 10, 200, 20
    for masters in args.masters:
        emit(asyncio.run(run_point(args, masters)), args.out)


if __name__ == "__main__":
    main()
