"""The Redis broker's bounds and failure rules, on a real redis-server: history expiry,
publish groups that always resolve, all-or-nothing groups, capped tickets and directory."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from redis.asyncio import Redis

from sse_hub.broker.redis import RedisBroker
from sse_hub.errors import BrokerUnavailable, TooManyTickets
from tests.support.brokers import draft
from tests.support.plugin import BrokerFactory
from tests.support.processes import RedisProcess
from tests.support.waiting import eventually, wait_until


async def test_every_publish_sets_the_history_ttl_on_the_streams_it_writes(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    broker, _ = await start_broker("redis", history={"ttl_seconds": 100})
    await broker.publish([draft("a", "b"), draft("*")])
    for channel in ("a", "b", "*"):
        assert 0 < await redis.pttl(f"{prefix}:history:{channel}") <= 100_000
    assert await redis.pttl(f"{prefix}:seq") == -1, "the sequence never expires"


async def test_a_failure_that_is_not_a_redis_error_still_resolves_every_publisher(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker("redis")
    script = broker.publisher.script

    async def broken(**_: object) -> list[bytes]:
        raise ValueError("a bug, not a Redis error")

    broker.publisher.script = broken  # type: ignore[assignment]
    async with asyncio.timeout(5):
        results = await asyncio.gather(*(broker.publish([draft("a")]) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(result, BrokerUnavailable) for result in results), results
    broker.publisher.script = script
    [message] = await broker.publish([draft("a")])
    assert message.id >= 1


async def test_publishes_made_while_a_group_is_in_flight_go_out_together_after_it(start_broker: BrokerFactory) -> None:
    """Publisher invariant 5: one group in flight; what arrives meanwhile is the next group."""
    broker, delivered = await start_broker("redis")
    await broker.attach(["a"])
    script = broker.publisher.script
    calls: list[int] = []
    answer = asyncio.Event()

    async def held(**kwargs: Any) -> Any:
        calls.append(len(kwargs["keys"]) - 3)  # the streams written (after seq, clock, origin): one per message
        if len(calls) == 1:
            await answer.wait()
        return await script(**kwargs)

    broker.publisher.script = held  # type: ignore[assignment]
    first = asyncio.ensure_future(broker.publish([draft("a", data="first")]))
    await wait_until(lambda: calls == [1], 5)
    later = []
    for n in range(5):  # each in a loop iteration of its own
        later.append(asyncio.ensure_future(broker.publish([draft("a", data=f"later {n}")])))
        await asyncio.sleep(0)
    assert calls == [1], "nothing else is sent while a group is in flight"
    answer.set()
    async with asyncio.timeout(5):
        results = [await first, *[await publish for publish in later]]
    assert calls == [1, 5], "the five went out as one group, once the first was answered"
    ids = [messages[0].id for messages in results]
    assert ids == sorted(ids) and len(set(ids)) == 6
    await wait_until(lambda: [message.id for message in delivered] == ids, 5)
    broker.detach(["a"])


def hold_answers(broker: RedisBroker) -> asyncio.Event:
    """Make every publish script call wait for the returned event before it goes out."""
    script = broker.publisher.script
    answer = asyncio.Event()

    async def held(**kwargs: Any) -> Any:
        await answer.wait()
        return await script(**kwargs)

    broker.publisher.script = held  # type: ignore[assignment]
    return answer


async def test_a_publisher_that_leaves_takes_nothing_from_the_others_of_its_group(start_broker: BrokerFactory) -> None:
    """Publisher invariant 7: each caller waits on a future of its own."""
    broker, delivered = await start_broker("redis")
    await broker.attach(["a"])
    answer = hold_answers(broker)
    publishes = [asyncio.ensure_future(broker.publish([draft("a", data=f"m{n}")])) for n in range(3)]
    await wait_until(lambda: bool(broker.publisher._running), 5)
    publishes[1].cancel()
    answer.set()
    async with asyncio.timeout(5):
        results = await asyncio.gather(*publishes, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert [messages[0].data for messages in (results[0], results[2])] == ["m0", "m2"]  # type: ignore[index]
    await wait_until(lambda: len(delivered) == 3, 5)  # the group went out whole
    broker.detach(["a"])


def hold_receipts(broker: RedisBroker) -> list[bytes]:
    """Keep what the subscription brings in a list instead of delivering it; hand it to
    ``broker._receive_payload`` to deliver."""
    held: list[bytes] = []
    broker.listener._receive = held.append
    return held


async def test_arriving_waits_for_the_delivery_of_every_unanswered_own_message(start_broker: BrokerFactory) -> None:
    """Broker invariant 6: ``arriving`` covers the group in flight and the open one after it,
    and resolves only once what of them comes back here was delivered: not at the answer."""
    broker, delivered = await start_broker("redis")
    await broker.attach(["a"])
    assert broker.arriving() is None, "every publish was answered"
    answer = hold_answers(broker)
    first = asyncio.ensure_future(broker.publish([draft("a", data="first")]))
    await wait_until(lambda: broker.publisher.unanswered is not None and broker.publisher._running, 5)
    second = asyncio.ensure_future(broker.publish([draft("a", data="second"), draft("elsewhere")]))
    await asyncio.sleep(0)  # the second publish joins the open group
    arrival = broker.arriving()
    assert arrival is not None and not arrival.done()
    payloads = hold_receipts(broker)
    answer.set()
    async with asyncio.timeout(5):
        answered = [*await first, *await second]
    await wait_until(lambda: len(payloads) == 2, 5)  # "elsewhere" is not subscribed: it never comes
    assert not arrival.done(), "answered is not delivered"
    broker._receive_payload(payloads[0])
    assert not arrival.done(), "the newest group's message is still on its way"
    broker._receive_payload(payloads[1])
    async with asyncio.timeout(5):
        await arrival
    assert [message.id for message in delivered] == [message.id for message in answered[:2]]


async def test_arriving_resolves_at_the_answer_when_nothing_comes_back(start_broker: BrokerFactory) -> None:
    """A publish to channels this instance does not serve, or one that fails, has nothing
    on its way back: waiting for it would only hold the flush until its timer."""
    broker, delivered = await start_broker("redis")
    hold_receipts(broker)
    publish = asyncio.ensure_future(broker.publish([draft("not-served")]))
    await asyncio.sleep(0)
    arrival = broker.arriving()
    assert arrival is not None
    async with asyncio.timeout(5):
        await publish
        await arrival

    async def broken(**_: object) -> list[bytes]:
        raise ValueError("a bug, not a Redis error")

    broker.publisher.script = broken  # type: ignore[assignment]
    await broker.attach(["a"])
    failed = asyncio.ensure_future(broker.publish([draft("a")]))
    await asyncio.sleep(0)
    arrival = broker.arriving()
    assert arrival is not None
    async with asyncio.timeout(5):
        with pytest.raises(BrokerUnavailable):
            await failed
        await arrival
    assert delivered == []
    broker.detach(["a"])


async def test_a_draft_that_cannot_be_encoded_fails_only_its_own_publish(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker("redis")
    good, bad = await asyncio.gather(
        broker.publish([draft("a", data="fine")]),
        broker.publish([draft("a", data="\ud800")]),  # a lone surrogate: not encodable
        return_exceptions=True,
    )
    assert isinstance(good, list) and good[0].data == "fine"
    assert isinstance(bad, Exception) and not isinstance(bad, BrokerUnavailable)


async def test_a_group_that_redis_refuses_leaves_nothing_applied(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    broker, delivered = await start_broker("redis")
    await broker.attach(["a"])
    [first] = await broker.publish([draft("a")])
    await wait_until(lambda: len(delivered) == 1)
    await redis.set(f"{prefix}:history:bad", "not a stream")
    received = broker.messages_received
    results = await asyncio.gather(
        broker.publish([draft("a", data="lost")]),
        broker.publish([draft("bad")]),
        return_exceptions=True,
    )
    assert all(isinstance(result, BrokerUnavailable) for result in results), results
    assert int(await redis.get(f"{prefix}:seq") or 0) == first.id, "no id was taken"
    assert await redis.xlen(f"{prefix}:history:a") == 1, "nothing was stored"
    await redis.delete(f"{prefix}:history:bad")
    [after] = await broker.publish([draft("a", data="after")])
    assert after.id == first.id + 1
    await wait_until(lambda: len(delivered) == 2)
    assert [message.data for message in delivered] == ["x", "after"], "nothing was published"
    assert broker.messages_received == received + 1


async def test_a_stream_ahead_of_a_lost_sequence_gets_larger_ids_instead_of_an_error(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    a, _ = await start_broker("redis", "a")
    published = await a.publish([draft("a") for _ in range(3)])
    await a.stop()
    await redis.delete(f"{prefix}:seq")
    b, _ = await start_broker("redis", "b")  # has seen nothing: its floor is 0
    [message] = await b.publish([draft("a")])
    assert message.id > published[-1].id  # the sequence starts again above the clock


async def test_expired_tickets_leave_the_count_and_redeemed_ones_free_their_place(
    start_broker: BrokerFactory, redis: Redis, prefix: str
) -> None:
    broker, _ = await start_broker("redis", limits={"max_tickets": 1})
    await broker.tickets.issue("short", ("news",), 1)
    with pytest.raises(TooManyTickets):
        await broker.tickets.issue("refused", ("news",), 60)

    async def issued_after_expiry() -> bool:
        try:
            await broker.tickets.issue("later", ("news",), 60)
        except TooManyTickets:
            return False
        return True

    await eventually(issued_after_expiry, timeout=10)
    assert await redis.zcard(f"{prefix}:tickets") == 1
    assert await broker.tickets.redeem("later") == ("news",)
    assert await redis.zcard(f"{prefix}:tickets") == 0


async def test_directory_changes_during_an_outage_are_capped_and_rewritten_on_reconnect(
    start_broker: BrokerFactory, own_redis: RedisProcess, prefix: str
) -> None:
    a, _ = await start_broker("redis", "a", url=own_redis.url)
    a.directory.max_pending = 5
    own_redis.kill()
    await wait_until(lambda: not a.connected)
    clients = [f"c_{n}" for n in range(20)]
    for client_id in clients:
        a.directory.client_connected(client_id)
        assert len(a.directory.changes) <= 5
    a.directory.client_disconnected("c_0")
    assert a.directory.stale and not a.directory.changes
    own_redis.start()
    await wait_until(lambda: a.connected, timeout=15)
    redis = Redis.from_url(own_redis.url, protocol=2)
    try:

        async def rewritten() -> bool:
            members = await redis.smembers(f"{prefix}:clients:a")
            return {str(member, "utf-8") if isinstance(member, bytes) else member for member in members} == set(
                clients[1:]
            )

        await eventually(rewritten, timeout=10)
    finally:
        await redis.aclose()


async def test_stop_ends_every_task_even_when_a_redis_call_swallows_the_cancellation(
    start_broker: BrokerFactory,
) -> None:
    """redis-py can swallow a cancellation that lands inside a command; the upkeep task,
    cancelled while in one, must still end, so ``stop`` returns."""
    broker, _ = await start_broker("redis")
    entered = asyncio.Event()

    async def swallowing_write() -> None:
        entered.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)

    broker.directory.write = swallowing_write  # type: ignore[method-assign]
    broker.directory.client_connected("c_1")
    await asyncio.wait_for(entered.wait(), 5)
    async with asyncio.timeout(10):
        await broker.stop()
    assert not broker.connected
