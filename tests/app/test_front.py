"""The front protocol (sse_hub/web/front.py): plain publishes answered below aiohttp, the rest
by aiohttp, on the same connection, in order.

The hub runs in this process behind ``FrontSite`` (``tests/support/front.py``), so the
tests can read ``FrontProtocol``'s counters; the drain test runs the real process
(tests/e2e/test_front.py), and ``tests/redis/test_front_awaits.py`` the publishes that
await their broker.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.front import GET_STATS, GOOD, READ_TIMEOUT, Start, connections, post, read_answer


async def test_pipelined_requests_are_answered_in_order_by_both(front_hub: Start) -> None:
    port = await front_hub()
    ours = connections[port]
    answered, handed_over = ours.answered, ours.handed_over
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        plain = [post({"channel": f"c{n}", "data": n}) for n in range(3)]
        writer.write(b"".join([*plain, GET_STATS, post({"channel": "last", "data": "x"})]))
        receipts = [await read_answer(reader) for _ in range(3)]
        first = int(receipts[0][2]["id"])
        assert [(status, body["id"]) for status, _, body in receipts] == [(202, str(first + n)) for n in range(3)]
        status, _, stats = await read_answer(reader)
        assert (status, stats["messages_published"]) == (200, 3)
        status, _, last = await read_answer(reader)
        assert (status, last["id"], last["channels"]) == (202, str(first + 3), ["last"])
    finally:
        writer.close()
    assert ours.answered - answered == 3
    assert ours.handed_over - handed_over == 1


async def test_a_plain_answer_has_the_headers_aiohttp_gives(front_hub: Start) -> None:
    port = await front_hub(server={"cors_origins": ["https://app.example"]})
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(post({"channel": "news", "data": "hi"}, "/api/broadcast"))
        status, plain, body = await read_answer(reader)
        writer.write(post({"channel": "news", "data": "hi"}, "/broadcast", "X-A: 1", "X-A: 2"))  # not plain
        status2, by_aiohttp, _ = await read_answer(reader)
    finally:
        writer.close()
    assert (status, status2, body["channels"]) == (202, 202, ["news"])
    for name in ("content-type", "server", "vary"):
        assert plain[name] == by_aiohttp[name], name


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (post({"channel": "news", "data": "x"}, "/broadcast", "Authorization: Bearer wrong"), 403),
        (post({"channel": "news", "data": "x"}), 401),
        (post({"channel": "news", "data": "x", "extra": 1}, "/broadcast", GOOD), 400),
        (post({"channel": "news", "data": "x" * 2000}, "/broadcast", GOOD), 413),
        (post({"channel": "news", "data": "x"}, "/broadcast", GOOD).replace(b"application/json", b"text/plain"), 415),
        (post({"client_id": "nobody", "data": "x"}, "/broadcast", GOOD), 404),
    ],
    ids=["wrong-token", "no-token", "invalid-body", "too-large", "media-type", "unknown-client"],
)
async def test_errors_are_aiohttps_and_the_connection_goes_on(
    front_hub: Start, request_bytes: bytes, status: int
) -> None:
    port = await front_hub(auth={"publish_tokens": ["good"]}, limits={"max_message_bytes": 1000})
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_bytes + post({"channel": "news", "data": "ok"}, "/broadcast", GOOD))
        got, _, error = await read_answer(reader)
        assert (got, set(error)) == (status, {"error", "detail"}), error
        got, _, ok = await read_answer(reader)
        assert (got, ok["channels"]) == (202, ["news"])
    finally:
        writer.close()


async def test_an_idle_connection_is_closed_after_the_header_timeout(front_hub: Start) -> None:
    port = await front_hub(server={"request_header_timeout": 0.5})
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(post({"channel": "news", "data": "x"}))
        assert (await read_answer(reader))[0] == 202
        async with asyncio.timeout(READ_TIMEOUT):
            assert await reader.read() == b""  # the server closed it
    finally:
        writer.close()


@pytest.mark.parametrize("partial", [b"P", b"POST /broadcast HTTP/1.1\r\nHost: x\r\nContent-Type: appl"])
async def test_a_plain_head_that_never_ends_is_dropped_by_the_front(front_hub: Start, partial: bytes) -> None:
    """Kept, not handed over: aiohttp's header timeout would start again at the handover."""
    port = await front_hub(server={"request_header_timeout": 0.5})
    handed_over = connections[port].handed_over
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(partial)
        async with asyncio.timeout(READ_TIMEOUT):
            assert await reader.read() == b""
    finally:
        writer.close()
    assert connections[port].handed_over == handed_over


async def test_a_head_split_over_writes_is_still_answered(front_hub: Start) -> None:
    port = await front_hub()
    request = post({"channel": "news", "data": "split"})
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for piece in (request[:3], request[3:30], request[30:]):
            writer.write(piece)
            await writer.drain()
        status, _, body = await read_answer(reader)
    finally:
        writer.close()
    assert (status, body["channels"]) == (202, ["news"])
