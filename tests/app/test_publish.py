"""``POST /broadcast``: single and batch publish, targets, fields, and every error status.

Each rule of design.md's publish contract has a test that fails when the rule is broken.
Where a test must show that a subscriber did *not* receive something, it publishes a
marker afterwards: events arrive in id order, so the next event being the marker proves
nothing came before it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sse_hub.messages.message import Draft
from sse_hub.web.state import HUB
from tests.support.http import HubClientFactory, open_stream, publish, read_raw_until


async def post_raw(
    client: TestClient[Any, Any],
    body: bytes | AsyncIterator[bytes],
    content_type: str | None = "application/json",
    path: str = "/broadcast",
) -> tuple[int, Any]:
    headers = {"Content-Type": content_type} if content_type is not None else {"Content-Type": ""}
    response = await client.post(path, data=body, headers=headers)
    assert response.content_type == "application/json", await response.text()
    return response.status, await response.json()


async def published_count(client: TestClient[Any, Any]) -> int:
    response = await client.get("/stats")
    stats = await response.json()
    return int(stats["messages_published"])


def client_id_of(connected: Any) -> str:
    return str(json.loads(connected.data)["client_id"])


# -- success ----------------------------------------------------------------------------


async def test_single_publish_answers_202_with_a_decimal_id_and_its_channels(client: TestClient[Any, Any]) -> None:
    receipt = await publish(client, {"channel": "news", "data": "hello"})
    assert set(receipt) == {"id", "channels"}
    assert receipt["channels"] == ["news"]
    assert receipt["id"].isdigit() and not receipt["id"].startswith("0")


async def test_ids_increase_in_publish_order(client: TestClient[Any, Any]) -> None:
    ids = [int((await publish(client, {"channel": "news", "data": n}))["id"]) for n in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


async def test_batch_publish_answers_one_receipt_per_message_in_order(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/news") as stream:
        receipts = await publish(
            client,
            [
                {"channel": "news", "data": "one"},
                {"channels": ["news", "sport"], "data": "two"},
                {"channel": "news", "event": "third", "data": "three"},
            ],
        )
        events = await stream.take(3)
    assert [receipt["channels"] for receipt in receipts] == [["news"], ["news", "sport"], ["news"]]
    ids = [int(receipt["id"]) for receipt in receipts]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [(event.id, event.event, event.data) for event in events] == [
        (receipts[0]["id"], "message", "one"),
        (receipts[1]["id"], "message", "two"),
        (receipts[2]["id"], "third", "three"),
    ]


async def test_a_batch_of_one_still_answers_a_list(client: TestClient[Any, Any]) -> None:
    receipts = await publish(client, [{"channel": "news", "data": 1}])
    assert isinstance(receipts, list) and receipts[0]["channels"] == ["news"]


async def test_channels_reaches_every_named_channel(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/a") as on_a, open_stream(client, "/events/b") as on_b:
        receipt = await publish(client, {"channels": ["a", "b"], "data": "both"})
        first, second = await on_a.next(), await on_b.next()
    assert receipt["channels"] == ["a", "b"]
    assert (first.id, first.data) == (second.id, second.data) == (receipt["id"], "both")


async def test_the_api_broadcast_alias_publishes_too(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/news") as stream:
        response = await client.post("/api/broadcast", json={"channel": "news", "data": "via alias"})
        receipt = await response.json()
        event = await stream.next()
    assert response.status == 202
    assert (event.id, event.data) == (receipt["id"], "via alias")


async def test_a_message_is_in_history_before_the_publisher_gets_202(client: TestClient[Any, Any]) -> None:
    receipt = await publish(client, {"channel": "news", "data": "stored"})
    previous = str(int(receipt["id"]) - 1)
    async with open_stream(client, "/events/news", headers={"Last-Event-ID": previous}) as stream:
        event = await stream.next()
    assert (event.id, event.data) == (receipt["id"], "stored")


# -- targets ----------------------------------------------------------------------------


async def test_global_broadcast_reaches_every_subscriber_whatever_its_channels(client: TestClient[Any, Any]) -> None:
    async with (
        open_stream(client, "/events/a") as on_a,
        open_stream(client, "/events/b") as on_b,
        open_stream(client, "/events?channel=c&channel=d") as on_cd,
    ):
        receipt = await publish(client, {"event": "notice", "data": {"all": True}})
        events = [await stream.next() for stream in (on_a, on_b, on_cd)]
    assert receipt["channels"] == ["*"]
    assert [(event.id, event.event, event.json()) for event in events] == [(receipt["id"], "notice", {"all": True})] * 3


@pytest.mark.parametrize("target", [{"channel": "*"}, {"channels": ["*"]}, {"channels": ["news", "*"]}])
async def test_the_global_channel_cannot_be_published_to_by_name(
    client: TestClient[Any, Any], target: dict[str, Any]
) -> None:
    status, body = await post_raw(client, json.dumps({**target, "data": 1}).encode())
    assert status == 400, body
    assert await published_count(client) == 0


async def test_channel_and_channels_together_are_rejected(client: TestClient[Any, Any]) -> None:
    status, body = await post_raw(client, b'{"channel": "a", "channels": ["b"], "data": 1}')
    assert status == 400, body
    assert await published_count(client) == 0


async def test_exclude_client_id_reaches_everyone_but_that_client(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/news") as excluded, open_stream(client, "/events/news") as other:
        excluded_id = client_id_of(excluded.parser.events[0])
        skipped = await publish(client, {"channel": "news", "data": "not for you", "exclude_client_id": excluded_id})
        marker = await publish(client, {"channel": "news", "data": "marker"})
        assert [event.id for event in await other.take(2)] == [skipped["id"], marker["id"]]
        assert (await excluded.next()).id == marker["id"]


async def test_exclude_client_id_also_applies_to_a_global_broadcast(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/a") as excluded, open_stream(client, "/events/b") as other:
        excluded_id = client_id_of(excluded.parser.events[0])
        skipped = await publish(client, {"data": "not for you", "exclude_client_id": excluded_id})
        marker = await publish(client, {"data": "marker"})
        assert [event.id for event in await other.take(2)] == [skipped["id"], marker["id"]]
        assert (await excluded.next()).id == marker["id"]


async def test_a_direct_message_reaches_only_that_client(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/news") as target, open_stream(client, "/events/news") as other:
        target_id = client_id_of(target.parser.events[0])
        receipt = await publish(client, {"client_id": target_id, "event": "dm", "data": "just you"})
        marker = await publish(client, {"channel": "news", "data": "marker"})
        direct = await target.next()
        assert (direct.id, direct.event, direct.data) == (receipt["id"], "dm", "just you")
        assert (await other.next()).id == marker["id"]
    assert receipt == {"id": receipt["id"], "channels": [], "client_id": target_id}


async def test_a_direct_message_is_not_kept_in_history(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/news") as target:
        target_id = client_id_of(target.parser.events[0])
        direct = await publish(client, {"client_id": target_id, "data": "just you"})
        assert (await target.next()).id == direct["id"]
    previous = str(int(direct["id"]) - 1)
    marker = await publish(client, {"channel": "news", "data": "marker"})
    async with open_stream(client, "/events/news", headers={"Last-Event-ID": previous}) as replay:
        assert (await replay.next_message()).id == marker["id"]


async def test_a_direct_message_to_an_unknown_client_is_404(client: TestClient[Any, Any]) -> None:
    status, body = await post_raw(client, b'{"client_id": "c_nobody", "data": 1}')
    assert status == 404
    assert set(body) == {"error", "detail"}
    assert await published_count(client) == 0


async def test_a_batch_naming_an_unknown_client_is_404_and_publishes_nothing(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/news") as stream:
        status, body = await post_raw(
            client,
            json.dumps([{"channel": "news", "data": "first"}, {"client_id": "c_nobody", "data": "second"}]).encode(),
        )
        assert status == 404, body
        marker = await publish(client, {"channel": "news", "data": "marker"})
        assert (await stream.next()).id == marker["id"]
    assert await published_count(client) == 1


# -- fields -----------------------------------------------------------------------------


@pytest.mark.parametrize("retry", [0, 5000, 86_400_000])
async def test_retry_is_sent_as_a_retry_line(client: TestClient[Any, Any], retry: int) -> None:
    async with open_stream(client, "/events/news") as stream:
        await publish(client, {"channel": "news", "data": "x", "retry": retry})
        event = await stream.next()
    assert (event.retry, event.data) == (retry, "x")


@pytest.mark.parametrize("retry", ["-1", "86400001", "5000.0", '"5"', "true", "null", "[5]", "1e3"])
async def test_retry_must_be_a_json_integer_from_0_to_86400000(client: TestClient[Any, Any], retry: str) -> None:
    body = b'{"channel": "news", "data": 1, "retry": %s}' % retry.encode()
    status, payload = await post_raw(client, body)
    if retry == "null":
        # null is "no retry", the same as leaving the field out.
        assert status == 202, payload
        return
    assert status == 400, payload
    assert await published_count(client) == 0


@pytest.mark.parametrize("name", ["a", "stock-update", "x" * 128, "ünïcødé event", "with spaces"])
async def test_an_event_name_of_1_to_128_characters_is_sent(client: TestClient[Any, Any], name: str) -> None:
    async with open_stream(client, "/events/news") as stream:
        await publish(client, {"channel": "news", "event": name, "data": 1})
        event = await stream.next()
    assert event.event == name


@pytest.mark.parametrize("name", ["", "x" * 129, "a\nb", "a\rb", "a\r\nb", "a\x00b", "\n"])
async def test_a_bad_event_name_is_400(client: TestClient[Any, Any], name: str) -> None:
    status, body = await post_raw(client, json.dumps({"channel": "news", "event": name, "data": 1}).encode())
    assert status == 400, body
    assert await published_count(client) == 0


async def test_the_default_event_name_sends_no_event_line(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/news") as stream:
        await publish(client, {"channel": "news", "data": "plain"})
        await publish(client, {"channel": "news", "event": "message", "data": "explicit"})
        events = await stream.take(2)
    assert [(event.event, event.data) for event in events] == [("message", "plain"), ("message", "explicit")]


async def test_data_is_required(client: TestClient[Any, Any]) -> None:
    status, body = await post_raw(client, b'{"channel": "news", "event": "x"}')
    assert status == 400, body


@pytest.mark.parametrize(
    ("data", "sent"),
    [
        (None, "null"),
        ({"symbol": "AAPL", "price": 182.3, "tags": ["a", "b"]}, '{"symbol":"AAPL","price":182.3,"tags":["a","b"]}'),
        ([1, [2, {}], []], "[1,[2,{}],[]]"),
        (True, "true"),
        (0, "0"),
        (-12.5, "-12.5"),
        (12345678901234567890123456789, "12345678901234567890123456789"),
        ({"text": "line\nbreak"}, '{"text":"line\\nbreak"}'),
        ({"é": "ü"}, '{"é":"ü"}'),
    ],
)
async def test_non_string_data_is_sent_as_compact_json(client: TestClient[Any, Any], data: Any, sent: str) -> None:
    async with open_stream(client, "/events/news") as stream:
        await publish(client, {"channel": "news", "data": data})
        event = await stream.next()
    assert event.data == sent
    assert json.loads(event.data) == data


@pytest.mark.parametrize(
    ("data", "received"),
    [
        ("plain text", "plain text"),
        ("", ""),
        (" leading space", " leading space"),
        ('{"looks": "like json"}', '{"looks": "like json"}'),
        ("one\ntwo", "one\ntwo"),
        ("crlf\r\nline", "crlf\nline"),
        ("cr\rline", "cr\nline"),
        ("trailing\n", "trailing\n"),
        ("\n\n", "\n\n"),
        ("x\n\nevent: injected\nid: 999\ndata: evil", "x\n\nevent: injected\nid: 999\ndata: evil"),
        ("nul\x00inside", "nul\x00inside"),
        ("separator\u2028kept\u0085too", "separator\u2028kept\u0085too"),
        ("émoji 🎉", "émoji 🎉"),
    ],
)
async def test_string_data_is_sent_verbatim_one_data_line_per_line(
    client: TestClient[Any, Any], data: str, received: str
) -> None:
    async with open_stream(client, "/events/news") as stream:
        receipt = await publish(client, {"channel": "news", "event": "text", "data": data})
        event = await stream.next()
    assert (event.id, event.event, event.data) == (receipt["id"], "text", received)


async def test_a_multi_line_payload_is_written_as_several_data_lines(client: TestClient[Any, Any]) -> None:
    await publish(client, {"channel": "news", "data": "a\r\nb\rc\nd"})
    raw = await read_raw_until(client, "/events/news", b"data: d\n\n", headers={"Last-Event-ID": "0"})
    assert b"data: a\ndata: b\ndata: c\ndata: d\n\n" in raw


# -- errors -----------------------------------------------------------------------------

BAD_BODIES = {
    "invalid JSON": b'{"channel": "news", "data": ',
    "not JSON at all": b"hello",
    "empty body": b"",
    "a JSON string": b'"just a string"',
    "a JSON number": b"42",
    "an unknown field": b'{"channel": "news", "data": 1, "colour": "red"}',
    "a bad channel name": b'{"channel": "no spaces", "data": 1}',
    "a too long channel name": b'{"channel": "%s", "data": 1}' % (b"x" * 129),
    "an empty channel name": b'{"channel": "", "data": 1}',
    "an empty channels list": b'{"channels": [], "data": 1}',
    "channels as a string": b'{"channels": "news", "data": 1}',
    "a lone surrogate in data": b'{"channel": "news", "data": "\\ud800"}',
    "a lone surrogate in nested data": b'{"channel": "news", "data": {"k": ["\\udfff"]}}',
    "a lone surrogate in an event": b'{"channel": "news", "event": "\\ud800", "data": 1}',
    "invalid UTF-8": b'{"channel": "news", "data": "\xff\xfe"}',
    "NaN": b'{"channel": "news", "data": NaN}',
    "Infinity": b'{"channel": "news", "data": [Infinity]}',
    "a float overflowing to infinity": b'{"channel": "news", "data": 1e400}',
    "a negative float overflowing": b'{"channel": "news", "data": {"x": -1e999}}',
    "an integer of 5000 digits": b'{"channel": "news", "data": %s}' % (b"9" * 5000),
    "10000 nested arrays in data": b'{"channel": "news", "data": %s}' % (b"[" * 10000 + b"]" * 10000),
    "10000 nested arrays as the body": b"[" * 10000 + b"]" * 10000,
    "10000 unclosed arrays": b"[" * 10000,
    "10000 nested objects": b'{"a":' * 10000 + b"1" + b"}" * 10000,
    "an empty batch": b"[]",
    "a batch with one bad item": b'[{"channel": "news", "data": 1}, {"channel": "news"}]',
    "a batch of non-objects": b"[1, 2]",
    "a nested batch": b'[[{"channel": "news", "data": 1}]]',
    "a direct message with channels": b'{"client_id": "c_x", "channel": "news", "data": 1}',
    "101 channels": json.dumps({"channels": [f"c{n}" for n in range(101)], "data": 1}).encode(),
    "an empty exclude_client_id": b'{"channel": "news", "data": 1, "exclude_client_id": ""}',
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_bad_input_is_a_400_json_error_and_publishes_nothing(client: TestClient[Any, Any], body: bytes) -> None:
    async with open_stream(client, "/events/news") as stream:
        status, payload = await post_raw(client, body)
        assert status == 400, payload
        assert set(payload) == {"error", "detail"}
        assert isinstance(payload["error"], str) and payload["error"]
        marker = await publish(client, {"channel": "news", "data": "marker"})
        assert (await stream.next()).id == marker["id"]
    assert await published_count(client) == 1


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "text/json", ""]
)
async def test_a_body_that_is_not_json_is_415(client: TestClient[Any, Any], content_type: str) -> None:
    status, payload = await post_raw(client, b'{"channel": "news", "data": 1}', content_type=content_type)
    assert status == 415, payload
    assert set(payload) == {"error", "detail"}


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/JSON", "application/ld+json"])
async def test_json_content_types_with_parameters_are_accepted(client: TestClient[Any, Any], content_type: str) -> None:
    status, payload = await post_raw(client, b'{"channel": "news", "data": 1}', content_type=content_type)
    assert status == 202, payload


def body_of_size(size: int) -> bytes:
    """A valid single message whose JSON body is exactly ``size`` bytes."""
    empty = b'{"channel": "news", "data": ""}'
    return empty[:-2] + b"x" * (size - len(empty)) + empty[-2:]


async def test_a_body_of_exactly_max_message_bytes_is_accepted(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_message_bytes": 1000})
    body = body_of_size(1000)
    assert len(body) == 1000
    status, payload = await post_raw(client, body)
    assert status == 202, payload


async def test_a_body_over_max_message_bytes_with_content_length_is_413(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_message_bytes": 1000})
    status, payload = await post_raw(client, body_of_size(1001))
    assert status == 413, payload
    assert set(payload) == {"error", "detail"}
    assert await published_count(client) == 0


async def test_a_chunked_body_over_max_message_bytes_is_413(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_message_bytes": 1000})
    body = body_of_size(5000)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    status, payload = await post_raw(client, chunks())
    assert status == 413, payload
    assert set(payload) == {"error", "detail"}
    assert await published_count(client) == 0


async def test_a_chunked_body_under_max_message_bytes_is_accepted(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_message_bytes": 1000})
    body = body_of_size(900)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    status, payload = await post_raw(client, chunks())
    assert status == 202, payload


async def test_max_message_bytes_bounds_the_whole_batch(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_message_bytes": 1000})
    batch = json.dumps([{"channel": "news", "data": "x" * 100}] * 10).encode()
    status, payload = await post_raw(client, batch)
    assert status == 413, payload
    assert await published_count(client) == 0


async def test_a_batch_over_max_batch_is_400_and_publishes_nothing(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_batch": 3})
    status, payload = await post_raw(client, json.dumps([{"channel": "news", "data": n} for n in range(4)]).encode())
    assert status == 400, payload
    assert set(payload) == {"error", "detail"}
    assert await published_count(client) == 0
    receipts = await publish(client, [{"channel": "news", "data": n} for n in range(3)])
    assert len(receipts) == 3


async def test_a_connection_can_publish_again_after_an_error(client: TestClient[Any, Any]) -> None:
    for _ in range(3):
        status, _payload = await post_raw(client, b"{")
        assert status == 400
        await publish(client, {"channel": "news", "data": 1})
    assert await published_count(client) == 3


async def test_get_on_broadcast_is_405_with_a_json_body(client: TestClient[Any, Any]) -> None:
    response = await client.get("/broadcast")
    payload = await response.json()
    assert response.status == 405
    assert set(payload) == {"error", "detail"}


async def test_publish_now_publishes_only_what_needs_no_await(client: TestClient[Any, Any]) -> None:
    """``Hub.publish_now`` (the front's path on the memory broker): a message to a channel
    goes out at once; a direct message to a client this instance does not hold needs the
    directory (an await), so it is None and nothing is published."""
    hub = client.server.app[HUB]
    [message] = hub.publish_now([Draft("message", "x", ("news",))]) or []
    assert message.channels == ("news",) and hub.counters.messages_published == 1
    assert hub.publish_now([Draft("message", "x", (), client_id="nobody")]) is None
    assert hub.counters.messages_published == 1
    assert await published_count(client) == 1
