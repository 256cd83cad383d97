"""``/stats`` (every field, ``?limit=``, ``?scope=cluster``), the counters behind it,
``/healthz`` and ``/readyz``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sse_hub.web.state import HUB
from tests.support.http import HubClientFactory, client_id_of, get_stats, open_stream, publish
from tests.support.waiting import wait_until

CLIENT_FIELDS = {
    "id",
    "ip",
    "channels",
    "connected_at",
    "last_activity",
    "messages_sent",
    "bytes_sent",
    "buffered_bytes",
    "user_agent",
}
TOP_FIELDS = {
    "instance",
    "started_at",
    "total_clients",
    "channels",
    "messages_published",
    "messages_delivered",
    "slow_disconnects",
    "clients",
}


def parse_utc(value: object) -> datetime:
    """An ISO 8601 timestamp in UTC (``Z`` or ``+00:00``)."""
    assert isinstance(value, str), value
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert moment.utcoffset() == timedelta(0), value
    assert "T" in value, value
    return moment


def entry_for(stats: Any, client_id: str) -> Any:
    return next(entry for entry in stats["clients"] if entry["id"] == client_id)


def frame_size(event_id: str, data: str, event: str = "message") -> int:
    """Bytes of one message's SSE frame as design.md writes it."""
    head = f"id: {event_id}\n" + (f"event: {event}\n" if event != "message" else "")
    return len((head + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n").encode())


async def test_stats_has_every_field_of_the_contract(client: TestClient[Any, Any]) -> None:
    before = datetime.now(UTC)
    async with open_stream(client, "/events?channel=a&channel=b", headers={"User-Agent": "stats-test/1.0"}) as stream:
        await publish(client, {"channel": "a", "data": "x"})
        await stream.next()
        stats = await get_stats(client)
    after = datetime.now(UTC)

    assert set(stats) == TOP_FIELDS
    assert isinstance(stats["instance"], str) and stats["instance"]
    assert parse_utc(stats["started_at"]) <= after
    assert stats["total_clients"] == 1
    assert stats["channels"] == {"a": 1, "b": 1}
    for counter in ("messages_published", "messages_delivered", "slow_disconnects"):
        assert type(stats[counter]) is int
    (entry,) = stats["clients"]
    assert set(entry) == CLIENT_FIELDS
    assert entry["id"] == client_id_of(stream)
    assert entry["ip"] == "127.0.0.1"
    assert entry["channels"] == ["a", "b"]
    assert entry["user_agent"] == "stats-test/1.0"
    connected_at, last_activity = parse_utc(entry["connected_at"]), parse_utc(entry["last_activity"])
    slack = timedelta(seconds=1)
    assert before - slack <= connected_at <= last_activity <= after + slack
    for counter in ("messages_sent", "bytes_sent", "buffered_bytes"):
        assert type(entry[counter]) is int and entry[counter] >= 0


async def test_stats_timestamps_end_in_z(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/a"):
        stats = await get_stats(client)
    (entry,) = stats["clients"]
    for value in (stats["started_at"], entry["connected_at"], entry["last_activity"]):
        assert value.endswith("Z") or value.endswith("+00:00"), value


async def test_stats_counts_clients_per_channel(client: TestClient[Any, Any]) -> None:
    async with (
        open_stream(client, "/events/a"),
        open_stream(client, "/events/a"),
        open_stream(client, "/events?channel=a&channel=b"),
    ):
        stats = await get_stats(client)
    assert stats["total_clients"] == 3
    assert stats["channels"] == {"a": 3, "b": 1}
    assert "*" not in stats["channels"]


async def test_limit_bounds_the_client_list_not_the_totals(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/a"), open_stream(client, "/events/a"), open_stream(client, "/events/b"):
        limited = await get_stats(client, "?limit=2")
        none = await get_stats(client, "?limit=0")
        everyone = await get_stats(client, "?limit=100")
    assert len(limited["clients"]) == 2
    assert none["clients"] == []
    assert len(everyone["clients"]) == 3
    assert limited["total_clients"] == none["total_clients"] == 3
    assert limited["channels"] == {"a": 2, "b": 1}


@pytest.mark.parametrize("limit", ["-1", "x", "1.5", "", "99999999999999999999", "1e3", "²", "+1", "%201"])
async def test_a_bad_limit_is_400(client: TestClient[Any, Any], limit: str) -> None:
    response = await client.get(f"/stats?limit={limit}")
    assert response.status == 400
    assert set(await response.json()) == {"error", "detail"}


async def test_a_bad_scope_is_400(client: TestClient[Any, Any]) -> None:
    response = await client.get("/stats?scope=galaxy")
    assert response.status == 400
    assert set(await response.json()) == {"error", "detail"}


async def test_published_and_delivered_count_messages_and_deliveries(client: TestClient[Any, Any]) -> None:
    async with (
        open_stream(client, "/events/a") as first,
        open_stream(client, "/events/a") as second,
        open_stream(client, "/events/b") as third,
    ):
        await publish(client, {"channel": "a", "data": "to two"})
        await publish(client, {"data": "to all three"})
        await publish(client, {"client_id": client_id_of(third), "data": "to one"})
        await publish(client, {"channel": "nobody", "data": "to none"})
        await publish(client, {"channel": "a", "data": "to one of two", "exclude_client_id": client_id_of(first)})
        await publish(client, [{"channel": "b", "data": 1}, {"channel": "b", "data": 2}])
        for stream, count in ((first, 2), (second, 3), (third, 4)):
            await stream.take(count)
        stats = await get_stats(client)
    assert stats["messages_published"] == 7
    assert stats["messages_delivered"] == 2 + 3 + 1 + 0 + 1 + 2
    sent = {entry["id"]: entry["messages_sent"] for entry in stats["clients"]}
    assert sent == {client_id_of(first): 2, client_id_of(second): 3, client_id_of(third): 4}


async def test_bytes_sent_counts_the_frames_of_published_messages(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/a") as stream:
        client_id = client_id_of(stream)
        assert entry_for(await get_stats(client), client_id)["bytes_sent"] == 0
        one = await publish(client, {"channel": "a", "data": "hello"})
        two = await publish(client, {"channel": "a", "event": "multi", "data": "x\ny"})
        await stream.take(2)
        entry = entry_for(await get_stats(client), client_id)
    assert entry["messages_sent"] == 2
    assert entry["bytes_sent"] == frame_size(one["id"], "hello") + frame_size(two["id"], "x\ny", "multi")


async def test_connected_reset_and_heartbeats_are_not_counted_as_messages(hub_client: HubClientFactory) -> None:
    client = await hub_client(sse={"heartbeat_seconds": 0.3})
    async with open_stream(client, "/events/a", headers={"Last-Event-ID": "not-a-number"}) as stream:
        assert (await stream.next()).event == "reset"
        async with asyncio.timeout(5):
            while not stream.parser.comments:
                stream.parser.feed((await stream.response.content.readany()).decode())
        stats = await get_stats(client)
        entry = entry_for(stats, client_id_of(stream))
    assert (entry["messages_sent"], entry["bytes_sent"]) == (0, 0)
    assert (stats["messages_published"], stats["messages_delivered"]) == (0, 0)


async def test_replayed_messages_count_as_sent(client: TestClient[Any, Any]) -> None:
    receipt = await publish(client, {"channel": "a", "data": "old"})
    async with open_stream(client, "/events/a", headers={"Last-Event-ID": "0"}) as stream:
        await stream.next()
        entry = entry_for(await get_stats(client), client_id_of(stream))
    assert (entry["messages_sent"], entry["bytes_sent"]) == (1, frame_size(receipt["id"], "old"))


async def test_last_activity_moves_when_a_message_is_sent(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/a") as stream:
        client_id = client_id_of(stream)
        connected = entry_for(await get_stats(client), client_id)
        await wait_until(lambda: datetime.now(UTC) > parse_utc(connected["last_activity"]) + timedelta(milliseconds=5))
        await publish(client, {"channel": "a", "data": "x"})
        await stream.next()
        entry = entry_for(await get_stats(client), client_id)
    assert parse_utc(entry["last_activity"]) > parse_utc(connected["last_activity"])
    assert entry["connected_at"] == connected["connected_at"]


async def test_scope_cluster_in_memory_mode_lists_this_instance_alone(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/a"), open_stream(client, "/events?channel=a&channel=b"):
        stats = await get_stats(client, "?scope=cluster")
    assert TOP_FIELDS <= set(stats)
    (instance,) = stats["instances"]
    assert set(instance) == {"instance", "started_at", "total_clients", "channels"}
    assert instance["instance"] == stats["instance"]
    assert instance["started_at"] == stats["started_at"]
    parse_utc(instance["started_at"])
    assert instance["total_clients"] == 2
    assert instance["channels"] == {"a": 2, "b": 1}
    assert stats["cluster"] == {"instances": 1, "total_clients": 2, "channels": {"a": 2, "b": 1}}


async def test_a_client_that_disconnects_disappears_from_stats(hub_client: HubClientFactory) -> None:
    heartbeat_seconds = 1.0
    client = await hub_client(sse={"heartbeat_seconds": heartbeat_seconds})
    async with open_stream(client, "/events/a") as stream:
        gone = client_id_of(stream)
        async with open_stream(client, "/events/b") as other:
            stays = client_id_of(other)
            assert {entry["id"] for entry in (await get_stats(client))["clients"]} == {gone, stays}
            stream.response.close()
            hub = client.server.app[HUB]
            await wait_until(lambda: hub.registry.get(gone) is None, timeout=heartbeat_seconds + 1)
            stats = await get_stats(client)
    assert [entry["id"] for entry in stats["clients"]] == [stays]
    assert stats["total_clients"] == 1
    assert stats["channels"] == {"b": 1}


async def test_healthz_answers_200(client: TestClient[Any, Any]) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_answers_200_with_the_memory_broker(client: TestClient[Any, Any]) -> None:
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["status"] == "ready"
