"""The SSE wire format: exact bytes for a table of cases, and property tests that the spec
parser in ``tests/support/sse_client.py`` reads back what ``sse_hub.messages.sse`` wrote,
however the bytes are split on the way, and through the real HTTP app."""

from __future__ import annotations

import codecs
import itertools
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sse_hub.messages import sse
from tests.support.http import open_stream, publish
from tests.support.sse_client import Event, EventStream, SseParser, parse

# Bounded so the file runs in seconds; no deadline, since CI machines stall at times.
WIRE = settings(max_examples=300, deadline=None)
# Each HTTP example is a real publish and a real read, so fewer of them; the stream is
# opened once by a function-scoped fixture and shared by every example on purpose.
HTTP = settings(
    WIRE, max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def client_view(data: str) -> str:
    """What an EventSource hands to ``onmessage``: the spec joins ``data:`` lines with LF,
    so CRLF and CR in a payload arrive as LF. Everything else arrives unchanged."""
    return re.sub(r"\r\n|\r", "\n", data)


# -- exact bytes ----------------------------------------------------------------------

LONG_LINE = "x" * 100_000

ENCODE_CASES: list[tuple[str, dict[str, Any], bytes]] = [
    ("plain", {"data": "hello"}, b"data: hello\n\n"),
    ("lf", {"data": "a\nb"}, b"data: a\ndata: b\n\n"),
    ("cr", {"data": "a\rb"}, b"data: a\ndata: b\n\n"),
    ("crlf is one line break", {"data": "a\r\nb"}, b"data: a\ndata: b\n\n"),
    ("lf cr is two line breaks", {"data": "a\n\rb"}, b"data: a\ndata: \ndata: b\n\n"),
    ("mixed", {"data": "a\r\n\rb\nc\r"}, b"data: a\ndata: \ndata: b\ndata: c\ndata: \n\n"),
    ("empty string is still a message", {"data": ""}, b"data: \n\n"),
    ("trailing newline", {"data": "x\n"}, b"data: x\ndata: \n\n"),
    ("only newlines", {"data": "\n\n"}, b"data: \ndata: \ndata: \n\n"),
    ("leading space survives", {"data": " lead"}, b"data:  lead\n\n"),
    ("colon in data", {"data": "id: 7"}, b"data: id: 7\n\n"),
    ("utf-8", {"data": "caf\u00e9 \u20ac"}, "data: caf\u00e9 \u20ac\n\n".encode()),
    ("beyond the BMP", {"data": "\U0001f600\U00010348"}, b"data: \xf0\x9f\x98\x80\xf0\x90\x8d\x88\n\n"),
    ("U+2028 does not split", {"data": "a\u2028b"}, b"data: a\xe2\x80\xa8b\n\n"),
    ("U+2029 does not split", {"data": "a\u2029b"}, b"data: a\xe2\x80\xa9b\n\n"),
    ("U+0085 does not split", {"data": "a\x85b"}, b"data: a\xc2\x85b\n\n"),
    ("vertical tab and form feed do not split", {"data": "a\x0bb\x0cc"}, b"data: a\x0bb\x0cc\n\n"),
    ("NUL in data is allowed", {"data": "a\x00b"}, b"data: a\x00b\n\n"),
    ("long line", {"data": LONG_LINE}, b"data: " + LONG_LINE.encode() + b"\n\n"),
    ("event name", {"data": "x", "event": "greet"}, b"event: greet\ndata: x\n\n"),
    ("event message is omitted", {"data": "x", "event": "message"}, b"data: x\n\n"),
    (
        "event name with space and unicode",
        {"data": "x", "event": "stock \u00e9"},
        "event: stock \u00e9\ndata: x\n\n".encode(),
    ),
    ("id", {"data": "x", "event_id": "42"}, b"id: 42\ndata: x\n\n"),
    ("empty id resets the last event id", {"data": "x", "event_id": ""}, b"id: \ndata: x\n\n"),
    ("retry", {"data": "x", "retry_ms": 5000}, b"retry: 5000\ndata: x\n\n"),
    ("retry zero", {"data": "x", "retry_ms": 0}, b"retry: 0\ndata: x\n\n"),
    (
        "every field, in order",
        {"data": "a\nb", "event": "tick", "event_id": "7", "retry_ms": 100},
        b"id: 7\nevent: tick\nretry: 100\ndata: a\ndata: b\n\n",
    ),
]


@pytest.mark.parametrize(("fields", "expected"), [case[1:] for case in ENCODE_CASES], ids=[c[0] for c in ENCODE_CASES])
def test_encode_event_writes_exact_bytes(fields: dict[str, Any], expected: bytes) -> None:
    assert sse.encode_event(**fields) == expected


@pytest.mark.parametrize(("fields", "expected"), [case[1:] for case in ENCODE_CASES], ids=[c[0] for c in ENCODE_CASES])
def test_spec_parser_reads_each_table_frame_back(fields: dict[str, Any], expected: bytes) -> None:
    (event,) = parse(expected.decode())
    assert event == Event(
        data=client_view(fields["data"]),
        event=fields.get("event", "message"),
        id=fields.get("event_id"),
        retry=fields.get("retry_ms"),
    )


BAD_FIELDS = [
    ("event_id", "1\n2"),
    ("event_id", "1\r2"),
    ("event_id", "1\r\n2"),
    ("event_id", "1\x002"),
    ("event_id", "\n"),
    ("event", "a\nb"),
    ("event", "a\rb"),
    ("event", "a\x00b"),
    ("event", "\r\n"),
    ("event", ""),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_encode_event_rejects_line_breaks_and_nul_in_id_and_event(field: str, value: str) -> None:
    with pytest.raises(sse.FieldError):
        if field == "event":
            sse.encode_event("x", event=value)
        else:
            sse.encode_event("x", event_id=value)


def test_field_error_is_a_value_error_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"^id "):
        sse.encode_event("x", event_id="a\nb")
    with pytest.raises(ValueError, match=r"^event "):
        sse.encode_event("x", event="a\nb")


def test_negative_retry_is_rejected_because_clients_ignore_it() -> None:
    with pytest.raises(sse.FieldError):
        sse.encode_event("x", retry_ms=-1)
    with pytest.raises(sse.FieldError):
        sse.encode_retry(-1)


def test_retry_block_dispatches_no_event_but_sets_the_delay() -> None:
    frame = sse.encode_retry(2500)
    assert frame == b"retry: 2500\n\n"
    parser = SseParser()
    assert parser.feed(frame.decode()) == []
    assert parser.retries == [2500]


def test_the_heartbeat_is_a_comment_the_parser_ignores() -> None:
    parser = SseParser()
    assert parser.feed(sse.HEARTBEAT.decode()) == []
    assert parser.comments == ["ping"]


def test_heartbeat_is_a_comment_that_dispatches_nothing() -> None:
    parser = SseParser()
    assert parser.feed(sse.HEARTBEAT.decode()) == []
    assert parser.comments == ["ping"]


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (b"data: x\n\n", b"9\r\ndata: x\n\n\r\n"),
        (b"a", b"1\r\na\r\n"),
        (b"z" * 255, b"ff\r\n" + b"z" * 255 + b"\r\n"),
        (b"z" * 4096, b"1000\r\n" + b"z" * 4096 + b"\r\n"),
    ],
)
def test_chunk_frames_bytes_with_a_lowercase_hex_length(frame: bytes, expected: bytes) -> None:
    assert sse.chunk(frame) == expected


