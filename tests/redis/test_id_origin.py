"""Ids across a broker that lost its data (issue 24, bug 1): a Redis killed and started
again empty, and a memory hub whose process started again. No id is handed out twice, and
a stream that may have missed messages is told (``reset``), never left silently short."""

from __future__ import annotations

import asyncio
import json

from tests.support.http import HubClientFactory, open_stream, publish
from tests.support.plugin import HubsFactory
from tests.support.processes import RedisProcess
from tests.support.waiting import eventually

TIMEOUT = 5
# The broker's first reconnect attempts come after 0.05-0.2 s; a restarted Redis is back
# within a few of them.
RECOVERY_TIMEOUT = 10


async def test_a_memory_hub_started_again_hands_out_no_id_twice_and_resets_an_old_resume(
    hub_client: HubClientFactory,
) -> None:
    before = await hub_client()
    receipts = [await publish(before, {"channel": "busy", "data": f"old {n}"}) for n in range(3)]
    last_old = receipts[-1]["id"]

    after = await hub_client()  # the same settings, a new process's broker: nothing kept
    fresh = await publish(after, {"channel": "busy", "data": "new"})
    assert int(fresh["id"]) > int(last_old), "an id of the earlier process was handed out again"

    async with open_stream(after, "/events/busy", headers={"Last-Event-ID": last_old}) as stream:
        reset = await stream.next(TIMEOUT)
        assert (reset.event, json.loads(reset.data)["reason"]) == ("reset", "history_expired")
        message = await stream.next(TIMEOUT)
        assert (message.id, message.data) == (fresh["id"], "new")


async def test_redis_back_empty_hands_out_no_id_twice_and_streams_learn_what_they_missed(
    own_redis: RedisProcess, start_hubs: HubsFactory
) -> None:
    """The issue's reproduction: instance A serves ``busy`` (ids up to some n), B serves
    only ``quiet`` (it has seen an id below them). Redis comes back empty; B accepts two
    publishes to ``busy``. They must get ids above n, A's live stream must not go on as if
    nothing happened, and a resume from n must be told ``reset`` before it gets them."""
    a, b = await start_hubs("redis", url=own_redis.url, sse={"heartbeat_seconds": 0.3})
    async with open_stream(b, "/events/quiet") as on_b:
        quiet = await publish(b, {"channel": "quiet", "data": "q"})
        assert (await on_b.next(TIMEOUT)).id == quiet["id"]
        async with open_stream(a, "/events/busy") as on_a:
            busy = [await publish(a, {"channel": "busy", "data": f"b{n}"}) for n in range(3)]
            assert [event.id for event in await on_a.take(3, TIMEOUT)] == [receipt["id"] for receipt in busy]
            last_busy = busy[-1]["id"]

            own_redis.kill()
            own_redis.start()

            async def b_publishes() -> bool:
                response = await b.post("/broadcast", json=[{"channel": "busy", "data": f"n{n}"} for n in range(2)])
                return response.status == 202

            await eventually(b_publishes, timeout=RECOVERY_TIMEOUT)
            # A's stream is ended so that it resumes from history: it is never fed what
            # came after the loss as if nothing had been missed.
            rest = await on_a.read_until_closed(RECOVERY_TIMEOUT)
            assert "event: busy" not in rest and "data: n0" not in rest, rest

    history = await (await b.get("/stats")).json()
    assert history["messages_published"] == 3
    async with open_stream(a, "/events/busy", headers={"Last-Event-ID": last_busy}) as resumed:
        reset = await resumed.next(TIMEOUT)
        assert (reset.event, json.loads(reset.data)["reason"]) == ("reset", "history_expired")
        replayed = await resumed.take(2, TIMEOUT)
        assert [event.data for event in replayed] == ["n0", "n1"]
        assert all(int(event.id or 0) > int(last_busy) for event in replayed), "ids were reused"


async def test_a_redis_restart_that_keeps_every_write_keeps_the_sequence_and_the_streams(
    own_redis: RedisProcess, start_hubs: HubsFactory
) -> None:
    """With an append-only file synced on every write nothing acknowledged is lost across
    a restart: the sequence goes on, streams stay open, no needless ``reset``."""
    own_redis.kill()
    own_redis.start(durable=True)
    [a] = await start_hubs("redis", 1, url=own_redis.url)
    async with open_stream(a, "/events/busy") as stream:
        first = await publish(a, {"channel": "busy", "data": "before"})
        assert (await stream.next(TIMEOUT)).id == first["id"]
        own_redis.kill()
        own_redis.start(durable=True)

        async def published() -> bool:
            response = await a.post("/broadcast", json={"channel": "busy", "data": "after"})
            return response.status == 202

        await eventually(published, timeout=RECOVERY_TIMEOUT)
        event = await stream.next(TIMEOUT)
        assert event.data == "after" and int(event.id or 0) == int(first["id"]) + 1, "the sequence went on"


async def test_a_resume_from_zero_on_a_new_sequence_is_not_reset(hub_client: HubClientFactory) -> None:
    """0 names no message of any sequence: it asks for what is retained, with no reset for
    the sequences before this one."""
    client = await hub_client()
    receipt = await publish(client, {"channel": "c", "data": "kept"})
    async with open_stream(client, "/events/c", headers={"Last-Event-ID": "0"}) as stream:
        event = await asyncio.wait_for(stream.next(), TIMEOUT)
        assert (event.id, event.data) == (receipt["id"], "kept")
