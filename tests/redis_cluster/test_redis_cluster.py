"""``broker.backend: redis-cluster`` in one-slot mode on a real 3-master Redis Cluster
(``tests.support.redis_cluster``): two hubs sharing the cluster, resumes across hubs, a
slot moved while publishing, a failover. Each test uses a fresh prefix, hence its own hash
tag and slot. Names in one slot, without Redis: tests/unit/test_redis_cluster.py; the
real command: tests/e2e/test_redis_cluster.py."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sse_hub.broker.redis.one_slot import RedisClusterBroker
from sse_hub.web.state import HUB
from tests.support.http import client_id_of, open_stream, publish
from tests.support.plugin import HubsFactory
from tests.support.redis_cluster import Cluster, ClusterNode, running_cluster
from tests.support.sse_client import Event, EventStream
from tests.support.waiting import eventually, wait_until

CHANNELS = ["news", "sport", "room.a", "user:42@eu", "x" * 40]


# -- two hubs on the cluster ------------------------------------------------------------


@pytest.fixture
async def two_hubs(start_hubs: HubsFactory) -> list[TestClient[Any, Any]]:
    return await start_hubs("redis-cluster")


def broker_of(client: TestClient[Any, Any]) -> RedisClusterBroker:
    broker = client.app[HUB].broker
    assert isinstance(broker, RedisClusterBroker)
    return broker


def sse_clients(cluster: Cluster, port: int) -> list[dict[str, Any]]:
    return [entry for entry in cluster.node(port).client().client_list() if entry["name"].startswith("sse-hub:")]


async def test_each_hub_keeps_one_subscriber_connection_on_the_owner_only(
    two_hubs: list[TestClient[Any, Any]],
    redis_cluster: Cluster,
) -> None:
    a, b = two_hubs
    owner = redis_cluster.owner_of(broker_of(a).slot)
    assert broker_of(a).owner == broker_of(b).owner == ("127.0.0.1", owner.port)
    async with open_stream(a, "/events?channels=news,sport"), open_stream(b, "/events/news"):
        subscribers = [entry for entry in sse_clients(redis_cluster, owner.port) if int(entry["ssub"]) > 0]
        assert sorted(entry["name"] for entry in subscribers) == sorted(
            f"sse-hub:{broker_of(hub).instance_id}" for hub in two_hubs
        )
        assert all(int(entry["sub"]) == 0 for entry in subscribers), "shard channels, not classic pub/sub"

        async def others_idle() -> bool:
            return all(not sse_clients(redis_cluster, node.port) for node in redis_cluster.nodes if node is not owner)

        await eventually(others_idle)


async def collect(stream: EventStream, count: int, timeout: float = 5) -> list[Event]:
    return [await stream.next_message(timeout) for _ in range(count)]


async def test_interleaved_publishes_from_two_hubs_arrive_in_id_order_on_both(
    two_hubs: list[TestClient[Any, Any]],
) -> None:
    a, b = two_hubs
    async with open_stream(a, "/events?channels=" + ",".join(CHANNELS)) as on_a:
        async with open_stream(b, "/events?channels=" + ",".join(CHANNELS)) as on_b:
            bodies = [(a if n % 2 else b, {"channel": CHANNELS[n % len(CHANNELS)], "data": n}) for n in range(60)]
            receipts = await asyncio.gather(*(publish(hub, body) for hub, body in bodies))
            published = sorted(int(receipt["id"]) for receipt in receipts)
            for stream in (on_a, on_b):
                ids = [int(event.id or 0) for event in await collect(stream, len(published))]
                assert ids == published


async def test_a_multi_channel_stream_resumes_on_the_other_hub_at_random_points(
    two_hubs: list[TestClient[Any, Any]],
) -> None:
    rng = random.Random(16)
    channels = CHANNELS[:4]
    path = "/events?channels=" + ",".join(channels)
    seen: list[int] = []
    published: list[int] = []
    last_id = ""
    for round_number in range(6):
        hub = two_hubs[round_number % 2]
        headers = {"Last-Event-ID": last_id} if last_id else None
        async with open_stream(hub, path, headers=headers) as stream:
            bodies = [{"channel": rng.choice([*channels, "elsewhere"]), "data": n} for n in range(rng.randint(3, 12))]
            for receipt in await asyncio.gather(*(publish(rng.choice(two_hubs), body) for body in bodies)):
                if receipt["channels"] != ["elsewhere"]:
                    published.append(int(receipt["id"]))
            owed = sum(1 for n in published if n > (seen[-1] if seen else 0))
            for event in await collect(stream, rng.randint(0, owed)):
                seen.append(int(event.id or 0))
                last_id = event.id or ""
    async with open_stream(two_hubs[0], path, headers={"Last-Event-ID": last_id} if last_id else None) as stream:
        rest = sum(1 for n in published if n > (seen[-1] if seen else 0))
        seen += [int(event.id or 0) for event in await collect(stream, rest)]
    assert seen == sorted(published), "every message once, in order, across six resumes on alternating hubs"


@pytest.mark.parametrize("garbage", ["garbage", "v1.k2x9.7.z", "-3", "99999999999999999999", "1e3"])
async def test_an_unusable_last_event_id_starts_with_reset(two_hubs: list[TestClient[Any, Any]], garbage: str) -> None:
    a, _ = two_hubs
    await publish(a, {"channel": "news", "data": "kept"})
    async with open_stream(a, "/events/news", headers={"Last-Event-ID": garbage}) as stream:
        first = await stream.next()
        assert first.event == "reset" and first.json() == {"reason": "unknown_id", "last_event_id": garbage}
        assert first.id is None


async def test_global_direct_kick_tickets_and_cluster_stats_work_across_hubs(
    two_hubs: list[TestClient[Any, Any]],
) -> None:
    a, b = two_hubs
    async with open_stream(b, "/events/news") as stream:
        await publish(a, {"data": "to everyone"})
        assert (await stream.next_message()).data == "to everyone"
        await publish(a, {"client_id": client_id_of(stream), "data": "just you"})
        assert (await stream.next_message()).data == "just you"
        stats = await (await a.get("/stats?scope=cluster")).json()
        assert len(stats["instances"]) == 2, stats
        assert (await a.get("/readyz")).status == 200
        kicked = await a.delete(f"/clients/{client_id_of(stream)}")
        assert kicked.status == 200, await kicked.text()
        assert "event: message" not in await stream.read_until_closed()
    await broker_of(a).tickets.issue("t-16", ("news",), 60)
    assert await broker_of(b).tickets.redeem("t-16") == ("news",)
    assert await broker_of(a).tickets.redeem("t-16") is None


async def test_a_slot_moved_while_publishing_loses_nothing(
    two_hubs: list[TestClient[Any, Any]],
    redis_cluster: Cluster,
) -> None:
    a, b = two_hubs
    slot = broker_of(a).slot
    source = redis_cluster.owner_of(slot)
    target = next(node for node in redis_cluster.masters() if node is not source)
    acknowledged: list[int] = []
    refused = 0
    stop = asyncio.Event()

    async def publish_steadily() -> None:
        nonlocal refused
        n = 0
        while not stop.is_set():
            response = await a.post("/broadcast", json={"channel": "moving", "data": n})
            if response.status == 202:
                acknowledged.append(int((await response.json())["id"]))
            else:
                assert response.status == 503, await response.text()  # the slot is moving
                refused += 1
                await asyncio.sleep(0.01)
            n += 1

    async with open_stream(b, "/events/moving") as stream:
        publisher = asyncio.create_task(publish_steadily())
        try:
            await wait_until(lambda: len(acknowledged) >= 20)
            await asyncio.to_thread(redis_cluster.move_slot, slot, target)
            await wait_until(lambda: broker_of(a).owner == broker_of(b).owner == ("127.0.0.1", target.port))
            before = len(acknowledged)
            await wait_until(lambda: len(acknowledged) >= before + 20)
        finally:
            stop.set()
            await publisher
        received = [int(event.id or 0) for event in await collect(stream, len(acknowledged))]
    assert received[: len(acknowledged)] == acknowledged, "every acknowledged message, in order"
    assert broker_of(b).reconnects >= 1 and broker_of(a).reconnects >= 1


# -- failover: a cluster of this test's own, with a replica per master ---------------------


@pytest.fixture
async def replicated(tmp_path: Path, start_hubs: HubsFactory) -> AsyncIterator[Replicated]:
    with running_cluster(tmp_path, masters=3, replicas=1) as cluster:
        yield cluster, await start_hubs("redis-cluster", url=cluster.url)


Replicated = tuple[Cluster, list[TestClient[Any, Any]]]


async def publish_retrying(hub: TestClient[Any, Any], body: object, attempts: int = 500) -> int:
    """Publish until accepted (503 while the cluster fails over); the message's id."""
    for _ in range(attempts):
        response = await hub.post("/broadcast", json=body)
        if response.status == 202:
            return int((await response.json())["id"])
        assert response.status == 503, await response.text()
        await asyncio.sleep(0.02)
    raise AssertionError("the hub never accepted the message again")


