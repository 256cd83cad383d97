"""Admin commands on our Redis nodes, sent to each node's own port (never through a proxy):
creating the sharded cluster, reading roles and pairs, waiting for a failover or a
replica in sync. Every command has a 2 s timeout and every wait a deadline; a node that
is down or paused answers None.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.faults.processes import RedisNode

POLL_SECONDS = 0.1


async def command(node: RedisNode, *args: str) -> object:
    """One command on the node; None when it is down, paused or fails."""
    if not node.running or node.paused:
        return None
    client = Redis(host="127.0.0.1", port=node.port, socket_timeout=2, socket_connect_timeout=2)
    try:
        return await client.execute_command(*args)
    except (RedisError, OSError):
        return None
    finally:
        await client.aclose()


async def role(node: RedisNode) -> bytes | None:
    """``b"master"``, ``b"slave"``, or None."""
    reply = await command(node, "ROLE")
    return reply[0] if isinstance(reply, list) and reply and isinstance(reply[0], bytes) else None


async def in_sync(node: RedisNode) -> bool:
    """A replica whose link to its master is up."""
    info = await command(node, "INFO", "replication")  # redis-py parses INFO into a dict
    return isinstance(info, dict) and info.get("master_link_status") == "up"


async def wait_role(node: RedisNode, wanted: bytes, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await role(node) == wanted:
            return True
        await asyncio.sleep(POLL_SECONDS)
    return False


async def wait_in_sync(node: RedisNode, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await in_sync(node):
            return True
        await asyncio.sleep(POLL_SECONDS)
    return False


async def wait_cluster_ok(nodes: Sequence[RedisNode], timeout: float) -> bool:
    """Every node reports ``cluster_state:ok``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [await command(node, "CLUSTER", "INFO") for node in nodes]
        if all(isinstance(state, bytes | str) and "cluster_state:ok" in str(state) for state in states):
            return True
        await asyncio.sleep(POLL_SECONDS)
    return False


async def create_cluster(cli: str, nodes: Sequence[RedisNode], timeout: float) -> None:
    """``redis-cli --cluster create`` with one replica per master, then wait until ok."""
    addresses = [f"127.0.0.1:{node.port}" for node in nodes]
    process = await asyncio.create_subprocess_exec(
        cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"redis-cli --cluster create failed:\n{output.decode(errors='replace')}")
    if not await wait_cluster_ok(nodes, timeout):
        raise RuntimeError("the new cluster did not become ok")


async def read_pairs(nodes: Sequence[RedisNode], announced_ports: Sequence[int]) -> list[tuple[int, int]]:
    """(master, replica) node indexes of each shard, from ``CLUSTER NODES`` (which names
    nodes by their announced ports: ``announced_ports[i]`` is node i's)."""
    by_port = {port: index for index, port in enumerate(announced_ports)}
    reply = await command(nodes[0], "CLUSTER", "NODES")
    if not isinstance(reply, str | bytes):
        raise RuntimeError(f"CLUSTER NODES answered {reply!r}")
    text = reply.decode() if isinstance(reply, bytes) else reply
    ids: dict[str, int] = {}
    replicas: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split()
        ids[fields[0]] = by_port[int(fields[1].split("@")[0].rsplit(":", 1)[1])]
        if "slave" in fields[2]:
            replicas[fields[3]] = fields[0]
    return sorted((ids[master], ids[replica]) for master, replica in replicas.items())


async def roles(nodes: Sequence[RedisNode], pair: tuple[int, int]) -> tuple[int | None, int | None]:
    """Which node of a shard's pair is master now, and which replica (None when unknown)."""
    master = replica = None
    for index in pair:
        current = await role(nodes[index])
        if current == b"master":
            master = index
        elif current == b"slave":
            replica = index
    return master, replica
