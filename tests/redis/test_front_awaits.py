"""The front path (sse_hub/web/front.py) with a broker that awaits: on Redis a plain publish
waits for its script call in the front's task, while the requests behind it on the same
connection wait their turn. The promises are those of tests/app/test_front.py on the
memory broker: answered by the front, in order, and errors as answers on a connection
that goes on."""

from __future__ import annotations

import asyncio

from tests.support.brokers import broker_section
from tests.support.front import GET_STATS, Start, connections, post, read_answer
from tests.support.processes import RedisProcess


async def test_pipelined_publishes_that_await_are_answered_in_order(
    front_hub: Start, redis_server: str, prefix: str
) -> None:
    port = await front_hub(broker=broker_section("redis", redis_server, prefix))
    ours = connections[port]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        plain = [post({"channel": f"c{n}", "data": n}) for n in range(5)]
        writer.write(b"".join([*plain, GET_STATS, post({"channel": "last", "data": "x"})]))
        receipts = [await read_answer(reader) for _ in range(5)]
        status, _, stats = await read_answer(reader)
        status_last, _, last = await read_answer(reader)
    finally:
        writer.close()
    ids = [int(body["id"]) for _, _, body in receipts]
    assert [status for status, _, _ in receipts] == [202] * 5
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert (status, stats["messages_published"]) == (200, 5)  # aiohttp answered after all five
    assert (status_last, last["channels"]) == (202, ["last"])
    assert ours.answered == 5 and ours.handed_over == 1


async def test_a_publish_that_fails_is_answered_by_the_front(
    front_hub: Start, own_redis: RedisProcess, prefix: str
) -> None:
    port = await front_hub(broker=broker_section("redis", own_redis.url, prefix))
    ours = connections[port]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(post({"channel": "news", "data": "before"}))
        assert (await read_answer(reader))[0] == 202
        own_redis.kill()
        writer.write(post({"channel": "news", "data": "lost"}) + post({"channel": "news", "data": "also"}))
        failed = [await read_answer(reader) for _ in range(2)]
    finally:
        writer.close()
    assert [(status, body["error"]) for status, _, body in failed] == [(503, "broker_unavailable")] * 2
    assert ours.answered == 3 and ours.handed_over == 0
