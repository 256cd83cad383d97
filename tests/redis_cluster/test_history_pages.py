"""History read in pages (``Broker.history(..., limit=)``), on every broker: the pages of a
replay put together are the whole replay, with no gap and no duplicate, and say when they
are the last; a stream's replay is read that way, so a slow client holds one page."""

from __future__ import annotations

import asyncio
import socket

from sse_hub.messages.contract import Broker, History
from sse_hub.messages.message import GLOBAL_CHANNEL, Draft
from sse_hub.web.state import HUB
from tests.support.brokers import ON_EVERY_BROKER, draft, ids
from tests.support.http import HubClientFactory, open_stream, publish, stalled_subscriber
from tests.support.plugin import BrokerFactory, HubsFactory
from tests.support.waiting import wait_until

TIMEOUT = 10


async def read_pages(broker: Broker, channels: tuple[str, ...], after_id: int, limit: int) -> list[History]:
    pages = [await broker.history(channels, after_id, limit=limit)]
    while not pages[-1].complete and len(pages) < 100:
        pages.append(await broker.history(channels, pages[-1].messages[-1].id, limit=limit))
    return pages


@ON_EVERY_BROKER
async def test_pages_put_together_are_the_whole_history(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker(history={"size": 100})
    drafts: list[Draft] = []
    for n in range(30):
        drafts += [draft("a", data=f"a{n}"), draft("b", data=f"b{n}"), draft("a", "b", data=f"ab{n}")]
    drafts.append(Draft(event="message", data="all", channels=(GLOBAL_CHANNEL,)))
    published = await broker.publish(drafts)
    channels = ("a", "b", GLOBAL_CHANNEL)
    whole = await broker.history(channels, published[4].id)
    assert whole.complete
    pages = await read_pages(broker, channels, published[4].id, limit=7)
    assert [len(page.messages) for page in pages[:-1]] == [7] * (len(pages) - 1)
    assert [page.complete for page in pages] == [False] * (len(pages) - 1) + [True]
    assert [message_id for page in pages for message_id in ids(list(page.messages))] == ids(list(whole.messages))
    assert not any(page.expired for page in pages)


@ON_EVERY_BROKER
async def test_a_page_of_an_evicted_history_says_so(start_broker: BrokerFactory) -> None:
    broker, _ = await start_broker(history={"size": 5})
    published = await broker.publish([draft("a", data=str(n)) for n in range(12)])
    page = await broker.history(("a",), published[0].id, limit=2)
    assert page.expired
    assert ids(list(page.messages)) == ids(published[7:9])
    assert not page.complete


async def test_a_redis_replay_longer_than_a_page_arrives_whole_and_in_order(start_hubs: HubsFactory) -> None:
    # A page is client_buffer_bytes // max_message_bytes messages: 2 here.
    [client] = await start_hubs("redis", 1, limits={"client_buffer_bytes": 8192, "max_message_bytes": 4096})
    sent = [(await publish(client, {"channel": "p", "data": f"m{n}"}))["id"] for n in range(25)]
    async with open_stream(client, "/events/p", headers={"Last-Event-ID": sent[2]}) as stream:
        live = (await publish(client, {"channel": "p", "data": "live"}))["id"]
        received = [event.id for event in await stream.take(23, TIMEOUT)]
    assert received == [*sent[3:], live]


async def test_a_resume_told_of_old_evictions_reads_every_page_to_the_end(hub_client: HubClientFactory) -> None:
    """Global messages evicted long ago are newer than the channel's retained ones: every
    page sees them, and none of them may end the stream again."""
    client = await hub_client(history={"size": 5}, limits={"client_buffer_bytes": 8192, "max_message_bytes": 4096})
    mine = [(await publish(client, {"channel": "r", "data": f"m{n}"}))["id"] for n in range(5)]
    everyone = [(await publish(client, {"data": f"g{n}"}))["id"] for n in range(9)]
    async with open_stream(client, "/events/r", headers={"Last-Event-ID": "0"}) as stream:
        assert (await stream.next(TIMEOUT)).event == "reset"
        received = [event.id for event in await stream.take(10, TIMEOUT)]
        assert received == [*mine, *everyone[4:]]
        live = (await publish(client, {"channel": "r", "data": "live"}))["id"]
        assert (await stream.next(TIMEOUT)).id == live


async def test_a_replay_trimmed_under_a_slow_reader_ends_rather_than_skips(hub_client: HubClientFactory) -> None:
    client = await hub_client(history={"size": 60}, limits={"client_buffer_bytes": 8192, "max_message_bytes": 4096})
    hub = client.server.app[HUB]
    first = [int((await publish(client, {"channel": "t", "data": "x" * 3000}))["id"]) for _ in range(60)]
    with stalled_subscriber(client, "/events/t", last_event_id="0") as sock:
        await wait_until(lambda: any(s.messages_sent for s in hub.registry.all()), TIMEOUT)
        (subscriber,) = hub.registry.all()
        await wait_until(lambda: subscriber.replay_cursor < first[-1], TIMEOUT)
        # Everything not yet handed to the socket is trimmed away meanwhile.
        for _ in range(60):
            await publish(client, {"channel": "other", "data": "y"})
            await publish(client, {"channel": "t", "data": "z"})
        cursor = subscriber.replay_cursor
        raw = await asyncio.to_thread(read_to_end, sock)
    await wait_until(lambda: subscriber.close_reason is not None, TIMEOUT)
    assert subscriber.close_reason == "slow"
    ids = [int(line[4:]) for line in raw.decode(errors="replace").splitlines() if line.startswith("id: ")]
    assert ids == first[: len(ids)] and ids[-1] == cursor, "what was sent has no gap, and it stops there"


def read_to_end(sock: socket.socket) -> bytes:
    """The response as read until its chunked body ends (the connection may stay open)."""
    sock.settimeout(TIMEOUT)
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