def test_chunk_counts_bytes_not_characters() -> None:
    frame = sse.encode_event("\U0001f600")
    assert sse.chunk(frame) == b"%x\r\n" % len(frame) + frame + b"\r\n"
    assert len(frame) == len("data: \n\n") + 4


def test_chunk_refuses_empty_bytes_which_would_end_the_body() -> None:
    with pytest.raises(ValueError):
        sse.chunk(b"")


def test_split_lines_only_splits_on_cr_and_lf() -> None:
    assert sse.split_lines("a\u2028b\x85c\x0bd\x0ce\x1cf") == ["a\u2028b\x85c\x0bd\x0ce\x1cf"]
    assert sse.split_lines("a\r\nb\rc\nd") == ["a", "b", "c", "d"]


# -- properties -------------------------------------------------------------------------

LINE_BREAKS = st.sampled_from(["\r", "\n", "\r\n"])
# st.text() draws no surrogates, so every value can be sent as UTF-8.
PAYLOADS = st.one_of(st.text(), st.lists(st.one_of(st.text(max_size=8), LINE_BREAKS), max_size=12).map("".join))
FIELD_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00")
EVENT_NAMES = st.text(FIELD_CHARS, min_size=1, max_size=32)
EVENT_IDS = st.text(FIELD_CHARS, max_size=32)
RETRIES = st.none() | st.integers(min_value=0, max_value=86_400_000)


