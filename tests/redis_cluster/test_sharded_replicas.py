"""``broker.min_replicas_acked`` on the sharded Redis Cluster (``broker/sharded/replicas.py``):
a publish is answered only once a replica holds it, so a master killed right after the
answer loses nothing acknowledged; a replica that does not answer makes the publish 503.

Each test runs a cluster of its own with a replica per master, and cuts the replica of the
channel's master off (``cut_off``) so that replication is not merely fast but visibly
waited for: without ``WAIT`` the answer comes back while the replica lacks the message."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sse_hub.broker.sharded import ShardedClusterBroker
from sse_hub.broker.sharded.partitions import partition, partition_slot
from sse_hub.errors import BrokerUnavailable
from sse_hub.messages.positions import NOWHERE
from tests.support.brokers import broker_section, draft
from tests.support.http import HubClientFactory
from tests.support.plugin import BrokerFactory
from tests.support.redis_cluster import Cluster, ClusterNode, running_cluster
from tests.support.waiting import eventually, wait_until

TIMEOUT = 10
FAILOVER_TIMEOUT = 30


def replicas_of(cluster: Cluster, slot: int) -> list[ClusterNode]:
    """The replicas ``CLUSTER SLOTS`` lists for the master serving ``slot``."""
    for start, end, _master, *replicas in cluster.nodes[0].client().execute_command("CLUSTER SLOTS"):
        if start <= slot <= end:
            return [cluster.node(int(replica[1])) for replica in replicas]
    return []


async def replica_of(cluster: Cluster, slot: int) -> ClusterNode:
    """The replica of the master serving ``slot``, once it is listed and in sync (a
    ``WAIT 1`` with no write before it counts the replicas connected)."""
    master = cluster.owner_of(slot)
    await wait_until(
        lambda: bool(replicas_of(cluster, slot)) and master.client().execute_command("WAIT", 1, 100) == 1,
        timeout=TIMEOUT,
    )
    return replicas_of(cluster, slot)[0]


@contextmanager
def cut_off(master: ClusterNode, replica: ClusterNode) -> Iterator[None]:
    """``replica`` receives nothing from ``master`` in the block: stopped (SIGSTOP) and its
    link closed by the master (a stopped process's kernel still buffers what the link
    brings, and would apply it once continued). On leaving, whatever happened, it is
    continued (SIGCONT; nothing for a running process) and reconnects, within a second
    or two (its replication cron); continuing it earlier ends the cut early."""
    replica.process.send_signal(signal.SIGSTOP)
    try:
        master.client().client_kill_filter(_type="replica")
        yield
    finally:
        replica.process.send_signal(signal.SIGCONT)


def blocked_in_wait(master: ClusterNode) -> bool:
    """Some client of ``master`` is blocked: the publisher in ``WAIT``."""
    return int(master.client().info("clients")["blocked_clients"]) > 0


async def history_data(broker: ShardedClusterBroker, channel: str) -> list[str]:
    """The data of ``channel``'s retained parts, read once the broker reaches its master."""
    found: list[str] = []

    async def read() -> bool:
        try:
            page = await broker.history_after({channel: NOWHERE}, 100)
        except BrokerUnavailable:
            return False
        found[:] = [message.data for message in page.messages]
        return True

    await eventually(read, timeout=FAILOVER_TIMEOUT)
    return found


async def test_a_publish_acknowledged_by_a_replica_survives_its_master_killed_at_once(
    start_broker: BrokerFactory, tmp_path: Path, prefix: str
) -> None:
    with running_cluster(tmp_path, masters=3, replicas=1) as cluster:
        broker = {**broker_section("sharded", cluster.url, prefix), "min_replicas_acked": 1}
        async with start_broker.group(1, "sharded", url=cluster.url, broker=broker) as [(hub, _)]:
            slot = partition_slot(partition("news"))
            master, replica = cluster.owner_of(slot), await replica_of(cluster, slot)
            await hub.publish([draft("news", data="before")])
            with cut_off(master, replica):
                publish = asyncio.create_task(hub.publish([draft("news", data="acked")]))
                await wait_until(lambda: publish.done() or blocked_in_wait(master), timeout=TIMEOUT)
                if not publish.done():
                    # The publish waits for the replica: let it catch up, and only then
                    # can the answer come. Answered already, the replica stays paused
                    # until its master is dead, so it can never have the message.
                    replica.process.send_signal(signal.SIGCONT)
                await asyncio.wait_for(publish, TIMEOUT)
                master.kill()
            await wait_until(lambda: cluster.owner_of(slot).port == replica.port, timeout=FAILOVER_TIMEOUT)
            assert await history_data(hub, "news") == ["before", "acked"]


async def test_a_publish_whose_replica_does_not_answer_gets_503_and_goes_through_once_it_does(
    hub_client: HubClientFactory, tmp_path: Path, prefix: str
) -> None:
    with running_cluster(tmp_path, masters=3, replicas=1) as cluster:
        hub = await hub_client(broker={**broker_section("sharded", cluster.url, prefix), "min_replicas_acked": 1})
        try:
            slot = partition_slot(partition("news"))
            master, replica = cluster.owner_of(slot), await replica_of(cluster, slot)
            with cut_off(master, replica):
                post = hub.post("/broadcast", json={"channel": "news", "data": "unacked"})
                response = await asyncio.wait_for(post, TIMEOUT)
                assert response.status == 503, await response.text()
                assert (await response.json())["error"] == "broker_unavailable"
            response = await hub.post("/broadcast", json={"channel": "news", "data": "acked"})
            assert response.status == 202, await response.text()
        finally:
            await hub.close()  # before its cluster stops
