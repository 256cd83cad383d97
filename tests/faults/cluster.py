"""The deployment under test: three hubs, Redis (one node, or a sharded Redis Cluster of 3
masters with 1 replica each) and our proxies between them, with one method per fault.

Topology (all on 127.0.0.1)::

    clients -> client proxy i -> hub i -> link proxy i -> Redis          (broker "redis")
    clients -> client proxy i -> hub i -> node proxy n -> Redis node n   (broker "sharded")

On the cluster each node announces its proxy's port (``cluster-announce-port``), so every
hub (and the replication links) reach the nodes through them; a node proxy tells which
hub opened a connection (``processes.socket_owner``), so a link fault still strikes one
hub's links only. Cluster bus traffic goes direct (``cluster-announce-bus-port``).

Invariants: every fault method returns within its own duration plus bounded waits (each
``*_TIMEOUT_SECONDS``); faults on one Redis shard, or on one hub's process, are serialised
by a lock; ``heal`` ends every fault and waits, bounded, until everything serves again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp

from tests.faults import redis_admin
from tests.faults.checker import REPLICATION_WINDOW_SECONDS
from tests.faults.history import Record
from tests.faults.plan import HUBS
from tests.faults.processes import HubProcess, RedisNode, free_port, require_binary, socket_owner
from tests.faults.proxy import Proxy

NODE_TIMEOUT_MS = 1000
FAILOVER_TIMEOUT_SECONDS = 15.0
HUB_RESTART_TIMEOUT_SECONDS = 30.0
HEAL_TIMEOUT_SECONDS = 40.0
SHUTDOWN_SECONDS = 5
# How long the cluster's nodes may take to agree on which node replicates which.
PAIRS_TIMEOUT_SECONDS = 30


class Deployment:
    def __init__(self, broker: str, workdir: Path, record: Record) -> None:
        self.broker = broker
        self.workdir = workdir
        self.record = record
        self.nodes: list[RedisNode] = []
        self.node_proxies: list[Proxy] = []  # sharded: one per node; redis: one per hub
        self.client_proxies: list[Proxy] = []
        self.hubs: list[HubProcess] = []
        self.pairs: list[tuple[int, int]] = []  # sharded: the two nodes of each shard
        self._shard_locks = [asyncio.Lock() for _ in range(HUBS)]
        self._hub_locks = [asyncio.Lock() for _ in range(HUBS)]
        self._monitor: asyncio.Task[None] | None = None
        self._restarts: set[asyncio.Task[None]] = set()

    # -- start and stop -------------------------------------------------------------------

    async def start(self) -> None:
        server = require_binary("redis-server", "redis-server")
        if self.broker == "redis":
            self.nodes = [RedisNode(server, free_port(), self.workdir / "redis")]
            await self.nodes[0].start()
            urls = []
            for index in range(HUBS):
                proxy = Proxy(f"link{index}", self.nodes[0].port)
                await proxy.start()
                self.node_proxies.append(proxy)
                urls.append(f"redis://127.0.0.1:{proxy.port}/0")
        else:
            await self._start_cluster(server, require_binary("redis-cli", "redis-tools"))
            urls = [f"redis://127.0.0.1:{self.node_proxies[self.pairs[i][0]].port}/0" for i in range(HUBS)]
        for index in range(HUBS):
            port = free_port()
            proxy = Proxy(f"client{index}", port)
            await proxy.start()
            self.client_proxies.append(proxy)
            hub = HubProcess(f"hub{index}", port, self._hub_env(urls[index]), self.workdir / f"hub{index}.log")
            self.hubs.append(hub)
            await hub.start()
        self._monitor = asyncio.create_task(self._watch_hubs(), name="hub-monitor")

    def _hub_env(self, redis_url: str) -> dict[str, str]:
        env = {
            "SSE_HUB_BROKER__REDIS_URL": redis_url,
            "SSE_HUB_SSE__HEARTBEAT_SECONDS": "1",
            "SSE_HUB_SSE__RETRY_MS": "200",
            "SSE_HUB_SERVER__SHUTDOWN_TIMEOUT": str(SHUTDOWN_SECONDS),
            "SSE_HUB_LOG__LEVEL": "info",
        }
        if self.broker == "redis":
            env["SSE_HUB_BROKER__BACKEND"] = "redis"
        else:
            env["SSE_HUB_BROKER__BACKEND"] = "redis-cluster"
            env["SSE_HUB_BROKER__CLUSTER_MODE"] = "sharded"
        return env

    async def _start_cluster(self, server: str, cli: str) -> None:
        for index in range(HUBS * 2):
            port, bus = free_port(), free_port()
            proxy = Proxy(f"node{index}", port, self._identify_hub)
            await proxy.start()
            self.node_proxies.append(proxy)
            extra = ["--cluster-enabled", "yes", "--cluster-port", str(bus), "--cluster-config-file", "nodes.conf"]
            extra += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--cluster-announce-ip", "127.0.0.1"]
            extra += ["--cluster-announce-port", str(proxy.port), "--cluster-announce-bus-port", str(bus)]
            node = RedisNode(server, port, self.workdir / f"node{index}", extra)
            self.nodes.append(node)
            await node.start()
        await redis_admin.create_cluster(cli, self.nodes, timeout=60)
        # CLUSTER NODES on one node lists a replica once gossip has told it: wait for all.
        announced = [proxy.port for proxy in self.node_proxies]
        async with asyncio.timeout(PAIRS_TIMEOUT_SECONDS):
            while len(self.pairs) < len(self.nodes) // 2:
                self.pairs = await redis_admin.read_pairs(self.nodes, announced)
                if len(self.pairs) < len(self.nodes) // 2:
                    await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """SIGTERM every hub (each must exit 0 within its shutdown timeout), then the rest."""
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
        for task in list(self._restarts):
            task.cancel()
        await asyncio.gather(*self._restarts, return_exceptions=True)
        codes = await asyncio.gather(*(hub.terminate(SHUTDOWN_SECONDS + 5) for hub in self.hubs))
        for hub, code in zip(self.hubs, codes, strict=True):
            if code not in (0, None):
                self.record.unclean_stops.append(f"{hub.name} exited with {code} on SIGTERM: {hub.log_tail(8)}")
        for proxy in [*self.client_proxies, *self.node_proxies]:
            await proxy.stop()
        for node in self.nodes:
            node.kill()

    def client_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.client_proxies[index].port}"

    # -- hubs -----------------------------------------------------------------------------

    def _identify_hub(self, peer_port: int, listen_port: int) -> str | None:
        pids = {hub.pid: hub.name for hub in self.hubs if hub.pid is not None}
        return socket_owner(peer_port, listen_port, pids)

    async def _watch_hubs(self) -> None:
        """A hub that exits while it is meant to run has crashed: record it, start it again."""
        while True:
            await asyncio.sleep(0.2)
            for index, hub in enumerate(self.hubs):
                code = hub.exited_by_itself()
                if code is not None:
                    self.record.crashes.append(f"{hub.name} exited by itself with {code}:\n{hub.log_tail(20)}")
                    hub.expected_down = True
                    task = asyncio.create_task(self._restart_hub(index, 0.0))
                    self._restarts.add(task)
                    task.add_done_callback(self._restarts.discard)

    async def hub_kill(self, index: int, seconds: float) -> str:
        async with self._hub_locks[index]:
            self.hubs[index].kill()
            return await self._restart_hub(index, seconds)

    async def _restart_hub(self, index: int, seconds: float) -> str:
        """Start a hub again, retrying (bounded) while it refuses: a hub does not start
        while its broker is unreachable (exit 1, by design)."""
        await asyncio.sleep(seconds)
        hub = self.hubs[index]
        deadline = time.monotonic() + HUB_RESTART_TIMEOUT_SECONDS
        attempts = 0
        while True:
            attempts += 1
            try:
                await hub.start()
                return f"started again after {attempts} attempt(s)"
            except RuntimeError as exc:
                if time.monotonic() > deadline:
                    self.record.harness_errors.append(f"{hub.name} could not be started again: {exc}")
                    return "could not start again"
                await asyncio.sleep(0.5)

    # -- links (our proxies) ---------------------------------------------------------------

    def _links(self, index: int) -> list[tuple[Proxy, str | None]]:
        """Hub ``index``'s links to Redis: its own proxy, or its connections on every node proxy."""
        if self.broker == "redis":
            return [(self.node_proxies[index], None)]
        return [(proxy, self.hubs[index].name) for proxy in self.node_proxies]

    async def link_stall(self, index: int, seconds: float) -> str:
        for proxy, owner in self._links(index):
            proxy.stall(seconds, owner)
        await asyncio.sleep(seconds)
        return ""

    async def stalled_restart(self, index: int, seconds: float) -> str:
        """Stall one hub's link and, at the same moment, kill Redis; start it again empty
        while the stall lasts: that hub sees neither, the others reconnect at once
        (single Redis; the scenario of issue 24)."""
        ends = time.monotonic() + seconds
        async with self._shard_locks[0]:
            for proxy, owner in self._links(index):
                proxy.stall(seconds, owner)
            self.nodes[0].kill()
            self.nodes[0].wipe()
            await asyncio.sleep(min(1.0, seconds / 3))
            await self.nodes[0].start()
        await asyncio.sleep(max(0.0, ends - time.monotonic()))
        return "Redis restarted empty during the stall"

    async def link_cut(self, index: int, seconds: float) -> str:
        cut = 0
        for proxy, owner in self._links(index):
            cut += proxy.cut(owner)
            proxy.refuse(seconds, owner)
        await asyncio.sleep(seconds)
        return f"{cut} connection(s) cut"

    async def link_delay(self, index: int, seconds: float, latency: float) -> str:
        for proxy, owner in self._links(index):
            proxy.delay(latency, seconds, owner)
        await asyncio.sleep(seconds)
        return ""

    async def client_cut(self, index: int, seconds: float) -> str:
        proxy = self.client_proxies[index]
        cut = proxy.cut()
        proxy.refuse(seconds)
        await asyncio.sleep(seconds)
        return f"{cut} connection(s) cut"

    async def client_stall(self, index: int, seconds: float) -> str:
        self.client_proxies[index].stall(seconds)
        await asyncio.sleep(seconds)
        return ""

    # -- Redis ------------------------------------------------------------------------------

    def _shard_of(self, node: int) -> int:
        if self.broker == "redis":
            return 0
        return next(shard for shard, pair in enumerate(self.pairs) if node in pair)

    async def redis_pause(self, node: int, seconds: float) -> str:
        async with self._shard_locks[self._shard_of(node)]:
            was_master = self.broker == "sharded" and await redis_admin.role(self.nodes[node]) == b"master"
            began = time.monotonic()
            self.nodes[node].pause()
            try:
                await asyncio.sleep(seconds)
            finally:
                self.nodes[node].resume()
            if was_master and seconds * 1000 > NODE_TIMEOUT_MS:
                # Its replica may take over meanwhile; what it runs after SIGCONT is lost.
                window = REPLICATION_WINDOW_SECONDS
                self.record.replication_windows.append((began - window, time.monotonic() + window))
                return "a master, past the node timeout"
        return ""

    async def redis_kill(self, node: int, seconds: float, *, empty: bool) -> str:
        async with self._shard_locks[self._shard_of(node)]:
            self.nodes[node].kill()
            if empty:
                self.nodes[node].wipe()
            await asyncio.sleep(seconds)
            await self.nodes[node].start()
        return "empty" if empty else "with its AOF"

    async def replica_kill(self, shard: int, seconds: float) -> str:
        async with self._shard_locks[shard]:
            _master, replica = await redis_admin.roles(self.nodes, self.pairs[shard])
            if replica is None:
                return "skipped: no replica"
            self.nodes[replica].kill()
            await asyncio.sleep(seconds)
            await self.nodes[replica].start()
            return f"node{replica}"

    async def master_failover(self, shard: int) -> str:
        async with self._shard_locks[shard]:
            master, replica = await self._master_and_synced_replica(shard)
            if master is None or replica is None:
                return "skipped: the shard has no master with a replica in sync"
            await redis_admin.command(self.nodes[replica], "CLUSTER", "FAILOVER")
            ok = await redis_admin.wait_role(self.nodes[replica], b"master", FAILOVER_TIMEOUT_SECONDS)
            return f"node{replica} took over from node{master}" + ("" if ok else " (not within the timeout)")

    async def master_kill(self, shard: int, seconds: float) -> str:
        async with self._shard_locks[shard]:
            master, replica = await self._master_and_synced_replica(shard)
            if master is None or replica is None:
                return "skipped: the shard has no master with a replica in sync"
            killed = time.monotonic()
            self.record.replication_windows.append((killed - REPLICATION_WINDOW_SECONDS, killed))
            self.nodes[master].kill()
            started = time.monotonic()
            ok = await redis_admin.wait_role(self.nodes[replica], b"master", FAILOVER_TIMEOUT_SECONDS)
            waited = time.monotonic() - started
            await asyncio.sleep(seconds)
            await self.nodes[master].start()  # rejoins as a replica of the new master
            return f"node{master} killed; node{replica} took over in {waited:.1f}s" + ("" if ok else " (timed out)")

    async def _master_and_synced_replica(self, shard: int) -> tuple[int | None, int | None]:
        master, replica = await redis_admin.roles(self.nodes, self.pairs[shard])
        if replica is not None and not await redis_admin.in_sync(self.nodes[replica]):
            replica = None
        return master, replica

    # -- heal -------------------------------------------------------------------------------

    async def heal(self) -> list[str]:
        """End every fault; start what is down; wait (bounded) until every hub is ready."""
        problems = []
        for proxy in [*self.node_proxies, *self.client_proxies]:
            proxy.heal()
        for node in self.nodes:
            node.resume()
            if not node.running:
                await node.start()
        if self.broker == "sharded":
            if not await redis_admin.wait_cluster_ok(self.nodes, HEAL_TIMEOUT_SECONDS):
                problems.append("the cluster did not become ok")
            for shard, pair in enumerate(self.pairs):
                _master, replica = await redis_admin.roles(self.nodes, pair)
                synced = replica is not None and await redis_admin.wait_in_sync(
                    self.nodes[replica], FAILOVER_TIMEOUT_SECONDS
                )
                if not synced:
                    problems.append(f"shard {shard} has no replica in sync")
        for index, hub in enumerate(self.hubs):
            if hub.pid is None and not self._restarts:
                await self._restart_hub(index, 0.0)
        if not await self._wait_ready():
            problems.append("not every hub answered /readyz 200")
        return problems

    async def _wait_ready(self, timeout: float = HEAL_TIMEOUT_SECONDS) -> bool:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                statuses = []
                for hub in self.hubs:
                    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                        async with session.get(f"{hub.url}/readyz") as response:
                            statuses.append(response.status)
                if statuses == [200] * len(self.hubs):
                    return True
                await asyncio.sleep(0.1)
        return False