@st.composite
def events(draw: st.DrawFn) -> Event:
    return Event(
        data=draw(PAYLOADS),
        event=draw(st.just("message") | EVENT_NAMES),
        id=draw(st.none() | EVENT_IDS),
        retry=draw(RETRIES),
    )


def encode(event: Event) -> bytes:
    return sse.encode_event(event.data, event.event, event.id, event.retry)


def as_received(event: Event) -> Event:
    return Event(client_view(event.data), event.event, event.id, event.retry)


@WIRE
@given(data=PAYLOADS)
def test_any_text_data_reads_back_as_sent(data: str) -> None:
    assert parse(sse.encode_event(data).decode()) == [Event(client_view(data))]


@WIRE
@given(data=st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r")))
def test_data_without_carriage_returns_reads_back_exactly(data: str) -> None:
    (event,) = parse(sse.encode_event(data).decode())
    assert event.data == data


@WIRE
@given(event=events())
def test_any_event_name_id_and_retry_read_back_as_sent(event: Event) -> None:
    assert parse(encode(event).decode()) == [as_received(event)]


@WIRE
@given(sent=st.lists(events(), min_size=1, max_size=8), cuts=st.lists(st.integers(min_value=0), max_size=20))
def test_frames_split_at_any_byte_boundary_read_back_as_sent(sent: list[Event], cuts: list[int]) -> None:
    wire = b"".join(encode(event) for event in sent)
    bounds = sorted({cut % (len(wire) + 1) for cut in cuts} | {0, len(wire)})
    parser = SseParser()
    decoder = codecs.getincrementaldecoder("utf-8")()
    received: list[Event] = []
    for start, end in itertools.pairwise(bounds):
        # Cuts may fall inside a UTF-8 sequence, as TCP reads do.
        received.extend(parser.feed(decoder.decode(wire[start:end])))
    received.extend(parser.feed(decoder.decode(b"", final=True)))
    assert received == [as_received(event) for event in sent]


@WIRE
@given(sent=st.lists(events(), min_size=1, max_size=5))
def test_chunked_frames_reassemble_into_the_same_events(sent: list[Event]) -> None:
    body = b"".join(sse.chunk(encode(event)) for event in sent)
    assert dechunk(body) == b"".join(encode(event) for event in sent)
    parser = SseParser()
    assert parser.feed(dechunk(body).decode()) == [as_received(event) for event in sent]


def dechunk(body: bytes) -> bytes:
    """Undo HTTP/1.1 chunked framing (RFC 9112, 7.1), strictly."""
    out = bytearray()
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        assert size > 0, "a zero-length chunk ends the body"
        out += body[:size]
        assert body[size : size + 2] == b"\r\n"
        body = body[size + 2 :]
    return bytes(out)


# -- through the real app ---------------------------------------------------------------


@pytest.fixture
async def shared_stream(client: TestClient[Any, Any]) -> AsyncIterator[EventStream]:
    async with open_stream(client, "/events/wire") as stream:
        yield stream


@HTTP
@given(data=st.text(max_size=300) | st.lists(st.one_of(st.text(max_size=8), LINE_BREAKS), max_size=12).map("".join))
async def test_any_published_string_arrives_as_sent(
    client: TestClient[Any, Any], shared_stream: EventStream, data: str
) -> None:
    receipt = await publish(client, {"channel": "wire", "data": data})
    event = await shared_stream.next_message()
    assert (event.id, event.event, event.data) == (receipt["id"], "message", client_view(data))
    if "\r" not in data:
        assert event.data == data
