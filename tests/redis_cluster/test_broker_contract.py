"""The Broker contract, run against every broker: the in-memory one, Redis (a real
redis-server, a fresh key prefix per test) and Redis Cluster (a real 3-master cluster,
``tests.support.redis_cluster``; the fresh prefix puts each test on its own slot). A
broker delivers at least the messages of attached channels, global ones and direct ones
for its clients, so every test attaches the channels it expects to receive."""

from __future__ import annotations

import asyncio

import pytest

from sse_hub.errors import BrokerUnavailable, TooManyTickets
from sse_hub.messages.message import Draft, Message
from tests.support.brokers import ON_EVERY_BROKER, draft, ids
from tests.support.plugin import BrokerFactory
from tests.support.waiting import eventually, wait_until

# Every test here, once per broker: ``start_broker()`` starts one of that kind.
pytestmark = ON_EVERY_BROKER


def fields(message: Message) -> tuple[object, ...]:
    return (
        message.id,
        message.event,
        message.data,
        message.channels,
        message.retry_ms,
        message.client_id,
        message.exclude_client_id,
    )


async def test_publish_numbers_messages_in_publish_order(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker()
    first = await broker.publish([draft("a")])
    second = await broker.publish([draft("b")])
    third = await broker.publish([draft("a")])
    assert ids(first) < ids(second) < ids(third)
    assert first[0].id >= 1


async def test_a_batch_gives_each_message_its_own_increasing_id(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker()
    messages = await broker.publish([draft("a", data=str(n)) for n in range(5)])
    assert [message.data for message in messages] == ["0", "1", "2", "3", "4"]
    assert ids(messages) == sorted(set(ids(messages)))
    assert len(messages) == 5


async def test_deliver_receives_every_message_once_in_id_order(start_broker: BrokerFactory) -> None:
    broker, delivered = await start_broker()
    await broker.attach(["a", "b", "end"])
    published: list[Message] = []
    for results in await asyncio.gather(*(broker.publish([draft("a"), draft("b", "*")]) for _ in range(10))):
        published.extend(results)
    await wait_until(lambda: len(delivered) >= len(published))
    assert ids(delivered) == sorted(ids(published))
    await broker.publish([draft("end")])
    await wait_until(lambda: delivered[-1].channels == ("end",))
    assert len(delivered) == len(published) + 1, "nothing was delivered twice"


async def test_a_message_keeps_every_field_through_the_broker(start_broker: BrokerFactory) -> None:
    broker, delivered = await start_broker()
    await broker.attach(["a"])
    sent = Draft(
        event="update",
        data='line 1\r\nline 2\rline 3\n\x00 "quoted" \u2028 é',
        channels=("a", "b"),
        retry_ms=5000,
        exclude_client_id="c_someone",
    )
    [message] = await broker.publish([sent])
    await wait_until(lambda: bool(delivered))
    [history_copy] = (await broker.history(["a"], 0)).messages
    assert fields(delivered[0]) == fields(history_copy) == fields(message)
    assert delivered[0].chunk == message.chunk


async def test_history_returns_the_messages_newer_than_the_given_id(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker()
    messages = await broker.publish([draft("a", data=str(n)) for n in range(4)])
    await broker.publish([draft("other")])
    history = await broker.history(["a"], messages[1].id)
    assert ids(list(history.messages)) == ids(messages[2:])
    assert [message.data for message in history.messages] == ["2", "3"]
    assert not history.expired
    assert (await broker.history(["a"], messages[-1].id)).messages == []


async def test_history_merges_channels_in_id_order_and_keeps_each_message_once(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker()
    published = await broker.publish([draft("a"), draft("a", "b"), draft("b"), draft("c"), draft("b", "a")])
    history = await broker.history(["a", "b"], 0)
    assert ids(list(history.messages)) == [published[i].id for i in (0, 1, 2, 4)]


async def test_history_of_a_channel_never_published_to_is_empty(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker()
    await broker.publish([draft("a")])
    history = await broker.history(["nothing-here"], 0)
    assert (list(history.messages), history.expired) == ([], False)


async def test_history_keeps_the_newest_messages_and_reports_eviction(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker(history={"size": 3})
    published = await broker.publish([draft("a", data=str(n)) for n in range(5)])
    from_start = await broker.history(["a"], 0)
    assert ids(list(from_start.messages)) == ids(published[2:])
    assert from_start.expired, "messages 1 and 2 are newer than 0 and gone"
    after_evicted = await broker.history(["a"], published[1].id)
    assert ids(list(after_evicted.messages)) == ids(published[2:])
    assert not after_evicted.expired, "only messages up to the given id were evicted"


async def test_eviction_from_one_channel_does_not_expire_another(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker(history={"size": 2})
    kept = await broker.publish([draft("quiet")])
    await broker.publish([draft("busy") for _ in range(5)])
    history = await broker.history(["quiet"], 0)
    assert (ids(list(history.messages)), history.expired) == (ids(kept), False)
    assert (await broker.history(["quiet", "busy"], 0)).expired


async def test_history_of_size_zero_keeps_nothing_but_knows_what_was_lost(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker(history={"size": 0})
    [first] = await broker.publish([draft("a")])
    [second] = await broker.publish([draft("a")])
    history = await broker.history(["a"], first.id)
    assert (list(history.messages), history.expired, history.last_id) == ([], True, second.id)
    assert not (await broker.history(["a"], second.id)).expired


async def test_global_messages_are_kept_under_the_star_channel(start_broker: BrokerFactory) -> None:
    broker, delivered = await start_broker()
    [message] = await broker.publish([draft("*", data="to all")])
    assert message.channels == ("*",)
    history = await broker.history(["a", "*"], 0)
    assert [item.data for item in history.messages] == ["to all"]
    assert (await broker.history(["a"], 0)).messages == []
    await wait_until(lambda: bool(delivered))
    assert delivered[0].channels == ("*",)


async def test_direct_messages_are_delivered_but_not_stored(start_broker: BrokerFactory) -> None:
    broker, delivered = await start_broker()
    start_broker.directory(broker).client_connected("c_one")
    [message] = await broker.publish([draft(data="just you", client_id="c_one")])
    assert message.channels == ()
    await wait_until(lambda: bool(delivered))
    assert (delivered[0].client_id, delivered[0].data) == ("c_one", "just you")
    history = await broker.history(["a", "*"], 0)
    assert (list(history.messages), history.expired, history.last_id) == ([], False, message.id)


async def test_history_reports_the_last_published_id(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker()
    assert (await broker.history(["a"], 0)).last_id == 0
    await broker.publish([draft("a")])
    [last] = await broker.publish([draft("b")])
    assert (await broker.history(["a"], 0)).last_id == last.id


async def test_a_stopped_broker_is_not_connected_and_refuses_to_publish(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker()
    assert broker.connected
    await broker.stop()
    assert not broker.connected
    with pytest.raises(BrokerUnavailable):
        await broker.publish([draft("a")])


async def test_a_ticket_is_redeemed_once(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker()
    tickets = start_broker.tickets(broker)
    await tickets.issue("t-1", ("news", "stocks.*"), 60)
    assert await tickets.redeem("t-1") == ("news", "stocks.*")
    assert await tickets.redeem("t-1") is None
    assert await tickets.redeem("never-issued") is None


async def test_a_channel_attached_now_receives_what_is_published_next(start_broker: BrokerFactory) -> None:
    broker, delivered = await start_broker()
    await broker.attach(["late"])
    [message] = await broker.publish([draft("late")])
    await wait_until(lambda: bool(delivered))
    assert ids(delivered) == [message.id]
    broker.detach(["late"])


async def test_history_of_a_channel_with_no_publish_for_its_ttl_is_dropped_and_reported(
    start_broker: BrokerFactory,
) -> None:
    broker, _ = await start_broker(history={"ttl_seconds": 1})
    first, last = await broker.publish([draft("a"), draft("a")])

    async def dropped() -> bool:
        return not (await broker.history(["a"], 0)).messages

    await eventually(dropped, timeout=10)
    gone = await broker.history(["a"], first.id)
    assert gone.expired, "a resume into a dropped history gets reset, never silent loss"
    assert not (await broker.history(["a"], last.id)).expired, "nothing newer than the last id was lost"
    [again] = await broker.publish([draft("a")])
    recreated = await broker.history(["a"], first.id)
    assert (ids(list(recreated.messages)), recreated.expired) == ([again.id], True)
    assert not (await broker.history(["a"], last.id)).expired


async def test_past_max_tickets_issuing_is_refused_until_one_is_redeemed(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker(limits={"max_tickets": 2})
    tickets = start_broker.tickets(broker)
    await tickets.issue("t-1", ("news",), 60)
    await tickets.issue("t-2", ("news",), 60)
    with pytest.raises(TooManyTickets):
        await tickets.issue("t-3", ("news",), 60)
    assert await tickets.redeem("t-1") == ("news",)
    await tickets.issue("t-3", ("news",), 60)
    assert await tickets.redeem("t-3") == ("news",)