def replicate_now(cluster: Cluster, master: ClusterNode, key: str) -> None:
    """Return once a replica holds every write the master took so far: WAIT counts this
    connection's last write, and replication is one ordered stream."""
    client = master.client()
    client.set(key, "1")
    assert client.execute_command("WAIT", 1, 5000) == 1


@pytest.mark.parametrize("how", ["kill", "manual"])
async def test_after_a_failover_hubs_follow_the_new_master_and_streams_resume_with_a_reset(
    replicated: Replicated, how: str
) -> None:
    """A promoted replica may lack writes its master acknowledged (replication is
    asynchronous), so the sequence starts again there and the streams end: they resume
    from history, told by ``reset``, and get every acknowledged message the replica holds."""
    cluster, (a, b) = replicated
    slot = broker_of(a).slot
    old = cluster.owner_of(slot)
    async with open_stream(b, "/events?channels=news,sport") as stream:
        before = [await publish_retrying(a, {"channel": ("news", "sport")[n % 2], "data": n}) for n in range(10)]
        assert [int(event.id or 0) for event in await collect(stream, len(before))] == before
        await asyncio.to_thread(replicate_now, cluster, old, f"{broker_of(a)._keys.prefix}:fence")
        if how == "kill":
            old.kill()
        else:
            replica = next(node for node in cluster.nodes if node.port in replicas_of(cluster, old))
            await asyncio.to_thread(replica.client().execute_command, "CLUSTER FAILOVER")
        after = [await publish_retrying(a, {"channel": "sport", "data": n}) for n in range(10)]
        await wait_until(lambda: broker_of(b).owner not in (None, ("127.0.0.1", old.port)), timeout=20)
        await stream.read_until_closed(20)
        # A killed master takes b's subscription with it: the stream ends before anything
        # new. A demoted one may pass on new messages first (shard messages reach its
        # replicas too); the stream still ends once b sees the sequence start again.
        live = [int(event.id or 0) for event in stream.drain() if event.event == "message"]
        assert live == after[: len(live)]
        if how == "kill":
            assert not live, "the stream ends before anything new"
    assert min(after) > max(before)
    assert broker_of(a).owner == broker_of(b).owner != ("127.0.0.1", old.port)
    path = "/events?channels=news,sport"
    received = []
    if len(live) < len(after):
        _, received = await resume_as_a_browser(b, path, live[-1] if live else before[-1], len(after) - len(live))
    assert live + received == after, "each acknowledged message once, in order, across the end"
    first, received = await resume_as_a_browser(b, path, before[4], 15)
    assert (first.event, first.json()) == ("reset", {"reason": "history_expired", "last_event_id": str(before[4])})
    assert received == [*before[5:], *after]


