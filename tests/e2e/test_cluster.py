"""Several real ``sse-hub`` processes on one Redis behave as one hub: fan-out in order,
resumes and direct messages across instances, deletes and cluster stats from any of them
(the brokers side by side, in process: tests/redis/test_cluster.py)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.support.brokers import broker_env
from tests.support.http import broadcast, client_id_of, open_stream
from tests.support.processes import HubProcess
from tests.support.waiting import eventually

HubFactory = Callable[..., HubProcess]


TIMEOUT = 5


@pytest.fixture
def start_processes(hub_process: HubFactory, redis_server: str, prefix: str) -> Callable[[int], list[HubProcess]]:
    env = broker_env("redis", redis_server, prefix)
    return lambda count: [hub_process(env=env) for _ in range(count)]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        yield session


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_messages_published_on_one_instance_reach_every_instance_once_in_order(
    start_processes: Callable[[int], list[HubProcess]], session: aiohttp.ClientSession
) -> None:
    hubs = start_processes(3)
    for hub in hubs:
        async with session.get(f"{hub.url}/readyz") as response:
            assert response.status == 200
    async with contextlib.AsyncExitStack() as stack:
        streams = [await stack.enter_async_context(open_stream(session, f"{hub.url}/events/prices")) for hub in hubs]
        receipts = [await broadcast(session, hubs[0].url, {"channel": "prices", "data": n}) for n in range(10)]
        receipts += await broadcast(session, hubs[0].url, [{"channel": "prices", "data": n} for n in range(10, 20)])
        await broadcast(session, hubs[0].url, {"channel": "elsewhere", "data": "not for them"})
        last = await broadcast(session, hubs[2].url, {"channel": "prices", "data": "last"})
        for stream in streams:
            events = await stream.take(21)
            assert [event.id for event in events] == [receipt["id"] for receipt in [*receipts, last]]
            assert [event.data for event in events] == [*map(str, range(20)), "last"]


async def test_a_client_reconnecting_to_another_instance_replays_what_it_missed(
    start_processes: Callable[[int], list[HubProcess]], session: aiohttp.ClientSession
) -> None:
    a, b = start_processes(2)
    async with open_stream(session, f"{a.url}/events/news") as stream:
        await broadcast(session, a.url, {"channel": "news", "data": "seen"})
        seen = await stream.next_message()
    missed = [await broadcast(session, a.url, {"channel": "news", "data": f"missed {n}"}) for n in range(2)]
    async with open_stream(session, f"{b.url}/events/news", headers={"Last-Event-ID": str(seen.id)}) as stream:
        replayed = await stream.take(2)
        live = await broadcast(session, b.url, {"channel": "news", "data": "live"})
        after = await stream.next()
    assert [event.id for event in replayed] == [receipt["id"] for receipt in missed]
    assert (after.id, after.data) == (live["id"], "live")


async def test_a_direct_message_reaches_a_client_connected_to_another_instance(
    start_processes: Callable[[int], list[HubProcess]], session: aiohttp.ClientSession
) -> None:
    a, b = start_processes(2)
    async with open_stream(session, f"{b.url}/events/inbox") as stream:
        client_id = client_id_of(stream)
        statuses: list[int] = []

        async def delivered_from_a() -> bool:
            # The directory write is batched off the connect path: poll until it landed.
            async with session.post(f"{a.url}/broadcast", json={"client_id": client_id, "data": "psst"}) as response:
                statuses.append(response.status)
                return response.status == 202

        await eventually(delivered_from_a)
        assert set(statuses) <= {202, 404}
        event = await stream.next()
        assert event.data == "psst"
        missing = await broadcast(session, a.url, {"client_id": "c_nobody", "data": "?"}, expect=404)
        assert missing["error"] == "unknown_client"
        await broadcast(
            session, a.url, [{"channel": "inbox", "data": "no"}, {"client_id": "c_nobody", "data": "?"}], expect=404
        )
        await broadcast(session, a.url, {"channel": "inbox", "data": "next"})
        assert (await stream.next()).data == "next", "the refused batch published nothing"


async def test_delete_on_one_instance_disconnects_a_client_connected_to_another(
    start_processes: Callable[[int], list[HubProcess]], session: aiohttp.ClientSession
) -> None:
    a, b = start_processes(2)
    async with (
        open_stream(session, f"{b.url}/events/inbox") as kicked,
        open_stream(session, f"{b.url}/events/inbox") as bystander,
    ):
        client_id = client_id_of(kicked)

        async def deleted_through_a() -> bool:
            # The directory write is batched off the connect path: poll until it landed.
            async with session.delete(f"{a.url}/clients/{client_id}") as response:
                return response.status == 200

        await eventually(deleted_through_a)
        await kicked.read_until_closed(TIMEOUT)
        async with session.delete(f"{a.url}/clients/c_nobody") as response:
            assert response.status == 404
        receipt = await broadcast(session, a.url, {"channel": "inbox", "data": "still here"})
        assert (await bystander.next_message(TIMEOUT)).id == receipt["id"]


async def test_cluster_stats_show_every_live_instance_from_any_of_them(
    start_processes: Callable[[int], list[HubProcess]], session: aiohttp.ClientSession
) -> None:
    a, b, c = start_processes(3)
    ids = {hub.url: (await get_json(session, f"{hub.url}/stats"))["instance"] for hub in (a, b, c)}
    async with contextlib.AsyncExitStack() as stack:
        for hub, channel in ((a, "x"), (a, "x"), (b, "y")):
            await stack.enter_async_context(open_stream(session, f"{hub.url}/events/{channel}"))

        async def cluster_of(expected_instances: set[str], clients: int, channels: dict[str, int]) -> bool:
            stats = await get_json(session, f"{a.url}/stats?scope=cluster")
            instances = {summary["instance"] for summary in stats["instances"]}
            cluster = {"instances": len(expected_instances), "total_clients": clients, "channels": channels}
            return instances == expected_instances and stats["cluster"] == cluster

        await eventually(lambda: cluster_of(set(ids.values()), 3, {"x": 2, "y": 1}))
        assert c.stop() == 0
        await eventually(lambda: cluster_of({ids[a.url], ids[b.url]}, 3, {"x": 2, "y": 1}), timeout=2)
        b.stop(signal.SIGKILL)
        # Nobody removes a killed instance: its summary expires (TTL: three refresh periods).
        await eventually(lambda: cluster_of({ids[a.url]}, 2, {"x": 2}), timeout=10)
