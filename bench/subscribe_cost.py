"""What a per-channel subscription costs (docs/scaling.md, "Per channel, not per partition").

    .venv/bin/python bench/subscribe_cost.py

Starts its own redis-server on a free loopback port, subscribes 1,000 / 10,000 / 100,000
channels on one connection and prints, per channel: the client-side time of SUBSCRIBE and
its confirmation, Redis's memory, and Redis's CPU per PUBLISH to a channel nobody holds
while those subscriptions exist. Then the share of partitions an instance serving k
channels would hold if subscriptions were per hashed partition instead. A few seconds.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def measure(client: redis.Redis, port: int, count: int) -> None:
    subscriber = redis.Redis(port=port).pubsub()
    memory = int(client.info("memory")["used_memory"])
    started = time.perf_counter()
    channels = [f"p:ch:chan-{n}" for n in range(count)]
    for start in range(0, count, 1000):
        subscriber.subscribe(*channels[start : start + 1000])
    confirmed = 0
    while confirmed < count:
        message = subscriber.get_message(timeout=1)
        if message and message["type"] == "subscribe":
            confirmed += 1
    elapsed = time.perf_counter() - started
    added = int(client.info("memory")["used_memory"]) - memory
    before = cpu(client)
    client.eval("for i = 1, 100000 do redis.call('PUBLISH', 'p:ch:nobody-' .. i, 'x') end", 0)
    publish_us = (cpu(client) - before) * 1e6 / 100_000
    print(
        f"{count:>7} channels: SUBSCRIBE {1e6 * elapsed / count:.1f} us/channel (client side),"
        f" Redis +{added / count:.0f} B/channel, PUBLISH to an unheld channel {publish_us:.2f} us"
    )
    subscriber.close()


def main() -> None:
    binary = shutil.which("redis-server") or sys.exit("redis-server is missing: apt-get install redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            for count in (1000, 10_000, 100_000):
                measure(client, port, count)
            client.close()
        finally:
            server.terminate()
            server.wait(timeout=10)
    print("partitions held by an instance serving k channels, 1 - (1 - 1/P)^k:")
    for partitions in (128, 1024, 4096):
        shares = ", ".join(f"k={k}: {100 * (1 - (1 - 1 / partitions) ** k):.1f}%" for k in (10, 100, 1000, 5000))
        print(f"  P={partitions}: {shares}")


if __name__ == "__main__":
    main()
