"""``POST /broadcast`` with an NDJSON body: each line published as soon as it arrives, the
summary, a bad line ending the request with its ``line`` and counts, silence (408), the
bound on open publish streams, and publisher auth.

Bodies go out chunk by chunk over a raw socket (``ChunkedPost``), so a test decides when
each line is sent and can read the answer before the body ends. To show that a line was
*not* published, a test publishes a marker afterwards: events arrive in id order, so the
next event being the marker proves nothing came before it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sse_hub.client import Publisher, PublishError
from tests.support.http import HubClientFactory, open_stream, publish
from tests.support.openapi import contract_of
from tests.support.raw_http import RawReply
from tests.support.tokens import SECRET

TIMEOUT = 5


class ChunkedPost:
    """An NDJSON ``POST /broadcast`` sent one chunk at a time (RFC 9112, 7.1)."""

    def __init__(self, reply_task: asyncio.Task[RawReply], writer: asyncio.StreamWriter) -> None:
        self._reply = reply_task
        self._writer = writer

    @classmethod
    async def start(cls, client: TestClient[Any, Any], query: str = "", token: str | None = None) -> ChunkedPost:
        reader, writer = await asyncio.open_connection("127.0.0.1", int(client.port))
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        writer.write(
            f"POST /broadcast{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n"
            f"Transfer-Encoding: chunked\r\n{auth}Connection: close\r\n\r\n".encode()
        )
        return cls(asyncio.create_task(read_reply(reader, writer)), writer)

    async def send(self, data: bytes | dict[str, Any]) -> None:
        chunk = data if isinstance(data, bytes) else json.dumps(data).encode() + b"\n"
        self._writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await self._writer.drain()

    async def answer(self, finish: bool = True) -> tuple[int, dict[str, Any], dict[str, str]]:
        """End the body (unless ``finish`` is False) and read the status, body and headers."""
        if finish:
            self._writer.write(b"0\r\n\r\n")
        async with asyncio.timeout(TIMEOUT):
            reply = await self._reply
        body = await reply.json()
        reply.close()
        return reply.status, body, reply.headers

    def close(self) -> None:
        self._reply.cancel()
        self._writer.close()


async def read_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> RawReply:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").removesuffix("\r\n\r\n").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return RawReply(reader, writer, int(status_line.split(" ")[1]), headers)


async def post_lines(client: TestClient[Any, Any], body: bytes, query: str = "") -> tuple[int, Any]:
    response = await client.post(f"/broadcast{query}", data=body, headers={"Content-Type": "application/x-ndjson"})
    return response.status, await response.json()


def line(**fields: Any) -> bytes:
    return json.dumps(fields).encode() + b"\n"


# -- lines as they arrive ---------------------------------------------------------------


async def test_a_subscriber_receives_line_one_before_line_two_is_sent(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/job") as stream:
        post = await ChunkedPost.start(client)
        try:
            await post.send({"channel": "job", "data": "one"})
            first = await stream.next_message()
            await post.send({"channel": "job", "data": "two"})
            second = await stream.next_message()
            status, body, _ = await post.answer()
        finally:
            post.close()
    assert (first.data, second.data) == ("one", "two")
    assert (status, body) == (202, {"published": 2, "first_id": first.id, "last_id": second.id})


async def test_lines_split_across_chunks_are_published_once_whole(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/job") as stream:
        post = await ChunkedPost.start(client)
        try:
            await post.send(b'{"channel": "job", "da')
            await post.send(b'ta": "whole"}\n{"channel": "job", "data": "last, without a line end"}')
            status, body, _ = await post.answer()
        finally:
            post.close()
        events = await stream.take(2)
    assert [event.data for event in events] == ["whole", "last, without a line end"]
    assert (status, body["published"]) == (202, 2)


async def test_blank_lines_and_crlf_line_ends_are_accepted(client: TestClient[Any, Any]) -> None:
    body = b'\n  \r\n{"channel": "job", "data": 1}\r\n\n{"channel": "job", "data": 2}\n\n'
    status, answer = await post_lines(client, body)
    assert (status, answer["published"]) == (202, 2)
    assert int(answer["last_id"]) > int(answer["first_id"])


async def test_an_empty_body_publishes_nothing_and_says_so(client: TestClient[Any, Any]) -> None:
    assert await post_lines(client, b"") == (202, {"published": 0, "first_id": None, "last_id": None})


async def test_lines_that_name_no_target_go_to_the_channel_of_the_query(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/job") as stream, open_stream(client, "/events/other") as other:
        body = line(data="default") + line(channel="other", data="named") + line(data="last", final=True)
        status, answer = await post_lines(client, body, "?channel=job")
        events = await stream.take(2)
        named = await other.next_message()
    assert (status, answer["published"]) == (202, 3)
    assert [event.data for event in events] == ["default", "last"]
    assert named.data == "named"


async def test_an_invalid_channel_in_the_query_is_refused_before_any_line(client: TestClient[Any, Any]) -> None:
    status, answer = await post_lines(client, line(data="x"), "?channel=no%20spaces")
    assert (status, answer["error"]) == (400, "invalid_channel")
    assert "published" not in answer


# -- a bad line ends the request ----------------------------------------------------------


BAD_LINES = {
    "invalid JSON": (b'{"channel": "job", "data": \n', 400, "bad_request"),
    "invalid fields": (line(channel="job", data=1, colour="red"), 400, "bad_request"),
    "a final line without a channel": (line(data=1, final=True), 400, "bad_request"),
    "a line over max_message_bytes": (line(channel="job", data="x" * 300), 413, "payload_too_large"),
}


@pytest.mark.parametrize("bad", BAD_LINES.values(), ids=BAD_LINES.keys())
async def test_a_bad_line_stops_the_request_with_its_number_and_the_counts(
    hub_client: HubClientFactory, bad: tuple[bytes, int, str]
) -> None:
    bad_line, status, code = bad
    client = await hub_client(limits={"max_message_bytes": 256})
    async with open_stream(client, "/events/job") as stream:
        post = await ChunkedPost.start(client)
        try:
            await post.send(line(channel="job", data="one") + b"\n" + line(channel="job", data="two"))
            await post.send(bad_line + line(channel="job", data="after, same chunk"))
            answered, body, _ = await post.answer(finish=False)
        finally:
            post.close()
        earlier = await stream.take(2)
        await publish(client, {"channel": "job", "data": "marker"})
        marker = await stream.next_message()
    assert (answered, body["error"], body["line"], body["published"]) == (status, code, 4, 2)
    assert (body["first_id"], body["last_id"]) == (earlier[0].id, earlier[1].id)
    assert "detail" in body
    assert [event.data for event in earlier] == ["one", "two"]
    assert marker.data == "marker"


async def test_a_line_to_an_ended_channel_is_refused_with_409(client: TestClient[Any, Any]) -> None:
    body = line(channel="job", data="last", final=True) + line(channel="job", data="too late")
    status, answer = await post_lines(client, body)
    assert status == 409, answer
    assert answer == {
        "error": "channel_finished",
        "detail": {"channel": "job"},
        "line": 2,
        "published": 1,
        "first_id": answer["first_id"],
        "last_id": answer["first_id"],
    }
    (await contract_of(client)).check_response("/broadcast", "post", 409, answer)


async def test_the_summary_and_the_ndjson_body_are_in_the_openapi_document(client: TestClient[Any, Any]) -> None:
    status, answer = await post_lines(client, line(channel="job", data="one") + line(channel="job", data="two"))
    contract = await contract_of(client)
    contract.check_response("/broadcast", "post", status, answer)
    contract.check_schema("PublishStreamSummary", answer)
    request_body = contract.document["paths"]["/broadcast"]["post"]["requestBody"]["content"]
    assert set(request_body) == {"application/json", "application/x-ndjson"}


async def test_a_silent_stream_is_answered_408_with_its_counts(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"publish_stream_idle_seconds": 0.2})
    post = await ChunkedPost.start(client)
    try:
        await post.send(line(channel="job", data="one"))
        status, body, _ = await post.answer(finish=False)
    finally:
        post.close()
    assert (status, body["error"], body["published"], body["line"]) == (408, "request_timeout", 1, 2)


# -- limits and auth ------------------------------------------------------------------------


async def test_open_publish_streams_are_bounded_by_max_publish_streams(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_publish_streams": 1})
    async with open_stream(client, "/events/job") as stream:
        post = await ChunkedPost.start(client)
        try:
            await post.send(line(channel="job", data="holding the slot"))
            await stream.next_message()  # the first stream is open and counted
            refused = await client.post(
                "/broadcast", data=line(channel="job", data="x"), headers={"Content-Type": "application/x-ndjson"}
            )
            assert refused.status == 503
            assert refused.headers["Retry-After"] == "5"
            assert (await refused.json())["error"] == "too_many_publish_streams"
            status, _, _ = await post.answer()
        finally:
            post.close()
    assert status == 202
    assert (await post_lines(client, line(channel="job", data="the slot is free")))[0] == 202


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("wrong", 403), (SECRET, 202)])
async def test_a_publish_stream_needs_a_publish_token_as_the_json_form_does(
    hub_client: HubClientFactory, token: str | None, status: int
) -> None:
    client = await hub_client(auth={"publish_tokens": [SECRET]})
    post = await ChunkedPost.start(client, token=token)
    try:
        await post.send(line(channel="job", data="x"))
        answered, body, _ = await post.answer()
    finally:
        post.close()
    assert answered == status, body


# -- the Python client: Publisher.stream ----------------------------------------------------


def base_url(client: TestClient[Any, Any]) -> str:
    return str(client.make_url(""))


async def test_publisher_stream_sends_each_message_before_the_next_and_ends_the_channel(
    client: TestClient[Any, Any],
) -> None:
    async with open_stream(client, "/events/job") as stream, Publisher(base_url(client)) as publisher:
        async with publisher.stream("job") as job:
            await job.send("one")
            first = await stream.next_message()
            await job.send({"n": 2}, event="progress")
            second = await stream.next_message()
        final = await stream.next_message()
    assert [(e.event, e.data) for e in (first, second, final)] == [
        ("message", "one"),
        ("progress", '{"n":2}'),
        ("message", ""),
    ]
    assert job.summary == {"published": 3, "first_id": first.id, "last_id": final.id}


async def test_publisher_stream_ended_with_end_sends_no_second_final_message(client: TestClient[Any, Any]) -> None:
    async with Publisher(base_url(client)) as publisher:
        async with publisher.stream("job") as job:
            await job.send("one")
            await job.end("last")
            with pytest.raises(RuntimeError, match="has ended"):
                await job.send("too late")
    assert job.summary is not None and job.summary["published"] == 2


async def test_publisher_stream_raises_the_hubs_refusal_with_the_line(client: TestClient[Any, Any]) -> None:
    async with Publisher(base_url(client)) as publisher:
        with pytest.raises(PublishError) as refused:
            async with publisher.stream("job") as job:
                await job.send("fine")
                await job.send("bad", event="two\nlines")
    assert refused.value.status == 400
    assert isinstance(refused.value.body, dict)
    assert (refused.value.body["line"], refused.value.body["published"]) == (2, 1)


async def test_an_exception_in_the_block_sends_no_final_message(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/job") as stream, Publisher(base_url(client)) as publisher:
        with pytest.raises(LookupError):
            async with publisher.stream("job") as job:
                await job.send("one")
                await stream.next_message()
                raise LookupError("the producer failed")
        await publish(client, {"channel": "job", "data": "marker"})
        after = await stream.next_message()
    assert after.data == "marker"
    assert job.summary is None
