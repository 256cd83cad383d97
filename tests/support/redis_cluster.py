"""A real Redis Cluster on loopback for tests: ``redis-server --cluster-enabled yes`` per
node and ``redis-cli --cluster create``; about 2 s for 3 masters.

The ``redis_cluster`` fixture (``tests/support/plugin.py``): 3 masters, no replicas,
shared by every test (tests use their own key prefix, hence their own slot).
``running_cluster(workdir, replicas=1)`` gives a test its own cluster when it kills nodes.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.processes import free_port, require_binary, wait_for_port

# A failed master is replaced after this long (the default, 15 s, would slow the tests).
NODE_TIMEOUT_MS = 1000


@dataclass
class ClusterNode:
    port: int
    process: subprocess.Popen[bytes]
    command: list[str] = field(default_factory=list)
    log: Path | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        """Start the killed node again: the same port and cluster identity (its nodes.conf),
        no data (the nodes keep none), as a master that crashed without persistence."""
        assert self.process.poll() is not None, "kill the node first"
        assert self.log is not None
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process)


@dataclass
class Cluster:
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def node(self, port: int) -> ClusterNode:
        return next(node for node in self.nodes if node.port == port)

    def owner_of(self, slot: int) -> ClusterNode:
        """The master serving ``slot``, as the first live node sees it."""
        for node in self.nodes:
            if node.process.poll() is None:
                for start, end, master, *_ in node.client().execute_command("CLUSTER SLOTS"):
                    if start <= slot <= end:
                        return self.node(int(master[1]))
        raise AssertionError(f"no master serves slot {slot}")

    def masters(self) -> list[ClusterNode]:
        return [self.node(port) for port in sorted(self._master_ports())]

    def _master_ports(self) -> set[int]:
        live = next(node for node in self.nodes if node.process.poll() is None)
        return {int(master[1]) for _start, _end, master, *_ in live.client().execute_command("CLUSTER SLOTS")}

    def move_slot(self, slot: int, target: ClusterNode) -> None:
        """Migrate ``slot`` with its keys to ``target`` (the steps ``redis-cli --cluster
        reshard`` takes), then tell every master."""
        source = self.owner_of(slot)
        target_id = target.client().execute_command("CLUSTER MYID").decode()
        source_id = source.client().execute_command("CLUSTER MYID").decode()
        target.client().execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        source.client().execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        while keys := source.client().execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            source.client().execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        for node in self.masters():
            node.client().execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


def start_cluster(workdir: Path, masters: int = 3, replicas: int = 0) -> Cluster:
    server = require_binary("redis-server", "redis-server")
    cli = require_binary("redis-cli", "redis-tools")
    cluster = Cluster()
    try:
        for _ in range(masters * (1 + replicas)):
            port = free_port()
            command = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            # The bus port is named: the default, port + 10000, may not exist for a high port.
            command += ["--cluster-enabled", "yes", "--cluster-port", str(free_port())]
            command += ["--cluster-config-file", f"nodes-{port}.conf"]
            command += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--dir", str(workdir)]
            log_path = workdir / f"redis-{port}.log"
            with log_path.open("wb") as log:  # the child keeps its own copy
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            cluster.nodes.append(ClusterNode(port, process, command, log_path))
            wait_for_port(port, process)
        addresses = [f"127.0.0.1:{node.port}" for node in cluster.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas), "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_until_ok(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def wait_until_ok(cluster: Cluster, timeout: float = 30) -> None:
    """Every live node reports ``cluster_state:ok`` (bounded poll: a separate process)."""
    deadline = time.monotonic() + timeout
    while True:
        live = [node for node in cluster.nodes if node.process.poll() is None]
        states = [node.client().execute_command("CLUSTER INFO").get("cluster_state") for node in live]
        if all(state == "ok" for state in states):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the cluster did not become ok: {states!r}")
        time.sleep(0.05)


@contextlib.contextmanager
def running_cluster(workdir: Path, masters: int = 3, replicas: int = 0) -> Iterator[Cluster]:
    cluster = start_cluster(workdir, masters, replicas)
    try:
        yield cluster
    finally:
        cluster.stop()