async def resume_as_a_browser(
    hub: TestClient[Any, Any], path: str, last_seen: int, count: int, attempts: int = 5
) -> tuple[Event, list[int]]:
    """The first event of a resume from ``last_seen``, and the ids of the next ``count``
    messages, reconnecting with the last id seen when the hub ends the stream (as
    ``EventSource`` does: an instance that learns late that Redis lost writes ends its
    streams once more)."""
    first: Event | None = None
    received: list[int] = []
    for _ in range(attempts):
        headers = {"Last-Event-ID": str(received[-1] if received else last_seen)}
        async with open_stream(hub, path, headers=headers) as stream:
            try:
                while len(received) < count:
                    event = await stream.next(15)
                    first = first or event
                    if event.event not in ("connected", "reset"):
                        received.append(int(event.id or 0))
            except EOFError:
                continue
        break
    assert first is not None
    return first, received


def replicas_of(cluster: Cluster, master: ClusterNode) -> set[int]:
    """The ports of ``master``'s replicas (redis-py parses ``CLUSTER REPLICAS`` by address)."""
    client = master.client()
    replicas = client.execute_command("CLUSTER REPLICAS", client.execute_command("CLUSTER MYID").decode())
    return {int(address.rsplit(":", 1)[1]) for address in replicas}


async def test_the_topology_watch_reconnects_when_the_slot_owner_is_not_the_one_in_use(
    two_hubs: list[TestClient[Any, Any]],
) -> None:
    a, _ = two_hubs
    broker = broker_of(a)
    actual = broker.owner
    broker.owner = ("127.0.0.1", 1)  # as if the slot had moved with no push reaching us
    broker._recheck.set()  # what a failed publish does; else the next periodic check
    await wait_until(lambda: broker.reconnects == 1 and broker.owner == actual, timeout=10)
    await publish(a, {"channel": "news", "data": "after"})
