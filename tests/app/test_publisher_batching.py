"""``Publisher.publish`` batches by itself (``sse_hub/client/batcher.py``), against the real
app: requests are counted at the hub, from its access log (one line per ``POST /broadcast``
with its status), and each caller's receipt is checked against what the hub stored. A
request is held in flight, where a test needs one, by a session of one connection that an
open stream occupies (``held_session``): the publish waits for that connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from sse_hub.client import Publisher, PublishError
from sse_hub.web.state import HUB
from tests.support.http import HubClientFactory
from tests.support.waiting import wait_until

BROADCAST = '"POST /broadcast HTTP/1.1" '


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    return caplog


def broadcast_statuses(caplog: pytest.LogCaptureFixture) -> list[int]:
    """The status of every ``POST /broadcast`` the hub answered, in order."""
    lines = [record.getMessage() for record in caplog.records if record.name == "aiohttp.access"]
    return [int(line.split(BROADCAST, 1)[1][:3]) for line in lines if BROADCAST in line]


async def answered(caplog: pytest.LogCaptureFixture, requests: int) -> list[int]:
    # aiohttp logs a request after its answer went out: the caller may be ahead of the log.
    await wait_until(lambda: len(broadcast_statuses(caplog)) >= requests)
    return broadcast_statuses(caplog)


@asynccontextmanager
async def held_session(client: TestClient[Any, Any]) -> AsyncIterator[tuple[aiohttp.ClientSession, asyncio.Event]]:
    """A session of one connection, taken by an open stream until ``release`` is set: a
    publish through it is in flight (sent by the batcher, unanswered) until then."""
    release = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        stream = await session.get(client.make_url("/events/holder"))

        async def hold() -> None:
            await release.wait()
            stream.close()  # frees the connection for the publish waiting on it

        holder = asyncio.create_task(hold())
        try:
            yield session, release
        finally:
            release.set()
            await holder


async def stored(client: TestClient[Any, Any], channel: str) -> dict[str, str]:
    """What the hub holds on ``channel``: data by id."""
    history = await client.app[HUB].broker.history((channel,), 0)
    return {str(message.id): message.data for message in history.messages}


async def test_concurrent_publishes_share_one_request_and_each_caller_gets_its_own_receipt(
    client: TestClient[Any, Any], access_log: pytest.LogCaptureFixture
) -> None:
    async with Publisher(str(client.make_url(""))) as publisher:
        receipts = await asyncio.gather(*(publisher.publish(f"m{n}", channels=["news"]) for n in range(50)))
    assert await answered(access_log, 1) == [202]
    assert await stored(client, "news") == {receipt["id"]: f"m{n}" for n, receipt in enumerate(receipts)}
    # Submission order across tasks is the order of the ids.
    assert [int(receipt["id"]) for receipt in receipts] == sorted(int(receipt["id"]) for receipt in receipts)


async def test_a_bad_message_gets_its_own_error_and_the_others_their_receipts(
    client: TestClient[Any, Any], access_log: pytest.LogCaptureFixture
) -> None:
    def send(publisher: Publisher, n: int) -> Any:
        if n == 3:
            return publisher.publish("x", channels=["no spaces"])
        if n == 7:
            return publisher.publish("x", client_id="c_nobody")
        return publisher.publish(f"m{n}", channels=["news"])

    async with Publisher(str(client.make_url(""))) as publisher:
        results = await asyncio.gather(*(send(publisher, n) for n in range(10)), return_exceptions=True)
    bad_channel, unknown_client = results[3], results[7]
    assert isinstance(bad_channel, PublishError) and (bad_channel.status, bad_channel.error) == (400, "bad_request")
    assert isinstance(unknown_client, PublishError) and unknown_client.error == "unknown_client"
    receipts = {n: result for n, result in enumerate(results) if isinstance(result, dict)}
    assert sorted(receipts) == [0, 1, 2, 4, 5, 6, 8, 9]
    assert await stored(client, "news") == {receipt["id"]: f"m{n}" for n, receipt in receipts.items()}
    statuses = await answered(access_log, 2)
    assert statuses[0] == 400 and statuses.count(202) >= 2  # refused whole, then split


async def test_a_batch_is_split_before_its_body_passes_max_body_bytes(
    hub_client: HubClientFactory, access_log: pytest.LogCaptureFixture
) -> None:
    client = await hub_client(limits={"max_message_bytes": 2000})
    async with Publisher(str(client.make_url("")), max_body_bytes=2000) as publisher:
        receipts = await asyncio.gather(*(publisher.publish(str(n) * 500, channels=["news"]) for n in range(10)))
    assert len(await stored(client, "news")) == len(receipts) == 10
    # About 530 bytes a message: three to a body, never a 413 and a split after it.
    assert await answered(access_log, 4) == [202] * 4


async def test_max_batch_one_sends_one_request_per_message(
    client: TestClient[Any, Any], access_log: pytest.LogCaptureFixture
) -> None:
    async with Publisher(str(client.make_url("")), max_batch=1) as publisher:
        receipts = await asyncio.gather(*(publisher.publish(f"m{n}", channels=["news"]) for n in range(10)))
    assert len({receipt["id"] for receipt in receipts}) == 10
    assert await answered(access_log, 10) == [202] * 10


async def test_a_caller_cancelled_while_waiting_is_not_published_and_the_others_are(
    client: TestClient[Any, Any], access_log: pytest.LogCaptureFixture
) -> None:
    async with held_session(client) as (session, release):
        publisher = Publisher(str(client.make_url("")), session=session, linger_ms=60_000)
        try:
            first = asyncio.create_task(publisher.publish("m0", channels=["news"]))
            await wait_until(lambda: publisher.in_flight == 1)  # m0's request, held
            tasks = [asyncio.create_task(publisher.publish(f"m{n}", channels=["news"])) for n in range(1, 6)]
            await wait_until(lambda: publisher.waiting == 5)
            tasks[2].cancel()
            release.set()
            await first  # the batch behind it now lingers a minute
        finally:
            await publisher.aclose()  # sends what waits, without the minute's linger
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    expected = {result["id"]: f"m{n}" for n, result in enumerate(results, 1) if isinstance(result, dict)}
    assert await stored(client, "news") == {first.result()["id"]: "m0", **expected} and len(expected) == 4
    assert await answered(access_log, 2) == [202, 202]


async def test_a_lone_publisher_awaiting_each_publish_sends_it_at_once_in_a_request_of_its_own(
    client: TestClient[Any, Any], access_log: pytest.LogCaptureFixture
) -> None:
    # A linger of a minute, which only a batch behind a request in flight may wait: a
    # publish that finds none in flight goes out at once, else this would time out.
    async with Publisher(str(client.make_url("")), linger_ms=60_000) as publisher, asyncio.timeout(10):
        receipts = [await publisher.publish(f"m{n}", channels=["news"]) for n in range(5)]
    assert await stored(client, "news") == {receipt["id"]: f"m{n}" for n, receipt in enumerate(receipts)}
    assert await answered(access_log, 5) == [202] * 5


async def test_publishes_made_while_a_request_is_in_flight_go_out_together_once_it_is_answered(
    client: TestClient[Any, Any], access_log: pytest.LogCaptureFixture
) -> None:
    async with (
        held_session(client) as (session, release),
        Publisher(str(client.make_url("")), session=session) as publisher,
    ):
        first = asyncio.create_task(publisher.publish("m0", channels=["news"]))
        await wait_until(lambda: publisher.in_flight == 1)  # m0's request, held
        later = [asyncio.create_task(publisher.publish(f"m{n}", channels=["news"])) for n in range(1, 11)]
        await wait_until(lambda: publisher.waiting == 10)  # they wait, none is sent alone
        release.set()
        receipts = await asyncio.gather(first, *later)
    assert await stored(client, "news") == {receipt["id"]: f"m{n}" for n, receipt in enumerate(receipts)}
    assert [int(receipt["id"]) for receipt in receipts] == sorted(int(receipt["id"]) for receipt in receipts)
    assert await answered(access_log, 2) == [202, 202]


async def test_tasks_awaiting_each_publish_in_turn_share_one_request_per_round(
    client: TestClient[Any, Any], access_log: pytest.LogCaptureFixture
) -> None:
    async def publish_in_turn(publisher: Publisher, task: int) -> None:
        for n in range(10):
            await publisher.publish(f"t{task}-{n}", channels=["news"])

    async with Publisher(str(client.make_url(""))) as publisher:
        await asyncio.gather(*(publish_in_turn(publisher, task) for task in range(3)))
    assert len(await stored(client, "news")) == 30
    # Answered together, the three publish again in one loop iteration: one request.
    assert await answered(access_log, 10) == [202] * 10


async def test_a_batch_holds_at_most_max_batch_messages(
    client: TestClient[Any, Any], access_log: pytest.LogCaptureFixture
) -> None:
    async with Publisher(str(client.make_url("")), max_batch=4) as publisher:
        receipts = await asyncio.gather(*(publisher.publish(f"m{n}", channels=["news"]) for n in range(10)))
    assert await stored(client, "news") == {receipt["id"]: f"m{n}" for n, receipt in enumerate(receipts)}
    assert await answered(access_log, 3) == [202] * 3
